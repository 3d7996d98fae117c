"""The per-frame perception core shared by the perception node and offline replay (no ROS).

One frame goes: input checks (``frame_input``: the colour and depth messages become arrays, every
problem a typed issue) -> segmentation runtime (labels, logits, embedding, unseen result) ->
camera health (``camera_health``: a frame that shows no scene, a frozen or stalled stream, a
stamp jump) -> alarm policy (temporal smoothing and hysteresis of the calibrated score) ->
collection decision -> terrain skill and gait advice. A camera-fault frame is still labelled, but
it is no unseen-task evidence: the alarm counts it like a missing frame, it is never collected,
and the gait gets no terrain from it (so it stops). Packing and spooling a collected frame runs in
``SampleWriter``'s thread; its outcomes come back through ``Pipeline.process``/``tick`` (same
thread as the alarm policy), which attach the spooled ids to the alarm episode.

The model is read from a ``ModelSlot`` once per frame, so a hot swap never splits a frame.
Times: ``t`` is the caller's monotonic clock (node clock or bag time) for the alarm policy, the
rate limit and the gait; ``stamp`` (seconds since the epoch) is the frame's own and names samples.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from robo_lifelong.errors import ConfigError
from robo_lifelong.io.image_conversion import ImageLike
from robo_lifelong.models.unseen import UnseenResult
from robo_lifelong.models.watch import LoadedModel, ModelSlot
from robo_lifelong.parameters import group, param
from robo_lifelong.perception.alarm_policy import AlarmConfig, AlarmLevel, AlarmPolicy, AlarmStatus
from robo_lifelong.perception.camera_health import CameraCheck, CameraHealth, CameraHealthConfig
from robo_lifelong.perception.collection import CollectionConfig, Collector
from robo_lifelong.perception.frame_input import (
    FrameIssue,
    FrameRejected,
    Issue,
    read_color,
    read_depth,
)
from robo_lifelong.perception.sample_writer import SampleOutcome, SampleRequest, SampleWriter
from robo_lifelong.perception.terrain import (
    GaitAdvice,
    GaitAdvisor,
    GaitConfig,
    TerrainAnalyzer,
    TerrainConfig,
    TerrainResult,
)
from robo_lifelong.transfer.spool import make_sample_id

log = logging.getLogger(__name__)

MAX_FRAME_PIXELS = 7680 * 4320  # 8K UHD
ALARM_NAME = 'robo_lifelong: unseen-task alarm'  # the name the alarm status carries


@dataclass(frozen=True)
class PipelineConfig:
    """The pipeline's settings; the perception node's parameters (camera health ``camera_*``,
    alarm ``alarm_*``, sample collection ``collect_*``)."""

    robot_id: str = field(default='robot', metadata=param('Robot id written into every sample.'))
    # A memory bound, not a speed one: any frame up to it is resized (area interpolation) to the
    # model's input and labelled at its own resolution; an 8K rgb8 frame and its working copies
    # take ~0.5 GB, more than that is refused.
    max_pixels: int = field(
        default=MAX_FRAME_PIXELS,
        metadata=param(
            'Memory bound: frames with more pixels are refused (default 8K UHD, 7680x4320). Any '
            'smaller frame is resized to the model input and labelled at its own resolution.',
            low=1,
            dynamic=True,
        ),
    )
    reorder_window_s: float = field(
        default=2.0,
        metadata=param(
            'Older stamps within this are out of order; beyond: a reset.', low=0.0, dynamic=True
        ),
    )
    collect: bool = field(
        default=True, metadata=param('Collect unseen frames into the spool.', dynamic=True)
    )
    camera: CameraHealthConfig = field(
        default_factory=CameraHealthConfig, metadata=group('camera_')
    )
    alarm: AlarmConfig = field(default_factory=AlarmConfig, metadata=group('alarm_'))
    collection: CollectionConfig = field(
        default_factory=CollectionConfig, metadata=group('collect_')
    )
    terrain: TerrainConfig = field(default_factory=TerrainConfig)
    gait: GaitConfig = field(default_factory=GaitConfig)

    def __post_init__(self) -> None:
        if self.max_pixels < 1:
            raise ConfigError(f'max_pixels must be >= 1, got {self.max_pixels!r}')
        if self.reorder_window_s < 0.0:
            raise ConfigError(f'reorder_window_s must be >= 0, got {self.reorder_window_s!r}')


@dataclass(frozen=True)
class FrameResult:
    stamp: float
    model_version: str
    rgb: np.ndarray  # (H, W, 3) uint8 RGB the labels belong to (a view of the message's data)
    with_depth: bool  # depth went into the model (False: none given, or left out: see issues)
    depth_mm: np.ndarray | None  # (H, W) uint16 mm that went into the model (a view), or None
    labels: np.ndarray  # (H, W) uint8 class ids at the input resolution
    unseen: UnseenResult | None  # None when the package has no unseen calibration
    threshold: float | None
    camera: CameraCheck  # held: not fed to the alarm, not collected, no gait terrain
    alarm: AlarmStatus
    alarm_changed: bool
    terrain: TerrainResult
    gait: GaitAdvice
    collected: str | None  # id of the sample submitted for spooling from this frame
    samples: tuple[SampleOutcome, ...]  # spool outcomes that completed since the last call
    infer_s: float  # runtime.infer wall time: preprocessing, the network, unseen scoring
    model_s: float  # the network alone (the node's overhead is judged against it)
    total_s: float  # the whole process() wall time


@dataclass(frozen=True)
class FrameOutcome:
    """What ``Pipeline.process`` made of one frame: a result, its input issues, or both."""

    result: FrameResult | None  # None: refused (an issue that ``rejects``) or no model loaded
    issues: tuple[FrameIssue, ...] = ()

    @property
    def rejected(self) -> bool:
        return any(issue.rejects for issue in self.issues)


class Pipeline:
    def __init__(
        self,
        config: PipelineConfig,
        slot: ModelSlot,
        writer: SampleWriter | None = None,
        source: str = 'the camera topic',
    ) -> None:
        """``source`` names where the frames come from (a topic) in the alarm's and the camera
        status's messages."""
        self.config = config
        self.slot = slot
        self.writer = writer
        self.camera = CameraHealth(config.camera, source)
        self.alarm = AlarmPolicy(config.alarm, source)
        self.collector = Collector(config.collection)
        self.terrain = TerrainAnalyzer(config.terrain)
        self.gait = GaitAdvisor(config.gait)
        self._last_stamp: float | None = None

    def reconfigure(self, config: PipelineConfig) -> None:
        """Apply new settings; the alarm episode, rate limit and gait state carry over."""
        self.config = config
        self.camera.config = config.camera
        self.alarm.config = config.alarm
        self.collector.config = config.collection
        self.terrain.config = config.terrain
        self.gait.config = config.gait

    def _no_score_reason(
        self, camera: CameraCheck, unseen: UnseenResult | None, version: str
    ) -> str:
        """Why this frame gives the alarm no score ('' when it gives one)."""
        if unseen is None:
            return (
                f"model {version} has no unseen calibration (its manifest's unseen section is "
                'empty): it cannot recognise unseen tasks'
            )
        if camera.fault is not None:
            return f'camera fault ({camera.fault.value}) on {self.camera.source}: see its status'
        if camera.suspect is not None:
            return f'camera view suspect ({camera.suspect.value}) on {self.camera.source}'
        return ''

    def tick(self, t: float) -> tuple[AlarmStatus, bool, list[SampleOutcome]]:
        """Advance the alarm and the camera health without a frame (staleness, a stalled
        camera: ``self.camera.status()``) and collect finished spool outcomes."""
        self.camera.tick(t)
        samples = self._drain()
        model = self.slot.current()
        status, changed = self.alarm.update(
            t, model_version=model.version if model else None, no_model=self.slot.missing
        )
        return status, changed, samples

    def process(
        self,
        color: ImageLike,
        depth: ImageLike | None,
        stamp: float,
        t: float | None = None,
    ) -> FrameOutcome:
        """Run one frame from its messages; every input check happens here, once.

        :param color: the colour image (``RGB_ENCODINGS``), e.g. a sensor_msgs/Image.
        :param depth: the depth image aligned to it (``DEPTH_ENCODINGS``), or None.
        :param stamp: the frame's stamp, seconds since the epoch.
        :param t: the caller's clock for the alarm policy; defaults to ``stamp``.
        :return: the result (None when the frame was refused or no model is loaded: ``tick``
            reports the latter as STALE) and the input issues found.
        """
        started = time.perf_counter()
        t = stamp if t is None else t
        try:
            rgb = read_color(color, self.config.max_pixels)
            self._check_order(stamp)
        except FrameRejected as e:
            return FrameOutcome(None, (e.issue,))
        camera = self.camera.check(rgb, stamp, t)  # with or without a model: it is the camera
        model = self.slot.current()  # once: a swap in between never splits this frame
        if model is None:
            return FrameOutcome(None)
        depth_mm, issues = read_depth(depth, rgb.shape[:2])
        self._last_stamp = stamp
        infer_started = time.perf_counter()
        inferred = model.runtime.infer(rgb, depth_mm)
        infer_s = time.perf_counter() - infer_started
        unseen, threshold = inferred.unseen, model.threshold
        evidence = None if camera.held else unseen  # a camera fault is no unseen task
        status, changed = self.alarm.update(
            t,
            None if evidence is None else evidence.score,
            threshold=1.0 if threshold is None else threshold,
            task_guess='' if evidence is None else evidence.task_guess,
            model_version=model.version,
            no_score=self._no_score_reason(camera, unseen, model.version),
        )
        collected = self._collect(t, rgb, depth_mm, evidence, stamp, model)
        samples = self._drain()
        terrain = self.terrain.analyze(inferred.labels)
        advice, _ = self.gait.update(
            t,
            None if camera.held else terrain,
            status.level in (AlarmLevel.WARN, AlarmLevel.ERROR),
        )
        result = FrameResult(
            stamp=stamp,
            model_version=model.version,
            rgb=rgb,
            with_depth=depth_mm is not None,
            depth_mm=depth_mm,
            labels=inferred.labels,
            unseen=unseen,
            threshold=threshold,
            camera=camera,
            alarm=status,
            alarm_changed=changed,
            terrain=terrain,
            gait=advice,
            collected=collected,
            samples=tuple(samples),
            infer_s=infer_s,
            model_s=inferred.model_s,
            total_s=time.perf_counter() - started,
        )
        return FrameOutcome(result, tuple(issues))

    def _check_order(self, stamp: float) -> None:
        last, window = self._last_stamp, self.config.reorder_window_s
        if last is not None and stamp <= last and last - stamp <= window:
            raise FrameRejected(
                Issue.ORDER,
                f'frame stamp {stamp:.6f} is not newer than the last processed {last:.6f}',
            )
        if last is not None and stamp < last:
            log.warning('stamps jumped back %.1f s: the camera clock was reset', last - stamp)

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
