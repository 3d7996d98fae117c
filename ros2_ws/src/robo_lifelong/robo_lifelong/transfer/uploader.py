"""Drains the sample spool into storage: files up, verified, recorded in the unlabeled index,
then deleted from the spool.

Storage layout below the storage URL (``s3://bucket/prefix`` or a local directory)::

    samples/<robot_id>/<YYYY-MM-DD>/<sample_id>/rgb.png, depth.png, anomaly.png, ...
    samples/<robot_id>/<YYYY-MM-DD>/<sample_id>/meta.json    (the spool's meta.json, written last)
    unlabeled.txt    one line per uploaded sample: ``<sample_id> <sample directory key>``
    events/<robot_id>/<YYYY-MM-DD>/<event_id>/metadata.yaml, <event_id>.mcap, meta.json
    events.txt       one line per uploaded alarm event, beside the sample index (same format)

An alarm event (a spool entry whose meta.json has ``kind: event``) is a rosbag2 bag: its
directory in storage opens with ``ros2 bag play`` and ``robo-lifelong replay``. It goes up by the
same rules as a sample, under keys derived from its id, and is listed in ``events.txt`` only, so
it never appears in the sample index that annotation and Sedna's dataset read.

The date is the UTC day of the frame's stamp, so a sample always maps to the same keys. Each file
is created with a conditional write (If-None-Match: *) and verified by its ETag (MD5 or sha256 of
the body) or, when the store's ETag is neither, by reading it back. A key that already exists
holds an earlier try of the same sample: it is accepted if its bytes are ours. The index line is
appended with ``Storage.append_line_once`` keyed by the sample id, and the sample leaves the spool
only after that, so a crash anywhere uploads the sample again under the same keys and the index
never gets a second line: exactly once as a user sees it.

Retries are this module's alone: its store is opened with ``UPLOAD_S3_ATTEMPTS`` (one try per
request), because botocore's backoff (up to 1 s, then 2 s per request) stacked on ours made a
store failing 30 % of its requests deliver a twentieth of its normal rate. Any failure of a try
(the store unreachable, 5xx, a reset or truncated reply, or anything unexpected) puts the sample
back in the queue and makes that thread wait with exponential backoff and full jitter; the spool
keeps the samples. What a try got through (verified files, the index line) is remembered for the
life of the process, so the next try goes on from there: with faults scattered among requests
each one costs about one request, and the backoff starts over whenever a try made progress,
while a store that answers nothing backs off to ``backoff_max_s``. After a restart a sample is
redone from its first file; the conditional writes keep that exactly-once. An optional bandwidth
limit (bytes/s, token bucket) shares the robot's Wi-Fi.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from robo_lifelong.errors import (
    ConfigError,
    CorruptSample,
    PreconditionFailed,
    SpoolError,
    StorageError,
)
from robo_lifelong.supervision import FailureLog, backoff_delay, supervise
from robo_lifelong.transfer.spool import EVENT_KIND, KIND_KEY, META_NAME, Spool, SpoolEntry
from robo_lifelong.transfer.storage import Storage, join

log = logging.getLogger(__name__)

SAMPLES_PREFIX = 'samples'
UNLABELED_INDEX = 'unlabeled.txt'
EVENTS_PREFIX = 'events'
EVENTS_INDEX = 'events.txt'  # in the directory of the sample index
# botocore tries per S3 request of an uploader's store (see the module doc: we do the retrying)
UPLOAD_S3_ATTEMPTS = 1


@dataclass(frozen=True)
class UploadConfig:
    robot_id: str  # used when a sample's meta.json names none
    index_key: str = UNLABELED_INDEX
    parallel: int = 1  # upload threads
    bandwidth_bytes_per_s: float = 0.0  # 0: unlimited
    # the first wait after a failure: a few requests' time, so a single lost request costs about
    # one more; doubling per failure in a row reaches backoff_max_s after a dozen
    backoff_initial_s: float = 0.005
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

    @property
    def events_index_key(self) -> str:
        """``events.txt`` beside ``index_key``."""
        parent = posixpath.dirname(self.index_key)
        return posixpath.join(parent, EVENTS_INDEX) if parent else EVENTS_INDEX


@dataclass(frozen=True)
class UploadStatus:
    uploaded: int  # samples uploaded since start
    events_uploaded: int  # alarm events uploaded since start
    uploaded_bytes: int  # of both
    last_upload: float | None  # seconds since the epoch
    last_error: str | None  # message of the most recent failure ('' never: None)
    last_error_time: float | None
    # failed tries in a row that got nothing through; 0 once a file, index line or sample does
    failures: int
    total_failures: int  # failed tries since start
    retry_in_s: float  # > 0 while an upload thread is backing off
    corrupt: int  # samples left in the spool because their files disagree with meta.json


def sample_key(meta: dict, entry: SpoolEntry, robot_id: str, prefix: str = SAMPLES_PREFIX) -> str:
    """``<prefix>/<robot>/<YYYY-MM-DD>/<id>``: the robot and UTC day from meta.json
    (``robot_id``, ``stamp``), else the uploader's robot id and the spooling time."""
    robot = str(meta.get('robot_id') or robot_id)
    stamp = meta.get('stamp')
    when = float(stamp) if isinstance(stamp, (int, float)) else entry.spooled_at
    day = datetime.fromtimestamp(when, tz=timezone.utc).strftime('%Y-%m-%d')
    return join(prefix, robot, day, entry.sample_id)


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
    """Moves samples from a Spool to a Storage; thread-safe, one instance per spool.

    ``failures`` counts and logs the failed tries (the bridge passes one that reports to its
    node's log, with secrets scrubbed).
    """

    def __init__(
        self,
        spool: Spool,
        storage: Storage,
        config: UploadConfig,
        failures: FailureLog | None = None,
    ) -> None:
        self.spool = spool
        self.storage = storage
        self.config = config
        self.failures = failures or FailureLog('uploads', log)
        self._limiter = (
            TokenBucket(config.bandwidth_bytes_per_s) if config.bandwidth_bytes_per_s else None
        )
        self._lock = threading.Lock()
        self._uploaded = 0
        self._events_uploaded = 0
        self._uploaded_bytes = 0
        self._last_upload: float | None = None
        self._retry_at = 0.0  # time.monotonic() until which the latest backoff lasts
        self._corrupt = 0
        # sample id -> {key: bytes} this process wrote and verified for it (its files, then the
        # index); dropped once the sample leaves the spool
        self._progress: dict[str, dict[str, int]] = {}

    def status(self) -> UploadStatus:
        health = self.failures.health()
        with self._lock:
            return UploadStatus(
                uploaded=self._uploaded,
                events_uploaded=self._events_uploaded,
                uploaded_bytes=self._uploaded_bytes,
                last_upload=self._last_upload,
                last_error=health.last_error,
                last_error_time=health.last_error_time,
                failures=health.failures,
                total_failures=health.total_failures,
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
        """``step`` until ``stop`` is set; whatever escapes a step (the spool directory failing,
        a bug) is counted in ``failures`` and backed off, never the end of the loop."""
        wake = wake or threading.Event()
        supervise(
            lambda: self.step(stop, poll_s, wake),
            stop,
            self.failures,
            self.config.backoff_initial_s,
            self.config.backoff_max_s,
        )

    def step(self, stop: threading.Event, poll_s: float, wake: threading.Event) -> None:
        """Drain, then wait ``poll_s`` or until ``wake`` is set."""
        self.drain(stop)
        wake.wait(poll_s)
        wake.clear()

    def _work(self, stop: threading.Event) -> int:
        done = 0
        while not stop.is_set():
            claimed = self.spool.claim(1)
            if not claimed:
                break
            delivered, wait_s = self._process(claimed[0], stop)
            done += delivered
            if wait_s:
                stop.wait(wait_s)
        return done

    def _process(self, entry: SpoolEntry, stop: threading.Event) -> tuple[int, float]:
        """One try of ``entry``: ``(samples delivered, seconds to back off)``."""
        with self._lock:
            progress = self._progress.setdefault(entry.sample_id, {})
        before = len(progress)
        try:
            size = self.upload(entry, stop)
            event = size is not None and entry.is_event()  # before remove: it reads meta.json
            if size is not None:
                self.spool.remove(entry.sample_id)
        except CorruptSample as e:
            # kept claimed: skipped until restart, never deleted, never blocking the queue
            log.error('not uploading %s: %s', entry.sample_id, e)
            with self._lock:
                self._corrupt += 1
                self._progress.pop(entry.sample_id, None)
            return 0, 0.0
        except Exception as e:  # the store or the spool failing, or a bug: the sample waits
            self.spool.release(entry.sample_id)
            return 0, self._failed(e, progressed=len(progress) > before)
        if size is None:  # stopped while waiting for bandwidth
            self.spool.release(entry.sample_id)
            return 0, 0.0
        with self._lock:
            self._progress.pop(entry.sample_id, None)
            if event:
                self._events_uploaded += 1
            else:
                self._uploaded += 1
            self._uploaded_bytes += size
            self._last_upload = time.time()
        self.failures.succeeded()
        return 1, 0.0

    def _failed(self, error: Exception, progressed: bool) -> float:
        """Count a failed try; returns how long its thread waits before the next one."""
        # a try that got something through met a failing request, not a failing store: the
        # backoff starts over instead of growing
        in_a_row = 1 if progressed else self.failures.failures + 1
        delay = backoff_delay(in_a_row, self.config.backoff_initial_s, self.config.backoff_max_s)
        self.failures.failed(error, retry_in_s=delay, restart=progressed)
        with self._lock:
            self._retry_at = max(self._retry_at, time.monotonic() + delay)
        return delay

    # -- one sample -----------------------------------------------------------------------------

    def upload(self, entry: SpoolEntry, stop: threading.Event | None = None) -> int | None:
        """Upload one spooled sample (or alarm event) and record it in the sample (event)
        index; returns its bytes (None if ``stop`` was set while waiting for bandwidth). Does not
        touch the spool.

        :raises CorruptSample: the spooled files disagree with meta.json.
        :raises StorageError: the store failed; retrying later is safe.
        """
        stop = stop or threading.Event()
        with self._lock:
            done = self._progress.setdefault(entry.sample_id, {})
        try:
            meta_bytes = (entry.path / META_NAME).read_bytes()
            meta = entry.meta()
            listed = meta['files']
            # a malformed entry is corrupt, not a failure to retry forever
            infos = listed.values() if isinstance(listed, dict) else None
            if infos is None or not all(isinstance(info, dict) for info in infos):
                raise TypeError('meta.json "files" is not an object of objects')
            files = entry.files()
        except (OSError, SpoolError, KeyError, TypeError) as e:
            raise CorruptSample(f'{str(entry.path)!r}: unreadable sample or meta.json') from e
        if set(files) != set(listed):
            raise CorruptSample(
                f'{str(entry.path)!r}: files {sorted(files)} but meta.json lists {sorted(listed)}'
            )
        kind = meta.get(KIND_KEY)
        if kind not in (None, EVENT_KIND):
            raise CorruptSample(f'{str(entry.path)!r}: unknown kind {kind!r} in meta.json')
        event = kind == EVENT_KIND
        root = EVENTS_PREFIX if event else SAMPLES_PREFIX
        index_key = self.config.events_index_key if event else self.config.index_key
        prefix = sample_key(meta, entry, self.config.robot_id, root)
        # meta.json last: a sample directory with meta.json is complete
        for name in [*sorted(files), META_NAME]:
            key = join(prefix, name)
            if key in done:
                continue
            data = meta_bytes if name == META_NAME else _read_checked(files[name], listed[name])
            if not self._put_verified(key, data, stop):
                return None
            done[key] = len(data)
        if index_key not in done:
            appended = self.storage.append_line_once(
                index_key, f'{entry.sample_id} {prefix}', entry.sample_id
            )
            if not appended:
                log.info('%s was already in %s (uploaded before)', entry.sample_id, prefix)
            done[index_key] = 0
        return sum(done.values())

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
