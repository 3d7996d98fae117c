"""Uploader: layout, verification, exactly-once index, backoff, bandwidth, crashes, S3 faults."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

import pytest

from robo_lifelong.errors import SpoolFullError, StorageError
from robo_lifelong.supervision import FailureLog
from robo_lifelong.transfer.spool import Spool, make_sample_id
from robo_lifelong.transfer.storage import LocalStorage, S3Config, Storage, join, open_storage
from robo_lifelong.transfer.uploader import (
    UPLOAD_S3_ATTEMPTS,
    TokenBucket,
    UploadConfig,
    Uploader,
    sample_key,
)
from tests.fakes.fault_proxy import Fault, FaultProxy
from tests.fakes.seaweedfs import SeaweedS3

T0 = 1_795_000_000.0  # 2026-11-18 UTC
BIG = 10**12


def fill(spool: Spool, n: int, robot: str = 'dog-1', size: int = 300, t0: float = T0) -> list:
    ids = []
    for i in range(n):
        sid = make_sample_id(robot, t0 + i)
        files = {'rgb.png': os.urandom(size), 'depth.png': os.urandom(size // 2)}
        spool.put(sid, files, {'stamp': t0 + i, 'robot_id': robot})
        ids.append(sid)
    return ids


def index_ids(store: Storage, key: str = 'unlabeled.txt') -> list[str]:
    data, _ = store.read_with_etag(key)
    return [line.split()[0] for line in (data or b'').decode().splitlines() if line.strip()]


def check_uploaded(store: Storage, expected_ids, key: str = 'unlabeled.txt') -> None:
    """Each expected sample is in the index exactly once and its objects match meta.json."""
    data, _ = store.read_with_etag(key)
    lines = [line.split() for line in data.decode().splitlines()]
    counts = Counter(sid for sid, _ in lines)
    assert [sid for sid, n in counts.items() if n > 1] == []
    assert set(counts) == set(expected_ids)
    for sid, prefix in lines:
        assert prefix.endswith('/' + sid)
        meta = json.loads(store.read_bytes(join(prefix, 'meta.json')))
        assert meta['id'] == sid
        for name, info in meta['files'].items():
            body = store.read_bytes(join(prefix, name))
            assert hashlib.sha256(body).hexdigest() == info['sha256']


def test_layout_index_and_spool_emptied(tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    ids = fill(spool, 3)
    store = LocalStorage(tmp_path / 'store')
    uploader = Uploader(spool, store, UploadConfig('other-robot'))
    assert uploader.drain() == 3
    assert spool.list() == []
    check_uploaded(store, ids)
    assert index_ids(store) == ids  # oldest first
    prefix = f'samples/dog-1/2026-11-18/{ids[0]}'  # robot and UTC day of the sample, not ours
    assert store.list(prefix + '/') == [
        f'{prefix}/{n}' for n in ('depth.png', 'meta.json', 'rgb.png')
    ]
    status = uploader.status()
    assert status.uploaded == 3 and status.failures == 0 and status.last_error is None
    assert status.uploaded_bytes == sum(len(store.read_bytes(k)) for k in store.list('samples/'))


def test_sample_key_falls_back_to_uploader_robot_and_spool_time(tmp_path):
    spool = Spool(tmp_path, BIG, 10)
    spool.put('x-1', {'a.bin': b'a'}, {})
    entry = spool.list()[0]
    key = sample_key(entry.meta(), entry, 'dog-9')
    assert key.startswith('samples/dog-9/') and key.endswith('/x-1')


def test_reupload_after_a_crash_before_the_spool_delete_is_not_duplicated(tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    ids = fill(spool, 2)
    store = LocalStorage(tmp_path / 'store')
    uploader = Uploader(spool, store, UploadConfig('dog-1'))
    uploader.upload(spool.list()[0])  # uploaded and indexed, but "crashed" before remove
    assert uploader.drain() == 2
    check_uploaded(store, ids)


def test_existing_object_with_other_bytes_is_replaced(tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    (sid,) = fill(spool, 1)
    store = LocalStorage(tmp_path / 'store')
    entry = spool.list()[0]
    key = join(sample_key(entry.meta(), entry, 'dog-1'), 'rgb.png')
    store.write_bytes(key, b'stale')
    Uploader(spool, store, UploadConfig('dog-1')).drain()
    check_uploaded(store, [sid])


def test_corrupt_sample_stays_spooled_and_does_not_block_others(tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    ids = fill(spool, 3)
    (spool.list()[0].path / 'rgb.png').write_bytes(b'bit rot')
    store = LocalStorage(tmp_path / 'store')
    uploader = Uploader(spool, store, UploadConfig('dog-1'))
    assert uploader.drain() == 2
    assert [e.sample_id for e in spool.list()] == [ids[0]]
    assert uploader.status().corrupt == 1
    check_uploaded(store, ids[1:])


def test_malformed_meta_is_a_corrupt_sample_not_a_failure_retried_forever(tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    ids = fill(spool, 2)
    entry = spool.list()[0]
    meta = entry.meta()
    meta['files'] = {name: 'not an object' for name in meta['files']}
    (entry.path / 'meta.json').write_text(json.dumps(meta))
    store = LocalStorage(tmp_path / 'store')
    uploader = Uploader(spool, store, UploadConfig('dog-1'))
    assert uploader.drain() == 1
    assert uploader.status().corrupt == 1 and uploader.status().total_failures == 0
    check_uploaded(store, ids[1:])


class FlakyStorage(LocalStorage):
    """Local storage whose first ``failures`` conditional writes fail like an unreachable S3."""

    def __init__(self, root, failures: int) -> None:
        super().__init__(root)
        self.failures = failures

    def write_if(self, key, data, etag):
        if self.failures > 0:
            self.failures -= 1
            raise StorageError('S3 endpoint unreachable (test)')
        return super().write_if(key, data, etag)


def test_failures_back_off_then_drain_and_reset(tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    ids = fill(spool, 4)
    store = FlakyStorage(tmp_path / 'store', failures=4)
    config = UploadConfig('dog-1', backoff_initial_s=0.02, backoff_max_s=0.1)
    uploader = Uploader(spool, store, config)
    stop = RecordingEvent()  # records the back-off waits instead of sleeping them
    assert uploader.drain(stop) == 4
    # each failure backed off at least the initial delay and at most the cap
    assert len(stop.waits) == 4 and all(0.02 <= wait <= 0.1 for wait in stop.waits), stop.waits
    status = uploader.status()
    assert status.failures == 0 and 'unreachable' in status.last_error
    check_uploaded(store, ids)


class Lines:
    """A logger recording what it is given."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, message: str) -> None:
        self.lines.append(message)

    error = warning


class BuggyStorage(LocalStorage):
    """Local storage whose first ``failures`` conditional writes raise a RuntimeError, an error
    nobody mapped (before issue 18, any such error ended the upload thread)."""

    def __init__(self, root, failures: int) -> None:
        super().__init__(root)
        self.failures = failures

    def write_if(self, key, data, etag):
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError('unexpected (test)')
        return super().write_if(key, data, etag)


def test_unexpected_exception_is_counted_and_the_sample_retried(tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    ids = fill(spool, 3)
    store = BuggyStorage(tmp_path / 'store', failures=2)
    lines = Lines()
    failures = FailureLog('uploads', lines, log_interval_s=0.0)
    config = UploadConfig('dog-1', backoff_initial_s=0.001, backoff_max_s=0.001)
    uploader = Uploader(spool, store, config, failures)
    assert uploader.drain() == 3
    status = uploader.status()
    assert status.total_failures == 2 and status.failures == 0
    assert status.last_error == 'RuntimeError: unexpected (test)'
    assert spool.list() == []
    check_uploaded(store, ids)
    assert sum('Traceback' in line for line in lines.lines) == 1  # once for the type


def test_run_carries_on_when_a_step_raises(tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    ids = fill(spool, 2)
    store = LocalStorage(tmp_path / 'store')
    config = UploadConfig('dog-1', backoff_initial_s=0.001, backoff_max_s=0.001)
    uploader = Uploader(spool, store, config)
    real_claim, calls, drained = spool.claim, [0], threading.Event()

    def claim(n):
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError('spool directory gone (test)')
        claimed = real_claim(n)
        if not claimed:
            drained.set()
        return claimed

    spool.claim = claim
    stop = threading.Event()
    worker = threading.Thread(target=uploader.run, args=(stop, 0.01))
    worker.start()
    try:
        assert drained.wait(30)
    finally:
        stop.set()
        worker.join(30)
    status = uploader.status()
    assert status.uploaded == 2 and status.total_failures == 1
    assert status.last_error == 'RuntimeError: spool directory gone (test)'
    check_uploaded(store, ids)


class CountingStorage(LocalStorage):
    """Counts conditional writes per key; the first ``index_failures`` reads of the index fail."""

    def __init__(self, root, index_failures: int) -> None:
        super().__init__(root)
        self.index_failures = index_failures
        self.writes: Counter[str] = Counter()

    def write_if(self, key, data, etag):
        self.writes[key] += 1
        return super().write_if(key, data, etag)

    def read_with_etag(self, key):
        if key == 'unlabeled.txt' and self.index_failures > 0:
            self.index_failures -= 1
            raise StorageError('index read failed (test)')
        return super().read_with_etag(key)


def test_a_failed_index_append_does_not_redo_the_files(tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    (sid,) = fill(spool, 1)
    store = CountingStorage(tmp_path / 'store', index_failures=3)
    lines = Lines()
    failures = FailureLog('uploads', lines, log_interval_s=0.0)
    config = UploadConfig('dog-1', backoff_initial_s=0.001, backoff_max_s=0.001)
    uploader = Uploader(spool, store, config, failures)
    assert uploader.drain() == 1
    files = [k for k in store.writes if k != 'unlabeled.txt']
    assert len(files) == 3 and all(store.writes[k] == 1 for k in files)  # each file once
    assert store.writes['unlabeled.txt'] == 1
    check_uploaded(store, [sid])
    # the first failure came after the files went through: the store answers, so it is the first
    # in a row (its backoff starts over); the tries after it got nothing through
    assert [line.split('(')[1].split(',')[0] for line in lines.lines] == [
        '1 in a row',
        '2 in a row',
        '3 in a row',
    ]
    assert uploader.status().total_failures == 3 and uploader.status().failures == 0


class RecordingEvent(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return False


def test_token_bucket_bounds_the_average_rate():
    now = [0.0]
    bucket = TokenBucket(1000.0, clock=lambda: now[0])
    stop = RecordingEvent()
    assert bucket.acquire(1000, stop)  # the initial one-second burst
    assert stop.waits == []
    assert bucket.acquire(500, stop)
    assert stop.waits == [pytest.approx(0.5)]
    now[0] = 0.5  # the waiting caller slept; the next big request waits its whole cost
    assert bucket.acquire(3000, stop)
    assert stop.waits[-1] == pytest.approx(3.0)


def test_bad_config_is_refused():
    for kwargs in ({'parallel': 0}, {'bandwidth_bytes_per_s': -1}, {'backoff_initial_s': 0}):
        with pytest.raises(ValueError):
            UploadConfig('dog', **kwargs)
    with pytest.raises(ValueError):
        UploadConfig('a/b')


# ---------------------------------------------------------------------------------------------
# Real S3 (SeaweedFS on loopback)


@pytest.mark.s3
def test_s3_upload_and_index(s3_server: SeaweedS3, s3_bucket: str, tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    ids = fill(spool, 5)
    store = open_storage(join(s3_bucket, 'fleet'), S3Config.from_environ(s3_server.env))
    assert Uploader(spool, store, UploadConfig('dog-1', parallel=2)).drain() == 5
    check_uploaded(store, ids)
    assert spool.list() == []


@pytest.mark.s3
def test_eight_concurrent_uploaders_share_one_index(s3_server, s3_bucket, tmp_path):
    uploaders, expected = [], []
    for r in range(8):
        spool = Spool(tmp_path / f'spool{r}', BIG, 100)
        expected += fill(spool, 50, robot=f'dog-{r}', size=16)
        store = open_storage(s3_bucket, S3Config.from_environ(s3_server.env))
        uploaders.append(Uploader(spool, store, UploadConfig(f'dog-{r}')))
    threads = [threading.Thread(target=u.drain) for u in uploaders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = open_storage(s3_bucket, S3Config.from_environ(s3_server.env))
    ids = index_ids(store)
    assert len(ids) == 400 and len(set(ids)) == 400
    assert set(ids) == set(expected)
    assert sum(u.status().uploaded for u in uploaders) == 400


@pytest.mark.s3
def test_s3_killed_mid_drain_and_restarted(s3_server, s3_bucket, tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 1000)
    ids = fill(spool, 15, size=2000)
    store = open_storage(s3_bucket, S3Config.from_environ(s3_server.env))
    # the kill lands mid-drain because the test holds the uploader there: after 3 samples, at
    # the first write of the 4th, until S3 is down
    held, killed = threading.Event(), threading.Event()
    write_if = store.write_if

    def gated_write_if(key, data, etag):
        if uploader.status().uploaded >= 3 and not killed.is_set():
            held.set()
            killed.wait(60)
        return write_if(key, data, etag)

    store.write_if = gated_write_if
    uploader = Uploader(spool, store, UploadConfig('dog-1', backoff_max_s=1.0))
    stop = threading.Event()
    worker = threading.Thread(target=uploader.drain, args=(stop,))
    worker.start()
    try:
        assert held.wait(60), 'the uploader never got to its 4th sample'
        s3_server.kill()
        killed.set()
        assert wait_for(lambda: uploader.status().failures > 0, 60), uploader.status()
        assert uploader.status().uploaded == 3
        assert spool.list(), 'the backlog stays spooled while S3 is down'
    finally:
        killed.set()
        s3_server.start()
    worker.join(timeout=120)
    alive = worker.is_alive()
    stop.set()
    worker.join()
    assert not alive
    assert spool.list() == []
    check_uploaded(store, ids)


@pytest.fixture
def proxy(s3_server):
    with FaultProxy(s3_server.ports['s3']) as p:
        yield p


def proxied(s3_server, proxy, url):
    """The store as the bridge opens it (one botocore try per request), through ``proxy``."""
    env = dict(s3_server.env, S3_ENDPOINT_URL=proxy.url)
    return open_storage(url, S3Config.from_environ(env), attempts=UPLOAD_S3_ATTEMPTS)


@pytest.mark.s3
def test_503_and_slow_store_back_off_then_drain(s3_server, s3_bucket, proxy, tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    ids = fill(spool, 12)
    config = UploadConfig('dog-1', parallel=2, backoff_initial_s=0.1, backoff_max_s=0.5)
    uploader = Uploader(spool, proxied(s3_server, proxy, s3_bucket), config)
    proxy.set_faults([Fault.ERROR])
    stop = threading.Event()
    worker = threading.Thread(target=uploader.drain, args=(stop,))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while uploader.status().failures < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        status = uploader.status()
        assert status.uploaded == 0 and status.failures >= 2 and proxy.injected[Fault.ERROR] > 0
        assert s3_server.secret_key not in status.last_error
        proxy.delay_s = 0.2
        proxy.clear()  # back, but slow
        worker.join(timeout=60)
        assert not worker.is_alive()
    finally:
        proxy.clear()
        stop.set()
        worker.join()
    assert uploader.status().failures == 0
    check_uploaded(open_storage(s3_bucket, S3Config.from_environ(s3_server.env)), ids)


@pytest.mark.s3
def test_full_spool_refuses_new_samples_and_loses_none(s3_server, s3_bucket, proxy, tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 5)
    config = UploadConfig('dog-1', backoff_initial_s=0.05, backoff_max_s=0.2)
    uploader = Uploader(spool, proxied(s3_server, proxy, s3_bucket), config)
    proxy.set_faults([Fault.ERROR])
    stop = threading.Event()
    worker = threading.Thread(target=uploader.run, args=(stop, 0.05))
    worker.start()
    try:
        ids = fill(spool, 5)
        with pytest.raises(SpoolFullError):
            fill(spool, 1, t0=T0 + 100)
        deadline = time.monotonic() + 20
        while uploader.status().failures == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(spool.list()) == 5 and uploader.status().failures > 0
        proxy.clear()
        deadline = time.monotonic() + 30
        while spool.list() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(timeout=30)
    check_uploaded(open_storage(s3_bucket, S3Config.from_environ(s3_server.env)), ids)


def seeded_index(s3_server, s3_bucket, tmp_path) -> str:
    """One sample uploaded without faults, so the index has a body to cut in half."""
    spool = Spool(tmp_path / 'seed-spool', BIG, 10)
    (sid,) = fill(spool, 1, robot='seed', t0=T0 - 1000)
    seed = open_storage(s3_bucket, S3Config.from_environ(s3_server.env))
    Uploader(spool, seed, UploadConfig('seed')).drain()
    return sid


def wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.s3
def test_truncated_index_reads_are_survived_without_redoing_the_files(
    s3_server, s3_bucket, proxy, tmp_path
):
    seed = seeded_index(s3_server, s3_bucket, tmp_path)
    spool = Spool(tmp_path / 'spool', BIG, 100)
    ids = fill(spool, 3)
    config = UploadConfig('dog-1', backoff_initial_s=0.001, backoff_max_s=0.05)
    uploader = Uploader(spool, proxied(s3_server, proxy, s3_bucket), config)
    index_path = f'/{s3_bucket.removeprefix("s3://")}/unlabeled.txt'
    proxy.set_faults([Fault.TRUNCATE], match=lambda m, p: m == 'GET' and p == index_path)
    stop = threading.Event()
    worker = threading.Thread(target=uploader.drain, args=(stop,))
    worker.start()
    try:
        assert proxy.wait_injected(lambda n: n[Fault.TRUNCATE] >= 4, 30)
        assert wait_for(lambda: uploader.status().total_failures >= 4)
        status = uploader.status()
        assert worker.is_alive() and status.uploaded == 0 and status.failures >= 1
        assert 'ResponseStreamingError' in status.last_error
        assert 'IncompleteRead' in status.last_error
        proxy.clear()
        worker.join(60)
        assert not worker.is_alive()
    finally:
        proxy.clear()
        stop.set()
        worker.join()
    store = open_storage(s3_bucket, S3Config.from_environ(s3_server.env))
    check_uploaded(store, [seed, *ids])
    file_puts = {p: n for (m, p), n in proxy.requests.items() if m == 'PUT' and '/samples/' in p}
    assert len(file_puts) == 3 * 3 and set(file_puts.values()) == {1}  # never redone
    assert uploader.status().failures == 0


@pytest.mark.s3
def test_random_faults_of_every_kind_lose_and_duplicate_nothing(
    s3_server, s3_bucket, proxy, tmp_path
):
    uploaders, expected = [], []
    for r in range(3):
        spool = Spool(tmp_path / f'spool{r}', BIG, 100)
        expected += fill(spool, 8, robot=f'dog-{r}')
        config = UploadConfig(f'dog-{r}', parallel=2, backoff_max_s=0.05)
        uploaders.append(Uploader(spool, proxied(s3_server, proxy, s3_bucket), config))
    proxy.set_faults(tuple(Fault), rate=0.3, seed=18)
    threads = [threading.Thread(target=u.drain) for u in uploaders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    proxy.clear()
    check_uploaded(open_storage(s3_bucket, S3Config.from_environ(s3_server.env)), expected)
    assert all(u.spool.list() == [] for u in uploaders)
    # each failed try is an injected fault; every 503 and reset failed one (a truncated reply
    # whose status line arrived may still be an answer: a cut 412 or 404 is still a 412 or 404)
    failed = sum(u.status().total_failures for u in uploaders)
    assert 0 < proxy.injected[Fault.ERROR] + proxy.injected[Fault.RESET] <= failed
    assert failed <= sum(proxy.injected.values())


_KILLED_UPLOADER = textwrap.dedent(
    """
    import os, signal, sys
    from robo_lifelong.transfer.spool import Spool
    from robo_lifelong.transfer.storage import open_storage
    from robo_lifelong.transfer.uploader import UploadConfig, Uploader

    spool = Spool(sys.argv[1], 10**12, 10**6)
    kill_at, calls, real_remove = int(sys.argv[3]), [0], spool.remove

    def remove(sample_id):
        calls[0] += 1
        if calls[0] == kill_at:  # uploaded and indexed, not yet deleted from the spool
            os.kill(os.getpid(), signal.SIGKILL)
        return real_remove(sample_id)

    spool.remove = remove
    Uploader(spool, open_storage(sys.argv[2]), UploadConfig('dog-1')).drain()
    """
)


@pytest.mark.s3
def test_uploader_killed_between_upload_and_spool_delete(s3_server, s3_bucket, tmp_path):
    spool_dir = tmp_path / 'spool'
    ids = fill(Spool(spool_dir, BIG, 100), 20)
    env = dict(os.environ, **s3_server.env)
    cmd = [sys.executable, '-c', _KILLED_UPLOADER, str(spool_dir), s3_bucket, '5']
    done = subprocess.run(cmd, env=env, timeout=60, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    store = open_storage(s3_bucket, S3Config.from_environ(s3_server.env))
    assert index_ids(store) == ids[:5]
    spool = Spool(spool_dir, BIG, 100)  # the restarted bridge
    assert [e.sample_id for e in spool.list()] == ids[4:]
    assert Uploader(spool, store, UploadConfig('dog-1')).drain() == 16
    check_uploaded(store, ids)
    assert index_ids(store) == ids
