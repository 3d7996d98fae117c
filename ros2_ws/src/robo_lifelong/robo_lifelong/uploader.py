"""Drains the sample spool into storage: files up, verified, recorded in the unlabeled index,
then deleted from the spool.

Storage layout below the storage URL (``s3://bucket/prefix`` or a local directory)::

    samples/<robot_id>/<YYYY-MM-DD>/<sample_id>/rgb.png, depth.png, anomaly.png, ...
    samples/<robot_id>/<YYYY-MM-DD>/<sample_id>/meta.json    (the spool's meta.json, written last)
    unlabeled.txt    one line per uploaded sample: ``<sample_id> <sample directory key>``

The date is the UTC day of the frame's stamp, so a sample always maps to the same keys. Each file
is created with a conditional write (If-None-Match: *) and verified by its ETag (MD5 or sha256 of
the body) or, when the store's ETag is neither, by reading it back. A key that already exists
holds an earlier try of the same sample: it is accepted if its bytes are ours. The index line is
appended with ``Storage.append_line_once`` keyed by the sample id, and the sample leaves the spool
only after that, so a crash anywhere uploads the sample again under the same keys and the index
never gets a second line: exactly once as a user sees it.

Failures of the store (unreachable, 5xx, throttling, after botocore's own short retries) make all
upload threads wait with exponential backoff and full jitter; the spool keeps the samples, and
the first success resets the backoff, so a returning store drains the backlog oldest first at
full speed. An optional bandwidth limit (bytes/s, token bucket) shares the robot's Wi-Fi.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from .errors import ConfigError, CorruptSample, PreconditionFailed, SpoolError, StorageError
from .spool import META_NAME, Spool, SpoolEntry
from .storage import Storage, join

log = logging.getLogger(__name__)

SAMPLES_PREFIX = 'samples'
UNLABELED_INDEX = 'unlabeled.txt'


@dataclass(frozen=True)
class UploadConfig:
    robot_id: str  # used when a sample's meta.json names none
    index_key: str = UNLABELED_INDEX
    parallel: int = 1  # upload threads
    bandwidth_bytes_per_s: float = 0.0  # 0: unlimited
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.parallel < 1:
            raise ConfigError(f'parallel uploads must be >= 1, got {self.parallel!r}')
        if self.bandwidth_bytes_per_s < 0:
            raise ConfigError(f'bandwidth limit must be >= 0, got {self.bandwidth_bytes_per_s!r}')
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ConfigError(
                f'need 0 < backoff_initial_s <= backoff_max_s, got '
                f'{self.backoff_initial_s!r}, {self.backoff_max_s!r}'
            )
        if not self.robot_id or '/' in self.robot_id:
            raise ConfigError(f'robot id must be non-empty without "/", got {self.robot_id!r}')


@dataclass(frozen=True)
class UploadStatus:
    uploaded: int  # samples uploaded since start
    uploaded_bytes: int
    last_upload: float | None  # seconds since the epoch
    last_error: str | None  # message of the most recent failure ('' never: None)
    last_error_time: float | None
    failures: int  # consecutive failed tries; 0 after a success
    retry_in_s: float  # > 0 while backing off
    corrupt: int  # samples left in the spool because their files disagree with meta.json


def sample_key(meta: dict, entry: SpoolEntry, robot_id: str) -> str:
    """``samples/<robot>/<YYYY-MM-DD>/<id>``: the robot and UTC day from meta.json (``robot_id``,
    ``stamp``), else the uploader's robot id and the spooling time."""
    robot = str(meta.get('robot_id') or robot_id)
    stamp = meta.get('stamp')
    when = float(stamp) if isinstance(stamp, (int, float)) else entry.spooled_at
    day = datetime.fromtimestamp(when, tz=timezone.utc).strftime('%Y-%m-%d')
    return join(SAMPLES_PREFIX, robot, day, entry.sample_id)


class TokenBucket:
    """Average byte-rate limit shared by threads; a request larger than the bucket waits for
    its whole cost (debt), so the long-run rate never exceeds ``rate``.

    Hand-written because it is a dozen lines and a weighted, interruptible wait is all we need.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.capacity = self.rate  # one second of burst
        self._clock = clock
        self._tokens = self.capacity
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self, amount: int, stop: threading.Event) -> bool:
        """Wait until ``amount`` bytes may go; False if ``stop`` was set meanwhile."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= amount
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        return not stop.wait(wait) if wait > 0 else not stop.is_set()


class Uploader:
    """Moves samples from a Spool to a Storage; thread-safe, one instance per spool."""

    def __init__(self, spool: Spool, storage: Storage, config: UploadConfig) -> None:
        self.spool = spool
        self.storage = storage
        self.config = config
        self._limiter = (
            TokenBucket(config.bandwidth_bytes_per_s) if config.bandwidth_bytes_per_s else None
        )
        self._lock = threading.Lock()
        self._uploaded = 0
        self._uploaded_bytes = 0
        self._last_upload: float | None = None
        self._last_error: str | None = None
        self._last_error_time: float | None = None
        self._failures = 0
        self._retry_at = 0.0  # time.monotonic() before which no thread tries
        self._corrupt = 0

    def status(self) -> UploadStatus:
        with self._lock:
            return UploadStatus(
                uploaded=self._uploaded,
                uploaded_bytes=self._uploaded_bytes,
                last_upload=self._last_upload,
                last_error=self._last_error,
                last_error_time=self._last_error_time,
                failures=self._failures,
                retry_in_s=max(0.0, self._retry_at - time.monotonic()),
                corrupt=self._corrupt,
            )

    # -- draining -------------------------------------------------------------------------------

    def drain(self, stop: threading.Event | None = None) -> int:
        """Upload until the spool has no unclaimed samples left or ``stop`` is set; failures
        back off and retry. Returns the number of samples this call uploaded."""
        stop = stop or threading.Event()
        if self.config.parallel == 1:
            return self._work(stop)
        with ThreadPoolExecutor(self.config.parallel, thread_name_prefix='upload') as pool:
            return sum(pool.map(lambda _: self._work(stop), range(self.config.parallel)))

    def run(
        self, stop: threading.Event, poll_s: float, wake: threading.Event | None = None
    ) -> None:
        """Drain, then wait ``poll_s`` (or until ``wake`` is set), until ``stop`` is set."""
        wake = wake or threading.Event()
        while not stop.is_set():
            try:
                self.drain(stop)
            except (SpoolError, OSError) as e:  # the spool directory itself is failing
                self._failed(e)
            wake.wait(poll_s)
            wake.clear()

    def _work(self, stop: threading.Event) -> int:
        done = 0
        while not stop.is_set():
            delay = self._retry_at - time.monotonic()
            if delay > 0:
                stop.wait(delay)
                continue
            claimed = self.spool.claim(1)
            if not claimed:
                break
            done += self._process(claimed[0], stop)
        return done

    def _process(self, entry: SpoolEntry, stop: threading.Event) -> int:
        try:
            size = self.upload(entry, stop)
        except CorruptSample as e:
            # kept claimed: skipped until restart, never deleted, never blocking the queue
            log.error('not uploading %s: %s', entry.sample_id, e)
            with self._lock:
                self._corrupt += 1
            return 0
        except (StorageError, SpoolError) as e:
            self.spool.release(entry.sample_id)
            self._failed(e)
            return 0
        if size is None:  # stopped while waiting for bandwidth
            self.spool.release(entry.sample_id)
            return 0
        self.spool.remove(entry.sample_id)
        with self._lock:
            self._uploaded += 1
            self._uploaded_bytes += size
            self._last_upload = time.time()
            self._failures = 0
            self._retry_at = 0.0
        return 1

    def _failed(self, error: Exception) -> None:
        with self._lock:
            self._failures += 1
            ceiling = min(
                self.config.backoff_max_s,
                self.config.backoff_initial_s * 2 ** min(self._failures - 1, 30),
            )
            # full jitter, but never less than the initial delay: robots that lost the same
            # access point must not come back in lockstep, nor spin on a dead endpoint
            delay = max(self.config.backoff_initial_s, random.uniform(0, ceiling))
            self._retry_at = max(self._retry_at, time.monotonic() + delay)
            self._last_error = str(error)
            self._last_error_time = time.time()
            failures = self._failures
        log.warning('upload failed (%d in a row), retrying in %.1f s: %s', failures, delay, error)

    # -- one sample -----------------------------------------------------------------------------

    def upload(self, entry: SpoolEntry, stop: threading.Event | None = None) -> int | None:
        """Upload one spooled sample and record it in the index; returns its bytes (None if
        ``stop`` was set while waiting for bandwidth). Does not touch the spool.

        :raises CorruptSample: the spooled files disagree with meta.json.
        :raises StorageError: the store failed; retrying later is safe.
        """
        stop = stop or threading.Event()
        try:
            meta_bytes = (entry.path / META_NAME).read_bytes()
            meta = entry.meta()
            listed = meta['files']
            files = entry.files()
        except (OSError, SpoolError, KeyError, TypeError) as e:
            raise CorruptSample(f'{str(entry.path)!r}: unreadable sample or meta.json') from e
        if set(files) != set(listed):
            raise CorruptSample(
                f'{str(entry.path)!r}: files {sorted(files)} but meta.json lists {sorted(listed)}'
            )
        prefix = sample_key(meta, entry, self.config.robot_id)
        total = 0
        for name in sorted(files):
            data = _read_checked(files[name], listed[name])
            if not self._put_verified(join(prefix, name), data, stop):
                return None
            total += len(data)
        # last: a sample directory with meta.json is complete
        if not self._put_verified(join(prefix, META_NAME), meta_bytes, stop):
            return None
        appended = self.storage.append_line_once(
            self.config.index_key, f'{entry.sample_id} {prefix}', entry.sample_id
        )
        if not appended:
            log.info('%s was already in %s (uploaded before a restart)', entry.sample_id, prefix)
        return total + len(meta_bytes)

    def _put_verified(self, key: str, data: bytes, stop: threading.Event) -> bool:
        if self._limiter is not None and not self._limiter.acquire(len(data), stop):
            return False
        try:
            etag = self.storage.write_if(key, data, None)
        except PreconditionFailed:
            # an earlier try of this sample landed (crash before the spool delete, or a PUT
            # whose reply was lost): keep it if it is ours
            existing, etag = self.storage.read_with_etag(key)
            if existing == data:
                return True
            log.warning('%s exists with other content; replacing it', self.storage.url_for(key))
            etag = self.storage.write_if(key, data, etag)
        if str(etag).strip('"') not in (_md5(data), hashlib.sha256(data).hexdigest()):
            # e.g. SSE-KMS ETags are not content hashes: compare the bytes instead
            if self.storage.read_bytes(key) != data:
                raise StorageError(f'{self.storage.url_for(key)!r}: stored bytes differ')
        return True


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _read_checked(path, listed: dict) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorruptSample(f'cannot read {str(path)!r}') from e
    if len(data) != listed.get('bytes') or hashlib.sha256(data).hexdigest() != listed.get(
        'sha256'
    ):
        raise CorruptSample(f'{str(path)!r}: size or sha256 differs from meta.json')
    return data
