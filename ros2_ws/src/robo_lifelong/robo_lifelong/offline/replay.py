"""Offline replay of a recorded drive through the perception node's per-frame core (no ROS).

The bag (rosbag2, sqlite3 or MCAP: ``rosbags`` detects which) is read in log-time order and every
colour frame goes through ``Pipeline.process`` exactly as in the node: the same labels, unseen
scores, alarm policy and sample collection into the spool. The alarm runs on the frames' stamps
rather than a wall clock, so a replay depends only on the recorded frames: the sqlite3 and MCAP
copies of a drive, or two replays of one, give the same alarms and the same collected frames.

Colour and aligned depth are paired by exact stamp: an aligned depth image is computed from the
same capture and carries the colour frame's stamp (RealSense driver, sim camera). The node's
``FrameSync`` is not used because it keeps only the newest colour frame (a live node must drop
stale frames), while a replay must process every recorded frame, in order. So a colour frame
waits, in bag time, at most ``depth_wait_s`` for its depth and is then processed without it.

Spooling runs in the caller's thread (``SampleWriter(threaded=False)``), so each sample's outcome
is known before the next frame: the run is deterministic and nothing is refused for a busy queue.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import struct
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection
from rosbags.rosbag2 import ReaderError
from tqdm import tqdm

from robo_lifelong.errors import BagError, ConfigError, RoboLifelongError
from robo_lifelong.io.bags import (
    COLOR_TOPIC,
    DEPTH_TOPIC,
    TYPESTORE,
    BagWriter,
    header,
    image,
    stamp_ns,
)
from robo_lifelong.models.watch import ModelSlot, load_model
from robo_lifelong.perception.alarm_policy import AlarmLevel, AlarmStatus
from robo_lifelong.perception.pipeline import (
    ALARM_NAME,
    RGB_ENCODINGS,
    FrameRejected,
    FrameResult,
    Pipeline,
    PipelineConfig,
    SampleOutcome,
    SampleWriter,
    frame_arrays,
)
from robo_lifelong.transfer.spool import Spool

log = logging.getLogger(__name__)

IMAGE_TYPE = 'sensor_msgs/msg/Image'
_KEEP_EARLY_DEPTH = 16  # depth frames kept while their colour frame has not been read yet
# what rosbags' readers and deserialisers raise on a damaged file, beyond their own error types
_CORRUPT_BAG_ERRORS = (
    AnyReaderError,
    ReaderError,
    sqlite3.Error,
    struct.error,
    ValueError,
    KeyError,
    IndexError,
    ArithmeticError,
    EOFError,
    OSError,
)

# output topics, as the node publishes them in the root namespace
LABELS_TOPIC = '/segmentation/labels'
SCORE_TOPIC = '/unseen/score'
ALARM_TOPIC = '/alarm'
SAMPLE_TOPIC = '/unseen/sample'


@dataclass(frozen=True)
class ReplayConfig:
    color_topic: str = COLOR_TOPIC
    depth_topic: str = DEPTH_TOPIC  # '' = replay without depth
    depth_wait_s: float = 0.5  # bag time a colour frame waits for its depth
    # The node ticks the alarm between frames (diagnostics_period_s): a gap in the recording
    # longer than stale_after turns it STALE one tick period after the allowance, as live.
    tick_period_s: float = 1.0
    progress: bool | None = None  # tqdm progress bar; None = only on a terminal

    def __post_init__(self) -> None:
        if not self.color_topic:
            raise ConfigError('color_topic must not be empty')
        if self.depth_wait_s < 0.0 or not self.tick_period_s > 0.0:
            raise ConfigError(
                f'depth_wait_s must be >= 0 and tick_period_s > 0, got '
                f'{self.depth_wait_s!r} and {self.tick_period_s!r}'
            )


@dataclass(frozen=True)
class AlarmChange:
    t: float  # bag time (seconds since the epoch) the level changed
    level: AlarmLevel
    message: str
    score: float | None
    sample_ids: tuple[str, ...]


@dataclass
class ReplaySummary:
    bag: str
    color_topic: str
    depth_topic: str  # '' when replayed without depth
    frames_in_bag: int = 0
    frames: int = 0  # processed
    without_depth: int = 0
    problems: Counter[str] = field(default_factory=Counter)  # kind -> frames skipped/degraded
    first_problem: dict[str, str] = field(default_factory=dict)  # kind -> its first message
    levels: Counter[str] = field(default_factory=Counter)  # alarm level name -> frames at it
    alarms: list[AlarmChange] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)  # the unseen/sample events
    refused: list[str] = field(default_factory=list)  # why samples were not spooled
    wall_s: float = 0.0
    bag_s: float = 0.0  # stamp span of the processed frames

    def to_json(self) -> dict:
        return {
            'bag': self.bag,
            'color_topic': self.color_topic,
            'depth_topic': self.depth_topic,
            'frames_in_bag': self.frames_in_bag,
            'frames': self.frames,
            'without_depth': self.without_depth,
            'problems': dict(self.problems),
            'first_problem': self.first_problem,
            'frames_by_level': dict(self.levels),
            'alarms': [
                {'t': a.t, 'level': a.level.name, 'message': a.message, 'score': a.score}
                for a in self.alarms
            ],
            'alarms_by_level': dict(Counter(a.level.name for a in self.alarms)),
            'samples_collected': len(self.samples),
            'samples_refused': len(self.refused),
            'wall_s': round(self.wall_s, 3),
            'bag_s': round(self.bag_s, 3),
        }

    def describe(self) -> str:
        fps = self.frames / self.wall_s if self.wall_s > 0 else 0.0
        entered = Counter(a.level.name for a in self.alarms)
        lines = [
            f'{self.bag}: {self.frames} of {self.frames_in_bag} frames on {self.color_topic} in '
            f'{self.wall_s:.1f} s ({fps:.1f} frames/s) covering {self.bag_s:.1f} s of recording',
            f'  depth: {self.depth_topic or "off"}, {self.without_depth} frames without depth',
            '  alarm levels entered: '
            + (', '.join(f'{k} {v}' for k, v in sorted(entered.items())) or 'none'),
            '  frames by level: '
            + (', '.join(f'{k} {v}' for k, v in sorted(self.levels.items())) or 'none'),
            f'  samples collected: {len(self.samples)}, refused: {len(self.refused)}',
        ]
        lines += [
            f'  {n} frames with {kind} problems, first: {self.first_problem[kind]}'
            for kind, n in sorted(self.problems.items())
        ]
        return '\n'.join(lines)


@dataclass
class _Waiting:
    stamp: int
    log_time: int
    color: Any
    depth: Any = None


def open_bag(path: str | Path) -> AnyReader:
    """An opened reader of the bag at ``path`` (close it); BagError when it cannot be read."""
    try:
        reader = AnyReader([Path(path)], default_typestore=TYPESTORE)
        reader.open()
    except (AnyReaderError, ReaderError, OSError) as e:
        raise BagError(f'cannot open bag {str(path)!r}: {e}') from e
    return reader


def find_topic(reader: AnyReader, topic: str) -> Connection:
    """The Image connection of ``topic``; a bag recorded under a namespace (``/dog1/...``) is
    matched by suffix when exactly one topic fits. BagError naming the bag's topics otherwise."""
    name = '/' + topic.lstrip('/')
    found = [c for c in reader.connections if c.topic == name]
    if not found:
        found = [c for c in reader.connections if c.topic.endswith(name)]
    topics = sorted({c.topic for c in reader.connections})
    if len({c.topic for c in found}) != 1:
        why = 'is not in' if not found else 'is ambiguous in'
        raise BagError(f'topic {topic!r} {why} the bag; its topics: {", ".join(topics)}')
    if found[0].msgtype != IMAGE_TYPE:
        raise BagError(f'topic {found[0].topic!r} carries {found[0].msgtype}, not {IMAGE_TYPE}')
    return found[0]


class _Outputs:
    """The node's outputs of each frame, written to a bag at the input's log time."""

    def __init__(self, bag: BagWriter, robot_id: str) -> None:
        self.bag = bag
        self.robot_id = robot_id
        self._types = TYPESTORE.types

    def frame(self, log_time: int, input_header: Any, r: FrameResult) -> None:
        head = header(stamp_ns(input_header), input_header.frame_id)  # the input's, as live
        self.bag.write(LABELS_TOPIC, IMAGE_TYPE, image(r.labels, 'mono8', head), log_time)
        if r.unseen is not None:
            score = self._types['std_msgs/msg/Float32'](data=float(r.unseen.score))
            self.bag.write(SCORE_TOPIC, 'std_msgs/msg/Float32', score, log_time)

    def alarm(self, log_time: int, status: AlarmStatus) -> None:
        t = self._types
        diag = t['diagnostic_msgs/msg/DiagnosticStatus'](
            level=int(status.level),
            name=ALARM_NAME,
            message=status.message,
            hardware_id=self.robot_id,
            values=[
                t['diagnostic_msgs/msg/KeyValue'](key=k, value=v) for k, v in status.key_values()
            ],
        )
        msg = t['diagnostic_msgs/msg/DiagnosticArray'](header=header(log_time), status=[diag])
        self.bag.write(ALARM_TOPIC, 'diagnostic_msgs/msg/DiagnosticArray', msg, log_time)

    def sample(self, log_time: int, event: dict) -> None:
        msg = self._types['std_msgs/msg/String'](data=json.dumps(event))
        self.bag.write(SAMPLE_TOPIC, 'std_msgs/msg/String', msg, log_time)


class Replay:
    """One replay of one bag through ``pipeline`` (which must have its model loaded)."""

    def __init__(
        self,
        pipeline: Pipeline,
        config: ReplayConfig = ReplayConfig(),
        outputs: BagWriter | None = None,
        on_frame: Callable[[FrameResult], None] | None = None,
    ) -> None:
        if pipeline.slot.current() is None:
            raise ConfigError('replay needs a pipeline with a model loaded')
        self.pipeline = pipeline
        self.config = config
        self.on_frame = on_frame
        self._out: _Outputs | None = None
        if outputs is not None:
            self.set_outputs(outputs)
        self._last_t: float | None = None
        self._first_t: float | None = None
        self.summary: ReplaySummary

    def set_outputs(self, bag: BagWriter) -> None:
        """Write the node's outputs of every frame to ``bag``."""
        self._out = _Outputs(bag, self.pipeline.config.robot_id)

    def run(self, path: str | Path) -> ReplaySummary:
        """Replay the bag at ``path``. BagError when it cannot be read, lacks the colour topic,
        or none of its colour frames could be processed (the summary says why)."""
        cfg = self.config
        started = time.perf_counter()
        reader = open_bag(path)
        try:
            color = find_topic(reader, cfg.color_topic)
            depth = find_topic(reader, cfg.depth_topic) if cfg.depth_topic else None
            self.summary = ReplaySummary(
                str(path), color.topic, depth.topic if depth else '', color.msgcount
            )
            bar = tqdm(
                total=color.msgcount,
                desc='replay',
                unit='frame',
                disable=None if cfg.progress is None else not cfg.progress,
            )
            with bar:
                for waiting in self._pairs(reader, color, depth):
                    self._process(waiting)
                    bar.update(1)
        finally:
            reader.close()
        s = self.summary
        s.wall_s = time.perf_counter() - started
        if self._first_t is not None and self._last_t is not None:
            s.bag_s = self._last_t - self._first_t
        if s.frames == 0:
            reasons = '; '.join(f'{k}: {m}' for k, m in s.first_problem.items())
            raise BagError(
                f'no frame of {s.frames_in_bag} on {s.color_topic!r} in {str(path)!r} could be '
                f'processed' + (f' ({reasons})' if reasons else '')
            )
        return s

    def _pairs(
        self, reader: AnyReader, color: Connection, depth: Connection | None
    ) -> Iterator[_Waiting]:
        """Colour frames in bag order, each with its same-stamp depth when the bag has it."""
        wait_ns = round(self.config.depth_wait_s * 1e9)
        waiting: deque[_Waiting] = deque()
        early: dict[int, Any] = {}  # depth read before its colour frame
        connections = [color] + ([depth] if depth is not None else [])
        read = 0
        try:
            for connection, log_time, raw in reader.messages(connections=connections):
                msg = reader.deserialize(raw, connection.msgtype)
                read += 1
                stamp = stamp_ns(msg.header)
                if connection.topic == color.topic:
                    waiting.append(_Waiting(stamp, log_time, msg, early.pop(stamp, None)))
                else:
                    match = next((w for w in waiting if w.stamp == stamp), None)
                    if match is not None and match.depth is None:
                        match.depth = msg
                    else:
                        early[stamp] = msg
                        while len(early) > _KEEP_EARLY_DEPTH:
                            del early[min(early)]
                while waiting and (
                    depth is None
                    or waiting[0].depth is not None
                    or log_time - waiting[0].log_time > wait_ns
                ):
                    yield waiting.popleft()
        except _CORRUPT_BAG_ERRORS as e:
            raise BagError(
                f'bag {self.summary.bag!r} is unreadable after {read} messages '
                f'(truncated or corrupt?): {type(e).__name__}: {e}'
            ) from e
        yield from waiting

    def _arrays(self, w: _Waiting) -> tuple[np.ndarray, np.ndarray | None]:
        rgb, depth, warning = frame_arrays(w.color, w.depth)
        if warning is not None:
            self._problem('depth', warning)
        return rgb, depth

    def _process(self, w: _Waiting) -> None:
        t = w.stamp * 1e-9
        self._tick_gap(t)
        if w.color.encoding not in RGB_ENCODINGS:
            self._problem(
                'encoding',
                f'colour frame with encoding {w.color.encoding!r} skipped; '
                f'expected one of {RGB_ENCODINGS}',
            )
            return
        try:
            rgb, depth = self._arrays(w)
            result = self.pipeline.process(rgb, depth, t)
        except FrameRejected as e:
            self._problem(e.kind.value, str(e))
            return
        except RoboLifelongError as e:
            self._problem('input', f'frame {w.stamp} skipped: {e}')
            return
        if result is None:  # the model is only ever swapped in, never out
            raise ConfigError('the pipeline lost its model during replay')
        s = self.summary
        s.frames += 1
        s.without_depth += depth is None
        s.levels[result.alarm.level.name] += 1
        self._first_t = t if self._first_t is None else self._first_t
        self._last_t = t
        for warning in result.warnings:
            self._problem('depth', warning)
        if self._out is not None:
            self._out.frame(w.log_time, w.color.header, result)
        self._outcomes(w.log_time, result.samples)
        if result.alarm_changed:
            self._alarm(w.log_time, t, result.alarm)
        if self.on_frame is not None:
            self.on_frame(result)

    def _tick_gap(self, t: float) -> None:
        if self._last_t is None:
            return
        tick = self._last_t + self.pipeline.config.alarm.stale_after + self.config.tick_period_s
        if tick < t:
            status, changed, samples = self.pipeline.tick(tick)
            self._outcomes(round(tick * 1e9), samples)
            if changed:
                self._alarm(round(tick * 1e9), tick, status)

    def _alarm(self, log_time: int, t: float, status: AlarmStatus) -> None:
        self.summary.alarms.append(
            AlarmChange(t, status.level, status.message, status.score, status.sample_ids)
        )
        log.info('alarm %s at %.3f: %s', status.level.name, t, status.message)
        if self._out is not None:
            self._out.alarm(log_time, status)

    def _outcomes(self, log_time: int, outcomes: tuple[SampleOutcome, ...] | list) -> None:
        for o in outcomes:
            if not o.spooled:
                self.summary.refused.append(o.error)
                log.warning('sample %s not spooled: %s', o.request.sample_id, o.error)
                continue
            event = o.event()
            self.summary.samples.append(event)
            if self._out is not None:
                self._out.sample(log_time, event)

    def _problem(self, kind: str, message: str) -> None:
        """Count a skipped (or depth-less) frame; log the first of each kind."""
        s = self.summary
        if kind not in s.problems:
            s.first_problem[kind] = message
            log.warning('%s (further %r problems are counted in the summary)', message, kind)
        s.problems[kind] += 1


def replay_bag(
    bag: str | Path,
    model_path: str | Path,
    *,
    spool: Spool | None = None,
    pipeline: PipelineConfig | None = None,
    config: ReplayConfig = ReplayConfig(),
    write_bag: str | Path | None = None,
    write_storage: str = 'sqlite3',
    threads: int = 2,
    on_frame: Callable[[FrameResult], None] | None = None,
) -> ReplaySummary:
    """Load and verify the model package, then replay ``bag`` through a fresh pipeline, spooling
    collected samples into ``spool`` (None: no collection) and the outputs into ``write_bag``."""
    pipeline = pipeline or PipelineConfig()
    slot = ModelSlot()
    slot.swap(load_model(model_path, threads))
    writer = None
    if spool is not None:
        png = pipeline.collection.png_compression
        writer = SampleWriter(spool, pipeline.robot_id, png, threaded=False)
    replay = Replay(Pipeline(pipeline, slot, writer), config, on_frame=on_frame)
    if write_bag is None:
        return replay.run(bag)
    with BagWriter(write_bag, write_storage) as out:
        replay.set_outputs(out)
        return replay.run(bag)
