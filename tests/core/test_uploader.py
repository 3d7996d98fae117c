"""Uploader: layout, verification, exactly-once index, backoff, bandwidth, crashes, S3 faults."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from robo_lifelong.errors import SpoolFullError, StorageError
from robo_lifelong.spool import Spool, make_sample_id
from robo_lifelong.storage import LocalStorage, Storage, join, open_storage
from robo_lifelong.uploader import TokenBucket, UploadConfig, Uploader, sample_key
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
    started = time.monotonic()
    assert uploader.drain() == 4
    assert time.monotonic() - started >= 4 * 0.02  # each failure waited at least the initial delay
    status = uploader.status()
    assert status.failures == 0 and 'unreachable' in status.last_error
    check_uploaded(store, ids)


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
    store = open_storage(join(s3_bucket, 'fleet'), environ=s3_server.env)
    assert Uploader(spool, store, UploadConfig('dog-1', parallel=2)).drain() == 5
    check_uploaded(store, ids)
    assert spool.list() == []


@pytest.mark.s3
def test_eight_concurrent_uploaders_share_one_index(s3_server, s3_bucket, tmp_path):
    uploaders, expected = [], []
    for r in range(8):
        spool = Spool(tmp_path / f'spool{r}', BIG, 100)
        expected += fill(spool, 50, robot=f'dog-{r}', size=16)
        store = open_storage(s3_bucket, environ=s3_server.env)
        uploaders.append(Uploader(spool, store, UploadConfig(f'dog-{r}')))
    threads = [threading.Thread(target=u.drain) for u in uploaders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = open_storage(s3_bucket, environ=s3_server.env)
    ids = index_ids(store)
    assert len(ids) == 400 and len(set(ids)) == 400
    assert set(ids) == set(expected)
    assert sum(u.status().uploaded for u in uploaders) == 400


@pytest.mark.s3
def test_s3_killed_mid_drain_and_restarted(s3_server, s3_bucket, tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 1000)
    ids = fill(spool, 15, size=2000)
    store = open_storage(s3_bucket, environ=s3_server.env)
    # ~4 samples/s, so the kill lands mid-drain
    config = UploadConfig('dog-1', bandwidth_bytes_per_s=12_000, backoff_max_s=1.0)
    uploader = Uploader(spool, store, config)
    stop = threading.Event()
    worker = threading.Thread(target=uploader.drain, args=(stop,))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while uploader.status().uploaded < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        s3_server.kill()
        time.sleep(1.0)
        assert uploader.status().failures > 0 or uploader.status().last_error is not None
        assert spool.list(), 'the backlog stays spooled while S3 is down'
    finally:
        s3_server.start()
    worker.join(timeout=120)
    alive = worker.is_alive()
    stop.set()
    worker.join()
    assert not alive
    assert spool.list() == []
    check_uploaded(store, ids)


class FaultProxy:
    """Loopback HTTP proxy in front of S3: answers 503 SlowDown while ``fail`` is set, delays
    each forwarded request by ``delay_s``, otherwise relays requests verbatim (the Host header
    too, so the client's SigV4 signature stays valid)."""

    def __init__(self, upstream_port: int) -> None:
        self.fail = False
        self.delay_s = 0.0
        self.refused = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args) -> None:  # quiet
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
                if proxy.fail:
                    proxy.refused += 1
                    reply = b'<Error><Code>SlowDown</Code><Message>test</Message></Error>'
                    self.send_response(503)
                    self.send_header('Content-Type', 'application/xml')
                    self.send_header('Content-Length', str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                    return
                time.sleep(proxy.delay_s)
                conn = http.client.HTTPConnection('127.0.0.1', upstream_port, timeout=30)
                try:
                    conn.request(self.command, self.path, body, dict(self.headers.items()))
                    response = conn.getresponse()
                    data = response.read()
                finally:
                    conn.close()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ('transfer-encoding', 'connection', 'content-length'):
                        self.send_header(name, value)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                if self.command != 'HEAD':
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(s3_server):
    p = FaultProxy(s3_server.ports['s3'])
    yield p
    p.close()


def proxied(s3_server, proxy, url):
    return open_storage(url, environ=dict(s3_server.env, S3_ENDPOINT_URL=proxy.url))


@pytest.mark.s3
def test_503_and_slow_store_back_off_then_drain(s3_server, s3_bucket, proxy, tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    ids = fill(spool, 12)
    config = UploadConfig('dog-1', parallel=2, backoff_initial_s=0.1, backoff_max_s=0.5)
    uploader = Uploader(spool, proxied(s3_server, proxy, s3_bucket), config)
    proxy.fail = True
    stop = threading.Event()
    worker = threading.Thread(target=uploader.drain, args=(stop,))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while uploader.status().failures < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        status = uploader.status()
        assert status.uploaded == 0 and status.failures >= 2 and proxy.refused > 0
        assert s3_server.secret_key not in status.last_error
        proxy.fail, proxy.delay_s = False, 0.2  # back, but slow
        worker.join(timeout=60)
        assert not worker.is_alive()
    finally:
        proxy.fail = False
        stop.set()
        worker.join()
    assert uploader.status().failures == 0
    check_uploaded(open_storage(s3_bucket, environ=s3_server.env), ids)


@pytest.mark.s3
def test_full_spool_refuses_new_samples_and_loses_none(s3_server, s3_bucket, proxy, tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 5)
    config = UploadConfig('dog-1', backoff_initial_s=0.05, backoff_max_s=0.2)
    uploader = Uploader(spool, proxied(s3_server, proxy, s3_bucket), config)
    proxy.fail = True
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
        proxy.fail = False
        deadline = time.monotonic() + 30
        while spool.list() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(timeout=30)
    check_uploaded(open_storage(s3_bucket, environ=s3_server.env), ids)


_KILLED_UPLOADER = textwrap.dedent(
    """
    import os, signal, sys
    from robo_lifelong.spool import Spool
    from robo_lifelong.storage import open_storage
    from robo_lifelong.uploader import UploadConfig, Uploader

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
    store = open_storage(s3_bucket, environ=s3_server.env)
    assert index_ids(store) == ids[:5]
    spool = Spool(spool_dir, BIG, 100)  # the restarted bridge
    assert [e.sample_id for e in spool.list()] == ids[4:]
    assert Uploader(spool, store, UploadConfig('dog-1')).drain() == 16
    check_uploaded(store, ids)
    assert index_ids(store) == ids
