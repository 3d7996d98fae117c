"""Durable sample spool: atomic visibility under SIGKILL, bounds, ordering, claims, stat."""

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from robo_lifelong.errors import ConfigError, SpoolError, SpoolFullError
from robo_lifelong.transfer import spool as spool_mod
from robo_lifelong.transfer.spool import Spool, make_sample_id

BIG = 10**12
T0 = 1_790_000_000.0  # some time in 2026


def files_of(i, size=1000):
    return {'rgb.png': bytes([i % 256]) * size, 'depth.png': b'd' * (size // 2)}


def assert_complete(entry_dir):
    """Every file meta.json lists is there with its size and hash, and nothing else."""
    meta = json.loads((entry_dir / 'meta.json').read_text())
    assert meta['id'] == entry_dir.name
    on_disk = {p.name for p in entry_dir.iterdir()} - {'meta.json'}
    assert on_disk == set(meta['files'])
    for name, info in meta['files'].items():
        data = (entry_dir / name).read_bytes()
        assert len(data) == info['bytes']
        assert hashlib.sha256(data).hexdigest() == info['sha256']
    return meta


def test_put_writes_files_and_meta(tmp_path):
    sp = Spool(tmp_path, BIG, 100)
    sid = make_sample_id('dog-1', T0)
    path = sp.put(sid, files_of(1), {'score': 1.5, 'task_guess': 'sunny'})
    assert path == tmp_path / 'ready' / sid
    meta = assert_complete(path)
    assert meta['score'] == 1.5 and meta['task_guess'] == 'sunny'
    entry = sp.get(sid)
    assert entry.meta() == meta
    assert set(entry.files()) == {'rgb.png', 'depth.png'}
    assert entry.bytes == sum(p.stat().st_size for p in path.iterdir())
    with pytest.raises(SpoolError, match='already spooled'):
        sp.put(sid, files_of(1), {})


def test_sample_ids_sort_by_time_and_do_not_collide():
    a, b = make_sample_id('dog-1', T0), make_sample_id('dog-1', T0)
    assert a != b and a.startswith('dog-1-20260921T') and a.split('-')[2].endswith('.000000')
    later = make_sample_id('dog-1', T0 + 0.000001)
    assert sorted([later, a]) == [a, later]


@pytest.mark.parametrize('bad', ['', '.hidden', 'a/b', '../x', 'x y'])
def test_unsafe_names_are_rejected(tmp_path, bad):
    sp = Spool(tmp_path, BIG, 10)
    with pytest.raises(SpoolError):
        sp.put(bad, files_of(1), {})
    with pytest.raises(SpoolError):
        sp.put('ok-id', {bad: b'x'}, {})
    with pytest.raises(SpoolError):
        make_sample_id(bad, T0)


def test_meta_json_is_reserved_and_meta_must_serialise(tmp_path):
    sp = Spool(tmp_path, BIG, 10)
    with pytest.raises(SpoolError, match='reserved'):
        sp.put('a', {'meta.json': b'{}'}, {})
    with pytest.raises(SpoolError, match='JSON'):
        sp.put('a', files_of(1), {'x': object()})
    assert sp.list() == []


def test_list_is_oldest_first_regardless_of_put_order(tmp_path):
    sp = Spool(tmp_path, BIG, 100)
    stamps = [T0 + 5, T0 + 1, T0 + 3, T0 + 2, T0 + 4]
    ids = {s: make_sample_id('dog', s) for s in stamps}
    for s in stamps:
        sp.put(ids[s], files_of(int(s)), {})
    assert [e.sample_id for e in sp.list()] == [ids[s] for s in sorted(stamps)]
    assert [e.sample_id for e in sp.peek_oldest(2)] == [ids[T0 + 1], ids[T0 + 2]]


def test_count_bound_refuses_and_keeps_existing(tmp_path):
    sp = Spool(tmp_path, BIG, max_samples=3)
    ids = [make_sample_id('dog', T0 + i) for i in range(4)]
    for i in range(3):
        sp.put(ids[i], files_of(i), {'i': i})
    before = {p.name: assert_complete(p) for p in (tmp_path / 'ready').iterdir()}
    with pytest.raises(SpoolFullError, match='full'):
        sp.put(ids[3], files_of(3), {'i': 3})
    after = {p.name: assert_complete(p) for p in (tmp_path / 'ready').iterdir()}
    assert after == before
    assert sp.remove(ids[0])
    sp.put(ids[3], files_of(3), {'i': 3})
    assert [e.sample_id for e in sp.list()] == ids[1:]


def test_byte_bound_refuses_and_keeps_existing(tmp_path):
    sp = Spool(tmp_path, max_bytes=5000, max_samples=100)
    sp.put('a', files_of(1, size=2000), {})
    with pytest.raises(SpoolFullError):
        sp.put('b', files_of(2, size=2000), {})  # 2 x (3000 + meta) > 5000
    assert [e.sample_id for e in sp.list()] == ['a']
    assert_complete(tmp_path / 'ready' / 'a')
    assert sp.stat().bytes <= 5000


def test_disk_full_is_refused_cleanly(tmp_path, monkeypatch):
    sp = Spool(tmp_path, BIG, 100)
    sp.put('a', files_of(1), {})
    real = spool_mod._write_file
    calls = []

    def failing(path, data):
        calls.append(path.name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, 'No space left on device')
        real(path, data)

    monkeypatch.setattr(spool_mod, '_write_file', failing)
    with pytest.raises(SpoolFullError, match='disk full'):
        sp.put('b', files_of(2), {})
    assert [e.sample_id for e in sp.list()] == ['a']
    writer_dirs = [p for p in (tmp_path / 'tmp').iterdir() if p.is_dir()]
    assert all(not any(d.iterdir()) for d in writer_dirs)  # the partial sample is gone


def test_stat_counts_bytes_and_oldest_age(tmp_path):
    sp = Spool(tmp_path, BIG, 100)
    assert sp.stat() == spool_mod.SpoolStat(0, 0, None)
    sp.put('a', files_of(1), {})
    sp.put('b', files_of(2, size=3000), {})
    a = tmp_path / 'ready' / 'a'
    os.utime(a, (time.time() - 60,) * 2)  # spooled a minute before 'b': set, not waited for
    oldest = a.stat().st_mtime
    reader = Spool(tmp_path, BIG, 100)  # reads the directory times as they are now
    st = reader.stat()
    total = sum(p.stat().st_size for d in (tmp_path / 'ready').iterdir() for p in d.iterdir())
    assert st.count == 2 and st.bytes == total
    before = time.time()
    age = reader.stat().oldest_age_s
    after = time.time()
    assert before - oldest <= age <= after - oldest
    assert reader.stat(now=oldest + 100).oldest_age_s == pytest.approx(100)


def test_other_process_changes_are_seen(tmp_path):
    writer, reader = Spool(tmp_path, BIG, 100), Spool(tmp_path, BIG, 100)
    writer.put('a', files_of(1), {})
    assert [e.sample_id for e in reader.list()] == ['a']
    assert reader.remove('a')
    assert writer.list() == [] and writer.stat().count == 0


def test_remove_is_idempotent_and_claims_partition(tmp_path):
    sp = Spool(tmp_path, BIG, 100)
    ids = [make_sample_id('dog', T0 + i) for i in range(5)]
    for i, sid in enumerate(ids):
        sp.put(sid, files_of(i), {})
    first = [e.sample_id for e in sp.claim(2)]
    second = [e.sample_id for e in sp.claim(2)]
    assert first == ids[:2] and second == ids[2:4]
    sp.release(ids[1])  # upload failed: it goes back to the pool
    assert [e.sample_id for e in sp.claim(5)] == [ids[1], ids[4]]
    assert sp.remove(ids[0]) is True
    assert sp.remove(ids[0]) is False
    assert not (tmp_path / 'ready' / ids[0]).exists()
    assert list((tmp_path / 'trash').iterdir()) == []


def test_live_writer_tmp_survives_other_openers_and_dead_one_is_cleaned(tmp_path):
    writer = Spool(tmp_path, BIG, 100)
    writer.put('a', files_of(1), {})
    (wdir,) = [p for p in (tmp_path / 'tmp').iterdir() if p.is_dir()]
    partial = wdir / 'in-progress'
    partial.mkdir()
    (partial / 'rgb.png').write_bytes(b'half')
    Spool(tmp_path, BIG, 100)  # e.g. the bridge starting while perception writes
    assert partial.exists()
    writer._writer_dir = None  # forget it without cleaning, as a killed process would
    os.close(writer._writer_fd)
    Spool(tmp_path, BIG, 100)
    assert list((tmp_path / 'tmp').iterdir()) == []
    assert [p.name for p in (tmp_path / 'ready').iterdir()] == ['a']


def test_bad_bounds_rejected(tmp_path):
    with pytest.raises(ConfigError):
        Spool(tmp_path, 0, 10)
    with pytest.raises(ConfigError):
        Spool(tmp_path, 10, 0)


# A writer process that spools samples and stops for good at a named step of its N-th sample
# (0-based): after writing its k-th data file ('file1'..'file3'), after meta.json ('meta'), after
# the durable rename into ready/ ('ready'), or while removing an old sample after moving it to
# trash/ ('trash'). It prints `done <i>` after each sample and `stopped` at the fault point, so
# the test kills it exactly there: no verdict depends on timing.
WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from robo_lifelong.transfer import spool as spool_mod
    from robo_lifelong.transfer.spool import Spool, make_sample_id
    root, stop_sample, stop_step = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    state = {'sample': 0, 'files': 0, 'in_put': False}

    def fault_point(step):
        if state['sample'] == stop_sample and step == stop_step:
            print('stopped', flush=True)
            while True:
                signal.pause()  # until SIGKILL

    write_file = spool_mod._write_file
    fsync_dir = spool_mod._fsync_dir
    rmtree = spool_mod.shutil.rmtree

    def counted_write(path, data):
        write_file(path, data)
        state['files'] += 1
        fault_point('meta' if path.name == 'meta.json' else f"file{state['files']}")

    def counted_fsync(path):
        fsync_dir(path)
        if state['in_put'] and path.name == 'ready':
            fault_point('ready')

    def stopping_rmtree(path, **kw):
        if path.parent.name == 'trash':
            fault_point('trash')
        rmtree(path, **kw)

    spool_mod._write_file, spool_mod._fsync_dir = counted_write, counted_fsync
    spool_mod.shutil.rmtree = stopping_rmtree
    sp = Spool(root, max_bytes=10**12, max_samples=10**6)
    blob = os.urandom(1 << 16)
    i = 1
    while True:
        files = {'rgb.png': blob + i.to_bytes(8, 'big'),
                 'depth.png': blob[::2] + i.to_bytes(8, 'big'),
                 'anomaly.png': blob[:4096]}
        state.update(files=0, in_put=True)
        sp.put(make_sample_id('dog', 1790000000.0 + i), files, {'i': i})
        state['in_put'] = False
        print('done', i, flush=True)
        for old in sp.peek_oldest(100)[:-4]:  # keep the disk use small
            sp.remove(old.sample_id)
        state['sample'] += 1
        i += 1
    """
)

# (sample index, step) at which the writer is killed; sample 3 is the first after which the
# writer removes the oldest sample (the one spooled before it started).
KILL_POINTS = [(0, 'file1'), (1, 'file2'), (2, 'file3'), (3, 'meta'), (2, 'ready'), (3, 'trash')]


@pytest.mark.parametrize('stop_sample, step', KILL_POINTS)
def test_sigkill_mid_write_never_exposes_a_partial_sample(tmp_path, stop_sample, step):
    root = tmp_path / 'spool'
    sp = Spool(root, 10**12, 10**6)  # spooled by an earlier run of the writer
    sp.put(make_sample_id('dog', 1790000000.0), files_of(0), {'i': 0})
    sp.close()
    proc = subprocess.Popen(
        [sys.executable, '-c', WRITER, str(root), str(stop_sample), step],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        while (line := proc.stdout.readline().strip()) != 'stopped':
            assert line, f'the writer exited before its fault point, after {lines}'
            lines.append(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    done = {int(line.split()[1]) for line in lines}
    in_flight = stop_sample + 1  # the writer's i of the sample it was killed in
    leftovers = [d for w in (root / 'tmp').iterdir() if w.is_dir() for d in w.iterdir()]
    ready = sorted((root / 'ready').iterdir())
    spooled = {assert_complete(d)['i'] for d in ready}  # only complete samples are ever ready
    if step.startswith('file') or step == 'meta':
        # killed before the rename: one partial sample in tmp/, nothing of it in ready/
        assert len(leftovers) == 1 and in_flight not in spooled
        assert spooled == {0} | done
    elif step == 'ready':  # killed after the durable rename: complete and ready
        assert leftovers == [] and spooled == {0} | done | {in_flight}
    else:  # killed mid-removal: the old sample left ready/ whole, the new one is there
        assert leftovers == [] and spooled == done and in_flight in done
    # restart: tmp cleaned, nothing ready lost, and writing resumes
    sp = Spool(root, 10**12, 10**6)
    assert list((root / 'tmp').iterdir()) == []
    assert sorted(e.path for e in sp.list()) == ready
    sp.put(make_sample_id('dog', 1790000100.0), files_of(99), {'i': 99})
    assert_complete(sp.peek_oldest(100)[-1].path)
    sp.close()  # a live writer's tmp directory is (rightly) never cleaned by others
