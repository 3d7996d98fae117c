"""The durable on-robot queue of collected samples, shared by the perception node (writer) and the
bridge (reader, uploader).

Layout under ``root``::

    ready/<id>/          complete samples: the files plus meta.json (sizes and sha256 of each file)
                         and alarm events (meta.json ``kind`` = ``event``: the files are a rosbag2
                         bag of the seconds around an ERROR, perception/event_recorder.py)
    tmp/<writer>/<id>/   samples being written by the live writer <writer>
    tmp/<writer>.lock    held (flock) by that writer for as it lives
    trash/<id>-<x>/      samples being deleted

A sample becomes visible only by renaming its fully written and fsynced directory into ``ready/``,
and disappears by being renamed out of it before it is deleted, so a reader never sees a partial
sample, whenever the writer dies. A writer's tmp directory is removed by the next Spool opened on
the root once that writer's lock is free: the kernel drops flocks when a process dies, even by
SIGKILL, so the live writer of another process is never cleaned away.

Exactly-once upload is by idempotence, not by a durable lease: the bridge uploads a sample under
keys derived from its id and records the id in the index, then calls ``remove``. A crash between
the two leaves the sample in ``ready/`` and it is uploaded again under the same keys, which the
index recognises by id. ``claim`` only keeps parallel uploaders of one process apart.

The bounds (bytes of the files, number of samples) are checked on ``put``: when full, the sample
is refused with SpoolFullError and nothing spooled is touched. They are checked per writer, so
two processes writing to one spool at once may overshoot by one sample each.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from robo_lifelong.errors import ConfigError, SpoolError, SpoolFullError

log = logging.getLogger(__name__)

META_NAME = 'meta.json'
# meta.json key naming what an entry is; samples have none (their meta.json is as it always was)
KIND_KEY = 'kind'
EVENT_KIND = 'event'  # an alarm event: a bag, uploaded beside the samples, never a sample
_NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{0,199}')
_STAMP_RE = re.compile(r'-(\d{8}T\d{6}\.\d{6})-[0-9a-f]+$')
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def make_sample_id(robot_id: str, stamp: float) -> str:
    """``<robot>-<UTC yyyymmddThhmmss.ffffff>-<random>``: sorts by time within one robot, and a
    replayed recording never collides with the live run that made it.

    :param stamp: the frame's time, seconds since the Unix epoch.
    """
    _check_name(robot_id, 'robot id')
    utc = datetime.fromtimestamp(stamp, tz=timezone.utc).strftime('%Y%m%dT%H%M%S.%f')
    return f'{robot_id}-{utc}-{secrets.token_hex(3)}'


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise SpoolError(f'{what} {name!r} is not a safe name ([A-Za-z0-9._-], no leading dot)')


def _order_key(sample_id: str) -> tuple[str, str]:
    m = _STAMP_RE.search(sample_id)
    return (m.group(1) if m else '', sample_id)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, 'xb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _dir_bytes(path: Path) -> int:
    with os.scandir(path) as it:
        return sum(e.stat(follow_symlinks=False).st_size for e in it if e.is_file())


@dataclass(frozen=True)
class SpoolEntry:
    sample_id: str
    path: Path
    bytes: int  # sum of the sizes of its files, meta.json included
    spooled_at: float  # seconds since the epoch (mtime of the sample directory)

    def meta(self) -> dict:
        """The sample's meta.json: the writer's metadata plus ``id`` and ``files`` (name ->
        ``{'bytes', 'sha256'}``)."""
        path = self.path / META_NAME
        try:
            return json.loads(path.read_text(encoding='utf-8'))
        except (OSError, ValueError) as e:
            raise SpoolError(f'cannot read {str(path)!r}') from e

    def is_event(self) -> bool:
        """Whether the entry is an alarm event (reads meta.json)."""
        return self.meta().get(KIND_KEY) == EVENT_KIND

    def files(self) -> dict[str, Path]:
        """Data files of the sample by name (meta.json excluded)."""
        return {p.name: p for p in sorted(self.path.iterdir()) if p.name != META_NAME}


@dataclass(frozen=True)
class SpoolStat:
    count: int
    bytes: int
    oldest_age_s: float | None  # None when empty


# Default bounds, shared by the perception node's parameters and the offline CLI: 2 GB or
# 10 000 samples holds hours of collection while the robot is offline.
DEFAULT_MAX_BYTES = 2_000_000_000
DEFAULT_MAX_SAMPLES = 10_000


class Spool:
    """A bounded, crash-safe sample queue in ``root``. Thread-safe within one process."""

    def __init__(self, root: str | os.PathLike, max_bytes: int, max_samples: int) -> None:
        if max_bytes <= 0 or max_samples <= 0:
            raise ConfigError(
                f'spool bounds must be > 0, got max_bytes={max_bytes!r}, '
                f'max_samples={max_samples!r}'
            )
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.max_samples = int(max_samples)
        self._ready = self.root / 'ready'
        self._tmp = self.root / 'tmp'
        self._trash = self.root / 'trash'
        for d in (self._ready, self._tmp, self._trash):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._entries: dict[str, SpoolEntry] = {}
        self._claimed: set[str] = set()
        self._writer_fd: int | None = None
        self._writer_dir: Path | None = None
        self._clean()

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Give up this writer's tmp directory (it is empty between puts) and its lock."""
        with self._lock:
            if self._writer_fd is None or self._writer_dir is None:
                return
            shutil.rmtree(self._writer_dir, ignore_errors=True)
            self._writer_dir.with_suffix('.lock').unlink(missing_ok=True)
            os.close(self._writer_fd)
            self._writer_fd, self._writer_dir = None, None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _clean(self) -> None:
        """Remove what dead writers and interrupted removals left behind."""
        removed = 0
        for lock_path in self._tmp.glob('*.lock'):
            try:
                fd = os.open(lock_path, os.O_RDWR)
            except FileNotFoundError:
                continue  # another cleaner got there first
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # its writer is alive
            try:
                shutil.rmtree(lock_path.with_suffix(''), ignore_errors=True)
                lock_path.unlink(missing_ok=True)  # still holding the lock: see _open_writer
                removed += 1
            finally:
                os.close(fd)
        # a writer creates its lock before its directory, so a directory without one is left
        # over from a cleaner that died between the two steps above
        for d in self._tmp.iterdir():
            if d.is_dir() and not d.with_suffix('.lock').exists():
                shutil.rmtree(d, ignore_errors=True)
                removed += 1
        for d in self._trash.iterdir():
            shutil.rmtree(d, ignore_errors=True)
        if removed:
            log.info('spool %s: removed %d unfinished writer directories', self.root, removed)

    def _open_writer(self) -> Path:
        if self._writer_dir is not None:
            return self._writer_dir
        while True:
            token = f'{os.getpid()}-{secrets.token_hex(4)}'
            lock_path = self._tmp / f'{token}.lock'
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            # a cleaner may have locked and unlinked the fresh file before we locked it
            try:
                same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        writer_dir = self._tmp / token
        writer_dir.mkdir()
        self._writer_fd, self._writer_dir = fd, writer_dir
        return writer_dir

    # -- reading --------------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Sync the cache of ready entries with the disk (another process may add or remove)."""
        with os.scandir(self._ready) as it:
            names = {e.name for e in it if e.is_dir(follow_symlinks=False)}
        for gone in self._entries.keys() - names:
            del self._entries[gone]
            self._claimed.discard(gone)
        for name in names - self._entries.keys():
            path = self._ready / name
            try:
                self._entries[name] = SpoolEntry(
                    name, path, _dir_bytes(path), path.stat().st_mtime
                )
            except FileNotFoundError:
                continue  # removed meanwhile

    def _sorted(self) -> list[SpoolEntry]:
        self._refresh()
        return [self._entries[k] for k in sorted(self._entries, key=_order_key)]

    def list(self) -> list[SpoolEntry]:
        """All ready samples, oldest first (by the time in the id)."""
        with self._lock:
            return self._sorted()

    def peek_oldest(self, n: int = 1) -> list[SpoolEntry]:
        with self._lock:
            return self._sorted()[:n]

    def get(self, sample_id: str) -> SpoolEntry | None:
        with self._lock:
            self._refresh()
            return self._entries.get(sample_id)

    def stat(self, now: float | None = None) -> SpoolStat:
        now = time.time() if now is None else now
        with self._lock:
            self._refresh()
            entries = list(self._entries.values())
        oldest = min((e.spooled_at for e in entries), default=None)
        return SpoolStat(
            count=len(entries),
            bytes=sum(e.bytes for e in entries),
            oldest_age_s=None if oldest is None else max(0.0, now - oldest),
        )

    def claim(self, n: int = 1) -> list[SpoolEntry]:
        """Up to ``n`` oldest samples no other caller of this process holds; hand each back with
        ``remove`` (uploaded) or ``release`` (failed). Claims end with the process."""
        with self._lock:
            free = [e for e in self._sorted() if e.sample_id not in self._claimed][:n]
            self._claimed.update(e.sample_id for e in free)
            return free

    def release(self, sample_id: str) -> None:
        with self._lock:
            self._claimed.discard(sample_id)

    # -- writing --------------------------------------------------------------------------------

    def put(self, sample_id: str, files: dict[str, bytes], meta: dict) -> Path:
        """Spool one sample atomically; returns its directory in ``ready/``.

        :param files: file name -> content (names like ``rgb.png``; ``meta.json`` is reserved).
        :param meta: JSON-serialisable metadata; ``id`` and ``files`` are added.
        :raises SpoolFullError: the bounds or the disk do not allow it (nothing else changes).
        :raises SpoolError: a bad id or file name, an id already spooled, or an I/O failure.
        """
        _check_name(sample_id, 'sample id')
        for name in files:
            _check_name(name, 'file name')
        if META_NAME in files:
            raise SpoolError(f'file name {META_NAME!r} is reserved for the metadata')
        record = {
            **meta,
            'id': sample_id,
            'files': {
                name: {'bytes': len(data), 'sha256': hashlib.sha256(data).hexdigest()}
                for name, data in files.items()
            },
        }
        try:
            meta_bytes = json.dumps(record, indent=1, sort_keys=True).encode('utf-8')
        except (TypeError, ValueError) as e:
            raise SpoolError(f'metadata of {sample_id!r} is not JSON-serialisable') from e
        size = sum(len(d) for d in files.values()) + len(meta_bytes)
        with self._lock:
            self._refresh()
            self._check_room(sample_id, size)
            path = self._write(sample_id, files, meta_bytes)
            self._entries[sample_id] = SpoolEntry(sample_id, path, size, path.stat().st_mtime)
        return path

    def _check_room(self, sample_id: str, size: int) -> None:
        if sample_id in self._entries:
            raise SpoolError(f'sample {sample_id!r} is already spooled')
        count = len(self._entries)
        used = sum(e.bytes for e in self._entries.values())
        if count + 1 > self.max_samples or used + size > self.max_bytes:
            raise SpoolFullError(
                f'spool {str(self.root)!r} is full: {count} samples, {used} bytes; refusing '
                f'{sample_id!r} ({size} bytes; bounds {self.max_samples} samples, '
                f'{self.max_bytes} bytes)'
            )

    def _write(self, sample_id: str, files: dict[str, bytes], meta_bytes: bytes) -> Path:
        final = self._ready / sample_id
        work: Path | None = None
        try:
            work = self._open_writer() / sample_id
            work.mkdir()
            for name, data in files.items():
                _write_file(work / name, data)
            _write_file(work / META_NAME, meta_bytes)  # last: its presence marks completeness
            _fsync_dir(work)
            os.rename(work, final)
            _fsync_dir(self._ready)
        except OSError as e:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
            if e.errno in _DISK_FULL:
                raise SpoolFullError(
                    f'spool {str(self.root)!r}: disk full, refusing {sample_id!r}'
                ) from e
            raise SpoolError(f'spool {str(self.root)!r}: cannot write {sample_id!r}') from e
        return final

    def remove(self, sample_id: str) -> bool:
        """Delete a sample (after its upload was confirmed). False when it was not there, so a
        repeated remove after a crash is harmless."""
        _check_name(sample_id, 'sample id')
        doomed = self._trash / f'{sample_id}-{secrets.token_hex(3)}'
        with self._lock:
            self._claimed.discard(sample_id)
            self._entries.pop(sample_id, None)
            try:
                os.rename(self._ready / sample_id, doomed)
            except FileNotFoundError:
                return False
            except OSError as e:
                raise SpoolError(f'spool {str(self.root)!r}: cannot remove {sample_id!r}') from e
            _fsync_dir(self._ready)
        shutil.rmtree(doomed, ignore_errors=True)
        return True
