"""perception: on-robot segmentation, unseen-task alarm, sample collection, terrain and gait.

The subscription callbacks only pair colour and depth by stamp (``FrameSync``) and keep the newest
pair; one processing thread takes the newest pair whenever it is free, so under load stale frames
are dropped (and counted), never queued. That thread hands each pair's messages to the
``FrameRunner`` shared with offline replay (input checks, pipeline, counters) and publishes what
it returns; it also advances the alarm without frames and publishes the diagnostics. Models load
and swap in the ``ModelWatcher`` thread; spooling runs in the ``SampleWriter`` thread, and the
bag of the seconds around each alarm ERROR is written in the ``EventRecorder``'s.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Float32, Header, String
from visualization_msgs.msg import MarkerArray

from robo_lifelong.errors import ConfigError
from robo_lifelong.io.frame_sync import FrameSync, Pair
from robo_lifelong.labels import colorize
from robo_lifelong.models.watch import ModelSlot, ModelWatcher, SwapEvent
from robo_lifelong.nodes.images import numpy_to_image
from robo_lifelong.nodes.markers import diagnostic_status, marker_array
from robo_lifelong.nodes.parameters import declare_config, updated_config
from robo_lifelong.nodes.qos import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS
from robo_lifelong.nodes.spin import run
from robo_lifelong.parameters import group, param
from robo_lifelong.perception.alarm_policy import AlarmLevel, AlarmStatus
from robo_lifelong.perception.camera_health import CAMERA_STATUS_PREFIX, CameraStatus
from robo_lifelong.perception.event_recorder import EventConfig, EventOutcome, EventRecorder
from robo_lifelong.perception.pipeline import ALARM_NAME, FrameResult, Pipeline, PipelineConfig
from robo_lifelong.perception.runner import FrameCounts, FrameOutputs, FrameRunner, SampleNews
from robo_lifelong.perception.sample_writer import SampleWriter
from robo_lifelong.supervision import (
    FailureLog,
    Level,
    SupervisedThread,
    health_summary,
    health_values,
)
from robo_lifelong.transfer.spool import DEFAULT_MAX_BYTES, DEFAULT_MAX_SAMPLES, Spool

COLOR_TOPIC = 'camera/color/image_raw'
DEPTH_TOPIC = 'camera/aligned_depth_to_color/image_raw'
LOG_THROTTLE_S = 5.0
NODE_STATUS_NAME = 'robo_lifelong: perception'
_IDLE_WAIT_S = 0.01  # processing thread wake-up period without frames (depth wait, ticks)
# after a frame raised: the next frame may well be fine, but a bug hitting every frame must not
# spin the thread at camera rate
_WORKER_BACKOFF_INITIAL_S = 0.01
_WORKER_BACKOFF_MAX_S = 1.0


@dataclass(frozen=True)
class PerceptionConfig:
    """The node's settings, each field with ``param`` metadata a ROS parameter of that name
    (``nodes/parameters.py``); the pipeline's parameters keep their own names."""

    model_path: str = field(
        default='',
        metadata=param('Package loaded at start while model_watch_dir has no current.json.'),
    )
    model_watch_dir: str = field(
        default='',
        metadata=param('The bridge\'s models_dir: its current.json names the model ("" = off).'),
    )
    model_poll_s: float = field(
        default=2.0, metadata=param('Polling period of model_watch_dir/current.json, s.', low=0.0)
    )
    threads: int = field(default=2, metadata=param('onnxruntime intra-op threads.', low=1))
    spool_dir: str = field(
        default='spool',
        metadata=param('Durable sample spool directory (shared with the bridge).'),
    )
    spool_max_bytes: int = field(
        default=DEFAULT_MAX_BYTES,
        metadata=param('Spool size bound in bytes; full -> refuse + WARN.'),
    )
    spool_max_samples: int = field(
        default=DEFAULT_MAX_SAMPLES, metadata=param('Spool bound in samples.')
    )
    use_depth: bool = field(
        default=True, metadata=param('Pair aligned depth with the colour frames.')
    )
    depth_wait_s: float = field(
        default=0.05,
        metadata=param('Longest wait for the depth frame of a colour frame.', low=0.0),
    )
    diagnostics_period_s: float = field(
        default=1.0, metadata=param('Period of /diagnostics and the alarm refresh.', low=0.0)
    )
    publish_overlay: bool = field(
        default=True,
        metadata=param(
            'Publish segmentation/overlay while it has subscribers (a blend per frame).',
            dynamic=True,
        ),
    )
    overlay_alpha: float = field(
        default=0.5,
        metadata=param(
            'Weight of the label colours in the overlay, 0..1.', low=0.0, high=1.0, dynamic=True
        ),
    )
    pipeline: PipelineConfig = field(default_factory=PipelineConfig, metadata=group(''))
    events: EventConfig = field(default_factory=EventConfig, metadata=group('event_'))

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ConfigError(f'threads must be >= 1, got {self.threads!r}')
        if not 0.0 <= self.overlay_alpha <= 1.0:
            raise ConfigError(f'overlay_alpha must be in [0, 1], got {self.overlay_alpha!r}')
        for name in ('model_poll_s', 'diagnostics_period_s'):
            if not getattr(self, name) > 0.0:
                raise ConfigError(f'{name} must be > 0, got {getattr(self, name)!r}')
        if self.depth_wait_s < 0.0:
            raise ConfigError(f'depth_wait_s must be >= 0, got {self.depth_wait_s!r}')


class _Stats:
    """What only the node sees (receipt, pairing, timing), reported in its diagnostic status
    beside the runner's ``FrameCounts``."""

    def __init__(self) -> None:
        self.received = self.dropped = 0
        self.latency_s: deque[float] = deque(maxlen=100)  # receipt -> outputs published
        self.infer_s: deque[float] = deque(maxlen=100)  # runtime.infer
        self.model_s: deque[float] = deque(maxlen=100)  # the network alone

    def key_values(self, counts: FrameCounts) -> list[tuple[str, str]]:
        def ms(values: deque[float], q: float) -> str:
            return f'{np.quantile(values, q) * 1000:.1f}' if values else ''

        return [
            ('frames_received', str(self.received)),
            ('frames_processed', str(counts.processed)),
            ('frames_dropped', str(self.dropped)),
            ('frames_rejected', str(counts.rejected)),
            ('input_issues', counts.issue_summary()),
            ('latency_ms_p50', ms(self.latency_s, 0.5)),
            ('latency_ms_p95', ms(self.latency_s, 0.95)),
            ('inference_ms_p50', ms(self.infer_s, 0.5)),
            ('model_ms_p50', ms(self.model_s, 0.5)),
            ('samples_collected', str(counts.collected)),
            ('samples_spooled', str(counts.spooled)),
            ('samples_refused', str(counts.refused)),
        ]


class PerceptionNode(Node):
    def __init__(self) -> None:
        super().__init__('perception')
        self.config = declare_config(self, PerceptionConfig)
        cfg = self.config
        self.spool = Spool(cfg.spool_dir, cfg.spool_max_bytes, cfg.spool_max_samples)
        self.writer = SampleWriter(
            self.spool, cfg.pipeline.robot_id, cfg.pipeline.collection.png_compression
        )
        self.recorder = EventRecorder(cfg.events, cfg.pipeline.robot_id, self.spool)
        self.events_spooled = self.events_refused = 0
        self.slot = ModelSlot()
        self.sync: FrameSync[tuple[Image, int], Image] = FrameSync(max_wait_s=cfg.depth_wait_s)
        self.stats = _Stats()
        self.model_error = ''  # the last rejection's reason (slot.missing: why there is none)
        self._lock = threading.Lock()  # guards sync, _ready and the receive counters
        self._ready: Pair[tuple[Image, int], Image] | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._loggers: dict[str, object] = {}
        self._warned: dict[str, float] = {}  # problem -> monotonic time of its last log

        self._labels_pub = self.create_publisher(Image, 'segmentation/labels', 10)
        self._overlay_pub = self.create_publisher(Image, 'segmentation/overlay', 10)
        self._score_pub = self.create_publisher(Float32, 'unseen/score', 10)
        self._markers_pub = self.create_publisher(MarkerArray, 'markers', 10)
        self._terrain_pub = self.create_publisher(String, 'terrain', 10)
        self._gait_pub = self.create_publisher(String, 'gait', 10)
        self._sample_pub = self.create_publisher(String, 'unseen/sample', RELIABLE_QOS)
        self._version_pub = self.create_publisher(String, 'model/version', LATCHED_QOS)
        self._alarm_pub = self.create_publisher(DiagnosticArray, 'alarm', LATCHED_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        color = self.create_subscription(Image, COLOR_TOPIC, self._on_rgb, SENSOR_QOS)
        if cfg.use_depth:
            self.create_subscription(Image, DEPTH_TOPIC, self._on_depth, SENSOR_QOS)
        # the alarm names the colour topic as remapped, the one to check when it has no frames
        self.pipeline = Pipeline(cfg.pipeline, self.slot, self.writer, color.topic_name)
        self.runner = FrameRunner(self.pipeline)  # all its calls on the processing thread
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # the one channel models arrive by: the bridge's record in model_watch_dir (models_dir);
        # model_path only while there is none (ModelWatcher: the rule)
        self.watcher = ModelWatcher(
            self.slot,
            self._on_swap,
            cfg.threads,
            cfg.model_watch_dir or None,
            cfg.model_poll_s,
            initial=cfg.model_path or None,
        )
        self._next_tick = 0.0  # time.monotonic() of the processing thread's next _tick
        self._worker = SupervisedThread(
            'perception',
            self._work,
            self._stop,
            failures=FailureLog('perception', self._log('internal'), None, LOG_THROTTLE_S),
            backoff_initial_s=_WORKER_BACKOFF_INITIAL_S,
            backoff_max_s=_WORKER_BACKOFF_MAX_S,
        ).start()
        # the processing thread publishes /diagnostics: should it ever be gone, this says so
        self.create_timer(cfg.diagnostics_period_s, self._report_dead_worker)
        self.get_logger().info(
            f'model {cfg.model_path or "-"} (watch {cfg.model_watch_dir or "off"}), spool '
            f'{cfg.spool_dir}, depth {"on" if cfg.use_depth else "off"}, {cfg.threads} threads'
        )

    # -- parameters -------------------------------------------------------------------------

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        # rclpy has checked types, ranges and read-only; the config checks the rest
        try:
            config = updated_config(self, PerceptionConfig, params)
        except ConfigError as e:
            return SetParametersResult(successful=False, reason=str(e))
        self.config = config
        self.pipeline.reconfigure(config.pipeline)
        self.writer.png_compression = config.pipeline.collection.png_compression
        return SetParametersResult(successful=True)

    # -- receiving ---------------------------------------------------------------------------

    def _on_rgb(self, msg: Image) -> None:
        # no checks here: the pipeline checks the frame's messages once, in the processing thread
        now = time.monotonic_ns()
        with self._lock:
            self.stats.received += 1
            if self.config.use_depth:
                self._offer(self.sync.add_rgb(_stamp_ns(msg), (msg, now), now))
            else:
                self._offer(Pair(_stamp_ns(msg), (msg, now), None))

    def _on_depth(self, msg: Image) -> None:
        with self._lock:
            self._offer(self.sync.add_depth(_stamp_ns(msg), msg))

    def _offer(self, pair: Pair[tuple[Image, int], Image] | None) -> None:
        """Keep the newest complete pair for the processing thread (caller holds the lock)."""
        if pair is None:
            return
        if self._ready is not None:
            self.stats.dropped += 1
        self._ready = pair
        self._wake.set()

    def _on_swap(self, event: SwapEvent) -> None:
        if event.accepted:
            self.model_error = ''
            self._version_pub.publish(String(data=event.version))
            self.get_logger().info(f'model {event.version} in use (from {event.path})')
        else:
            current = self.slot.current()
            self.model_error = f'rejected {event.path}: {event.reason}'
            self.get_logger().warning(
                f'model package {event.path} rejected: {event.reason}; '
                f'{"keeping " + current.version if current else "no model loaded"}'
            )

    # -- processing thread ------------------------------------------------------------------

    def _work(self) -> bool:
        """One turn of the processing thread; False when it had neither a frame nor a tick. Its
        supervisor counts, logs and backs off whatever they raise, so none stops perception."""
        self._wake.wait(_IDLE_WAIT_S)
        with self._lock:
            self._wake.clear()
            pair, self._ready = self._ready, None
            if pair is None and self.config.use_depth:
                pair = self.sync.expire(time.monotonic_ns())
            self.stats.dropped += self.sync.dropped
            self.sync.dropped = 0
        tick = time.monotonic() >= self._next_tick
        try:
            if pair is not None:
                self._process(pair)
        finally:
            # frames that keep failing must not silence the diagnostics that report them
            if tick:
                self._next_tick = time.monotonic() + self.config.diagnostics_period_s
                self._tick()
        return pair is not None or tick

    def _report_dead_worker(self) -> None:
        if not self._worker.health().alive:
            self._diag_pub.publish(
                DiagnosticArray(
                    header=Header(stamp=self.get_clock().now().to_msg()),
                    status=[self._node_status()],
                )
            )

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _process(self, pair: Pair[tuple[Image, int], Image]) -> None:
        msg, received_ns = pair.rgb
        now = self._now()
        out = self.runner.frame(msg, pair.depth, pair.stamp_ns * 1e-9, now)
        for issue in out.issues:  # counted by the runner
            self._warn(issue.kind.value, issue.message)
        if out.result is None:
            return  # refused, or no model yet: the tick reports STALE
        self._publish(msg.header, out)
        # latency ends where the outputs are out: the event recorder's bookkeeping comes after
        self.stats.latency_s.append((time.monotonic_ns() - received_ns) * 1e-9)
        self.recorder.frame(now, out.result)
        self.stats.infer_s.append(out.result.infer_s)
        self.stats.model_s.append(out.result.model_s)

    def _publish(self, header: Header, out: FrameOutputs) -> None:
        r: FrameResult = out.result
        self._labels_pub.publish(numpy_to_image(r.labels, 'mono8', header))
        # the blend and a full-size colour image on the wire cost more than the labels: only
        # while someone (rviz) subscribes
        if self.config.publish_overlay and self._overlay_pub.get_subscription_count():
            overlay = self._overlay(r.rgb, r.labels)
            self._overlay_pub.publish(numpy_to_image(overlay, 'rgb8', header))
        if r.unseen is not None:
            self._score_pub.publish(Float32(data=float(r.unseen.score)))
        self._terrain_pub.publish(
            String(data=json.dumps({'stamp': r.stamp, **r.terrain.to_json()}))
        )
        gait = {'stamp': r.stamp, 'alarm': r.alarm.level.name, **r.gait.to_json()}
        self._gait_pub.publish(String(data=json.dumps(gait)))
        self._markers_pub.publish(marker_array(header, r.alarm, r.terrain, r.gait))
        self._on_samples(out.samples)
        if out.alarm is not None:
            self._publish_alarm(out.alarm)

    def _overlay(self, rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
        alpha = self.config.overlay_alpha
        return cv2.addWeighted(rgb, 1.0 - alpha, colorize(labels), alpha, 0.0)

    def _tick(self) -> None:
        # Until the watcher's first look is over, no model means it is loading: the normal
        # start-up, no warning. Read before the tick: a look that ends during it must not turn
        # the STALE the tick computed while loading into a warning.
        loading = not self.watcher.looked
        now = self._now()
        out = self.runner.tick(now)
        self.recorder.tick(now, out.alarm)
        self._on_events(self.recorder.drain())
        self._on_samples(out.samples)
        self._publish_alarm(out.alarm, quiet_stale=loading)
        node = self._node_status()
        self._diag_pub.publish(
            DiagnosticArray(
                header=Header(stamp=self.get_clock().now().to_msg()),
                status=[self._alarm_status(out.alarm), node, self._camera_status(out.camera)],
            )
        )
        if out.camera.level in (AlarmLevel.WARN, AlarmLevel.ERROR):
            self._log('camera').warning(out.camera.message, throttle_duration_sec=LOG_THROTTLE_S)

    def _on_samples(self, news: SampleNews) -> None:
        for event in news.events:
            self._sample_pub.publish(String(data=json.dumps(event)))
        for s in news.refused:
            self._log('spool').warning(
                f'sample {s.request.sample_id} not spooled: {s.error}',
                throttle_duration_sec=LOG_THROTTLE_S,
            )

    def _on_events(self, outcomes: list[EventOutcome]) -> None:
        for o in outcomes:
            if o.spooled:
                self.events_spooled += 1
                self._log('events').info(
                    f'alarm event {o.event_id}: {o.frames} frames, {o.bytes} bytes of bag '
                    f'spooled at {o.path}'
                )
            else:
                self.events_refused += 1
                self._log('events').warning(f'alarm event {o.event_id} not spooled: {o.error}')

    def _camera_status(self, status: CameraStatus):
        return diagnostic_status(
            f'{CAMERA_STATUS_PREFIX} {self.pipeline.camera.source}',
            status.level,
            status.message,
            self.config.pipeline.robot_id,
            status.key_values(),
        )

    def _alarm_status(self, status: AlarmStatus):
        return diagnostic_status(
            ALARM_NAME,
            status.level,
            status.message,
            self.config.pipeline.robot_id,
            status.key_values(),
        )

    def _publish_alarm(self, status: AlarmStatus, quiet_stale: bool = False) -> None:
        self._alarm_pub.publish(
            DiagnosticArray(
                header=Header(stamp=self.get_clock().now().to_msg()),
                status=[self._alarm_status(status)],
            )
        )
        if status.level >= AlarmLevel.WARN and not (
            quiet_stale and status.level == AlarmLevel.STALE
        ):
            self._log('alarm').warning(status.message, throttle_duration_sec=LOG_THROTTLE_S)

    def _node_status(self):
        model = self.slot.current()
        threads = [
            health
            for health in (
                self._worker.health(),
                self.watcher.health(),
                self.writer.health(),
                self.recorder.health(),  # None: event_record is off
            )
            if health is not None
        ]
        thread_level, thread_problem = health_summary(threads)
        if thread_level is Level.ERROR:
            level, message = AlarmLevel.ERROR, thread_problem
        elif model is None:
            level, message = AlarmLevel.STALE, f'no model loaded: {self.slot.missing}'
        elif thread_level is Level.WARN:
            level, message = AlarmLevel.WARN, thread_problem
        elif self.runner.counts.spool_full:
            level, message = AlarmLevel.WARN, f'spool full: {self.runner.counts.spool_full}'
        else:
            level, message = AlarmLevel.OK, f'running {model.version}'
        values = self.stats.key_values(self.runner.counts) + [
            ('model_version', model.version if model else ''),
            ('model_error', self.model_error),
            ('spool_samples', str(self.spool.stat().count)),
            ('events_spooled', str(self.events_spooled)),
            ('events_refused', str(self.events_refused)),
        ]
        values += [kv for health in threads for kv in health_values(health)]
        return diagnostic_status(
            NODE_STATUS_NAME, level, message, self.config.pipeline.robot_id, values
        )

    # -- logging -----------------------------------------------------------------------------

    def _log(self, kind: str):
        """A child logger per kind of problem, so throttling one kind never hides another."""
        logger = self._loggers.get(kind)
        if logger is None:
            logger = self._loggers[kind] = self.get_logger().get_child(kind)
        return logger

    def _warn(self, kind: str, message: str) -> None:
        """Log an input issue once per LOG_THROTTLE_S for each distinct problem.

        rclpy throttles per call site, and this one call site reports many problems (an empty
        frame must not hide a wrong-size one), so the key is the message with numbers masked.
        """
        key = f'{kind}:{re.sub(r"[0-9.]+", "#", message)}'
        now = time.monotonic()
        if now - self._warned.get(key, -LOG_THROTTLE_S) >= LOG_THROTTLE_S:
            self._warned[key] = now
            self._log(kind).warning(message)

    def destroy_node(self) -> None:
        self._stop.set()
        self._worker.join(5.0)
        self.watcher.stop()
        self.writer.close()
        self.recorder.close()  # an open window is written as far as it got
        self._on_events(self.recorder.drain())
        counts = self.runner.counts
        self.get_logger().info(
            f'{counts.processed} frames processed, {self.stats.dropped} dropped, '
            f'{counts.rejected} rejected; {counts.spooled} samples spooled'
        )
        super().destroy_node()


def _stamp_ns(msg: Image) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def main(args: list[str] | None = None) -> int:
    return run(PerceptionNode, 'perception', args)


if __name__ == '__main__':
    sys.exit(main())
