"""The per-frame perception core shared by the perception node and offline replay (no ROS).

One frame goes: input checks -> segmentation runtime (labels, logits, embedding, unseen result)
-> alarm policy (temporal smoothing and hysteresis of the calibrated score) -> collection
decision -> terrain skill and gait advice. Packing and spooling a collected frame takes tens of
milliseconds, so it runs in ``SampleWriter``'s thread; its outcomes come back through
``Pipeline.process``/``tick`` (same thread as the alarm policy), which attach the spooled ids to
the alarm episode.

The model is read from a ``ModelSlot`` once per frame, so a hot swap never splits a frame.
Times: ``t`` is the caller's monotonic clock (node clock or bag time) for the alarm policy, the
rate limit and the gait; ``stamp`` (seconds since the epoch) is the frame's own and names samples.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from enum import Enum

import cv2
import numpy as np

from robo_lifelong.errors import (
    ConfigError,
    FrameError,
    ImageConversionError,
    SpoolError,
    SpoolFullError,
)
from robo_lifelong.io.image_conversion import ImageLike, image_to_numpy
from robo_lifelong.models.unseen import UnseenResult
from robo_lifelong.models.watch import LoadedModel, ModelSlot
from robo_lifelong.perception.alarm_policy import AlarmConfig, AlarmLevel, AlarmPolicy, AlarmStatus
from robo_lifelong.perception.collection import CollectionConfig, Collector, make_sample
from robo_lifelong.perception.terrain import (
    GaitAdvice,
    GaitAdvisor,
    GaitConfig,
    TerrainAnalyzer,
    TerrainConfig,
    TerrainResult,
)
from robo_lifelong.supervision import FailureLog, Health, SupervisedThread, describe
from robo_lifelong.transfer.spool import Spool, make_sample_id

log = logging.getLogger(__name__)

MAX_DEPTH_MM = 65535
MAX_FRAME_PIXELS = 7680 * 4320  # 8K UHD


# What the perception node and replay accept, and the name their alarm status carries.
RGB_ENCODINGS = ('rgb8', 'bgr8')
DEPTH_ENCODINGS = ('16UC1', '32FC1')
ALARM_NAME = 'robo_lifelong: unseen-task alarm'


class Rejection(str, Enum):
    """Why an input frame was skipped (one throttled log line per kind in the node)."""

    SIZE = 'size'
    ORDER = 'order'
    FORMAT = 'format'


class FrameRejected(FrameError):
    def __init__(self, kind: Rejection, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class PipelineConfig:
    robot_id: str = 'robot'
    # A memory bound, not a speed one: any frame up to it is resized (area interpolation) to the
    # model's input and labelled at its own resolution; an 8K rgb8 frame and its working copies
    # take ~0.5 GB, more than that is refused.
    max_pixels: int = MAX_FRAME_PIXELS
    reorder_window_s: float = 2.0  # an older stamp within this is out of order; beyond, a reset
    collect: bool = True  # collect unseen frames into the spool
    alarm: AlarmConfig = field(default_factory=AlarmConfig)
    collection: CollectionConfig = field(default_factory=CollectionConfig)
    terrain: TerrainConfig = field(default_factory=TerrainConfig)
    gait: GaitConfig = field(default_factory=GaitConfig)

    def __post_init__(self) -> None:
        if self.max_pixels < 1:
            raise ConfigError(f'max_pixels must be >= 1, got {self.max_pixels!r}')
        if self.reorder_window_s < 0.0:
            raise ConfigError(f'reorder_window_s must be >= 0, got {self.reorder_window_s!r}')


def frame_arrays(
    color: ImageLike, depth: ImageLike | None
) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """``(rgb, depth, warning)`` arrays of a camera frame's messages (the colour one of an
    ``RGB_ENCODINGS`` encoding). A depth image of another encoding is left out and ``warning``
    says so; the frame is still processed, without depth."""
    rgb = image_to_numpy(color)
    if color.encoding == 'bgr8':
        rgb = cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB)
    if depth is None:
        return rgb, None, None
    if depth.encoding not in DEPTH_ENCODINGS:
        warning = (
            f'depth encoding {depth.encoding!r} refused; expected one of {DEPTH_ENCODINGS}: '
            'frame processed without depth'
        )
        return rgb, None, warning
    return rgb, image_to_numpy(depth), None


def depth_to_mm(depth: np.ndarray) -> tuple[np.ndarray, int]:
    """(H, W) uint16 mm or float32 metres -> (H, W) uint16 mm (0 = no return) and the number of
    non-finite or negative float values that became 0."""
    if depth.ndim != 2:
        raise FrameRejected(Rejection.FORMAT, f'depth must be (H, W), got {depth.shape!r}')
    if depth.dtype == np.uint16:
        return depth, 0
    if depth.dtype != np.float32:
        raise FrameRejected(
            Rejection.FORMAT, f'depth dtype {depth.dtype} is not uint16 or float32'
        )
    valid = np.isfinite(depth) & (depth > 0.0)
    mm = np.where(valid, np.rint(depth * 1000.0), 0.0)
    bad = int(depth.size - np.count_nonzero(valid | (depth == 0.0)))
    return np.clip(mm, 0, MAX_DEPTH_MM).astype(np.uint16), bad


# ---------------------------------------------------------------------------------------------
# Spooling collected samples off the frame path


@dataclass(frozen=True)
class SampleRequest:
    sample_id: str
    rgb: np.ndarray
    depth_mm: np.ndarray | None
    unseen: UnseenResult
    stamp: float
    threshold: float
    model_version: str


@dataclass(frozen=True)
class SampleOutcome:
    request: SampleRequest
    path: str | None  # the spooled directory; None when refused
    error: str  # '' when spooled
    full: bool = False  # refused because the spool (or the writer queue) is full

    @property
    def spooled(self) -> bool:
        return self.path is not None

    def event(self) -> dict:
        """The ``unseen/sample`` JSON event of a spooled sample."""
        r = self.request
        return {
            'id': r.sample_id,
            'stamp': r.stamp,
            'score': round(float(r.unseen.score), 4),
            'threshold': r.threshold,
            'task_guess': r.unseen.task_guess,
            'model_version': r.model_version,
            'path': self.path,
        }


class SampleWriter:
    """Packs and spools collected frames in a worker thread (``threaded=False``: in ``submit``,
    for offline replay). A full queue refuses the sample with an outcome, never silently.

    The thread is supervised: a sample whose writing raises anything unexpected is refused with
    the reason, the failure is counted in ``health()`` and logged, and the thread goes on with the
    next sample.
    """

    def __init__(
        self,
        spool: Spool,
        robot_id: str,
        png_compression: int = 1,
        threaded: bool = True,
        max_queue: int = 4,
    ) -> None:
        self.spool = spool
        self.robot_id = robot_id
        self.png_compression = png_compression
        self._done: queue.SimpleQueue[SampleOutcome] = queue.SimpleQueue()
        self._todo: queue.Queue[SampleRequest | None] | None = None
        self._thread: SupervisedThread | None = None
        self._stop = threading.Event()
        if threaded:
            self._todo = queue.Queue(maxsize=max_queue)
            self._thread = SupervisedThread(
                'sample-writer',
                self._step,
                self._stop,
                failures=FailureLog('sample-writer', log),
                backoff_initial_s=0.05,  # the next sample may well be fine: retry soon
                backoff_max_s=1.0,
            ).start()

    def health(self) -> Health | None:
        """The writer thread's health; None when not threaded."""
        return None if self._thread is None else self._thread.health()

    def submit(self, request: SampleRequest) -> None:
        if self._todo is None:
            self._done.put(self._write(request))
            return
        try:
            self._todo.put_nowait(request)
        except queue.Full:
            reason = f'sample writer busy ({self._todo.maxsize} samples queued)'
            self._done.put(SampleOutcome(request, None, reason, full=True))

    def drain(self) -> list[SampleOutcome]:
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued samples and stop the thread."""
        if self._todo is not None and self._thread is not None:
            try:
                self._todo.put(None, timeout=timeout)
            except queue.Full:  # the thread is not taking samples: stop it where it is
                self._stop.set()
            self._thread.join(timeout)

    def _step(self) -> None:
        request = self._todo.get()
        if request is None:
            self._stop.set()
            return
        try:
            outcome = self._write(request)
        except Exception as e:
            # a bug or an error nobody mapped: the sample is refused with the reason, and the
            # supervisor counts the failure and logs its traceback
            self._done.put(SampleOutcome(request, None, describe(e)))
            raise
        self._done.put(outcome)

    def _write(self, r: SampleRequest) -> SampleOutcome:
        try:
            files, meta = make_sample(
                r.rgb,
                r.depth_mm,
                r.unseen,
                stamp=r.stamp,
                threshold=r.threshold,
                model_version=r.model_version,
                robot_id=self.robot_id,
                png_compression=self.png_compression,
            )
            path = self.spool.put(r.sample_id, files, meta)
        except SpoolFullError as e:
            return SampleOutcome(r, None, str(e), full=True)
        except (SpoolError, ImageConversionError) as e:
            return SampleOutcome(r, None, str(e))
        return SampleOutcome(r, str(path), '')


# ---------------------------------------------------------------------------------------------
# The pipeline


@dataclass(frozen=True)
class FrameResult:
    stamp: float
    model_version: str
    labels: np.ndarray  # (H, W) uint8 class ids at the input resolution
    unseen: UnseenResult | None  # None when the package has no unseen calibration
    threshold: float | None
    alarm: AlarmStatus
    alarm_changed: bool
    terrain: TerrainResult
    gait: GaitAdvice
    collected: str | None  # id of the sample submitted for spooling from this frame
    samples: tuple[SampleOutcome, ...]  # spool outcomes that completed since the last call
    warnings: tuple[str, ...]  # input problems that did not stop the frame (e.g. depth dropped)
    infer_s: float  # runtime.infer wall time
    total_s: float  # the whole process() wall time


class Pipeline:
    def __init__(
        self, config: PipelineConfig, slot: ModelSlot, writer: SampleWriter | None = None
    ) -> None:
        self.config = config
        self.slot = slot
        self.writer = writer
        self.alarm = AlarmPolicy(config.alarm)
        self.collector = Collector(config.collection)
        self.terrain = TerrainAnalyzer(config.terrain)
        self.gait = GaitAdvisor(config.gait)
        self._last_stamp: float | None = None

    def reconfigure(self, config: PipelineConfig) -> None:
        """Apply new settings; the alarm episode, rate limit and gait state carry over."""
        self.config = config
        self.alarm.config = config.alarm
        self.collector.config = config.collection
        self.terrain.config = config.terrain
        self.gait.config = config.gait

    def tick(self, t: float) -> tuple[AlarmStatus, bool, list[SampleOutcome]]:
        """Advance the alarm without a frame (staleness) and collect finished spool outcomes."""
        samples = self._drain()
        model = self.slot.current()
        status, changed = self.alarm.update(t, model_version=model.version if model else None)
        return status, changed, samples

    def check_frame(self, rgb: np.ndarray, stamp: float) -> None:
        """FrameRejected when the frame must be skipped (too large, out of order)."""
        cfg = self.config
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.size == 0:
            raise FrameRejected(
                Rejection.FORMAT, f'expected an (H, W, 3) uint8 RGB frame, got {rgb.shape!r}'
            )
        h, w = rgb.shape[:2]
        if h * w > cfg.max_pixels:
            raise FrameRejected(
                Rejection.SIZE,
                f'frame {w}x{h} has {h * w} pixels, more than max_pixels={cfg.max_pixels}',
            )
        last = self._last_stamp
        if last is not None and stamp <= last and last - stamp <= cfg.reorder_window_s:
            raise FrameRejected(
                Rejection.ORDER,
                f'frame stamp {stamp:.6f} is not newer than the last processed {last:.6f}',
            )
        if last is not None and stamp < last:
            log.warning('stamps jumped back %.1f s: the camera clock was reset', last - stamp)

    def process(
        self, rgb: np.ndarray, depth: np.ndarray | None, stamp: float, t: float | None = None
    ) -> FrameResult | None:
        """Run one frame. None when no model is loaded (``tick`` reports that as STALE).

        :param rgb: (H, W, 3) uint8 RGB.
        :param depth: (H, W) uint16 mm or float32 m aligned to ``rgb``, or None.
        :param stamp: the frame's stamp, seconds since the epoch.
        :param t: the caller's clock for the alarm policy; defaults to ``stamp``.
        :raises FrameRejected: the frame was skipped.
        """
        started = time.perf_counter()
        t = stamp if t is None else t
        self.check_frame(rgb, stamp)
        model = self.slot.current()  # once: a swap in between never splits this frame
        if model is None:
            return None
        depth_mm, warnings = self._depth(rgb, depth)
        self._last_stamp = stamp
        inferred = model.runtime.infer(rgb, depth_mm)
        infer_s = time.perf_counter() - started
        unseen, threshold = inferred.unseen, model.threshold
        status, changed = self.alarm.update(
            t,
            None if unseen is None else unseen.score,
            threshold=1.0 if threshold is None else threshold,
            task_guess='' if unseen is None else unseen.task_guess,
            model_version=model.version,
        )
        collected = self._collect(t, rgb, depth_mm, unseen, stamp, model)
        samples = self._drain()
        terrain = self.terrain.analyze(inferred.labels)
        advice, _ = self.gait.update(
            t, terrain, status.level in (AlarmLevel.WARN, AlarmLevel.ERROR)
        )
        return FrameResult(
            stamp=stamp,
            model_version=model.version,
            labels=inferred.labels,
            unseen=unseen,
            threshold=threshold,
            alarm=status,
            alarm_changed=changed,
            terrain=terrain,
            gait=advice,
            collected=collected,
            samples=tuple(samples),
            warnings=tuple(warnings),
            infer_s=infer_s,
            total_s=time.perf_counter() - started,
        )

    def _depth(
        self, rgb: np.ndarray, depth: np.ndarray | None
    ) -> tuple[np.ndarray | None, list[str]]:
        if depth is None:
            return None, []
        if depth.shape[:2] != rgb.shape[:2]:
            return None, [
                f'depth {depth.shape[1]}x{depth.shape[0]} does not match rgb '
                f'{rgb.shape[1]}x{rgb.shape[0]}: frame processed without depth'
            ]
        depth_mm, bad = depth_to_mm(depth)
        if bad:
            return depth_mm, [f'depth has {bad} NaN/negative values: treated as no return']
        return depth_mm, []

    def _collect(
        self,
        t: float,
        rgb: np.ndarray,
        depth_mm: np.ndarray | None,
        unseen: UnseenResult | None,
        stamp: float,
        model: LoadedModel,
    ) -> str | None:
        if unseen is None or self.writer is None or not self.config.collect:
            return None
        if not self.collector.consider(t, rgb, unseen).collect:
            return None
        sample_id = make_sample_id(self.config.robot_id, stamp)
        # the frame buffers may be reused by the caller once process() returns
        self.writer.submit(
            SampleRequest(
                sample_id,
                rgb.copy(),
                None if depth_mm is None else depth_mm.copy(),
                unseen,
                stamp,
                1.0 if model.threshold is None else model.threshold,
                model.version,
            )
        )
        return sample_id

    def _drain(self) -> list[SampleOutcome]:
        if self.writer is None:
            return []
        outcomes = self.writer.drain()
        for o in outcomes:
            if o.spooled:
                self.alarm.attach_sample(o.request.sample_id)
        return outcomes
