"""Offline replay of a recorded drive through the perception node's per-frame core (no ROS).

The bag (rosbag2, sqlite3 or MCAP: ``rosbags`` detects which) is read in log-time order, colour
and depth are paired by stamp (``pair_recorded``: every frame, in order) and each frame's
messages go through the node's own ``FrameRunner``: the same input checks, labels, unseen
scores, alarm policy, sample collection into the spool and counters. What the node publishes is
written to a bag instead. The alarm runs on the frames' stamps rather than a wall clock, so a
replay depends only on the recorded frames: the sqlite3 and MCAP copies of a drive, or two
replays of one, give the same alarms and the same collected frames.

Spooling runs in the caller's thread (``SampleWriter(threaded=False)``), so each sample's outcome
is known before the next frame: the run is deterministic and nothing is refused for a busy queue.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection
from rosbags.rosbag2 import ReaderError
from tqdm import tqdm

from robo_lifelong.errors import BagError, ConfigError
from robo_lifelong.io.bags import (
    ALARM_TOPIC,
    COLOR_TOPIC,
    DEPTH_TOPIC,
    IMAGE_TYPE,
    LABELS_TOPIC,
    SCORE_TOPIC,
    TYPESTORE,
    BagWriter,
    header,
    image,
    new_bag,
    stamp_ns,
)
from robo_lifelong.io.frame_sync import Recorded, pair_recorded
from robo_lifelong.models.watch import ModelSlot, load_model
from robo_lifelong.perception.alarm_policy import AlarmLevel, AlarmStatus
from robo_lifelong.perception.event_recorder import ALARM_TYPE, alarm_array
from robo_lifelong.perception.frame_input import FrameIssue, Issue
from robo_lifelong.perception.pipeline import FrameResult, Pipeline, PipelineConfig
from robo_lifelong.perception.runner import FrameCounts, FrameRunner, SampleNews
from robo_lifelong.perception.sample_writer import SampleWriter
from robo_lifelong.transfer.spool import Spool

log = logging.getLogger(__name__)

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

# output topic, as the node publishes it in the root namespace (the others: io/bags.py)
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
    counts: FrameCounts = field(default_factory=FrameCounts)  # the runner's, frame by frame
    levels: Counter[str] = field(default_factory=Counter)  # alarm level name -> frames at it
    alarms: list[AlarmChange] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)  # the unseen/sample events
    refused: list[str] = field(default_factory=list)  # why samples were not spooled
    wall_s: float = 0.0
    bag_s: float = 0.0  # stamp span of the processed frames

    @property
    def frames(self) -> int:
        """Frames processed."""
        return self.counts.processed

    @property
    def without_depth(self) -> int:
        return self.counts.without_depth

    @property
    def problems(self) -> Counter[Issue]:
        """Input issue kind -> frames skipped or degraded by it."""
        return self.counts.issues

    @property
    def first_problem(self) -> dict[Issue, str]:
        return self.counts.first

    def to_json(self) -> dict:
        return {
            'bag': self.bag,
            'color_topic': self.color_topic,
            'depth_topic': self.depth_topic,
            'frames_in_bag': self.frames_in_bag,
            'frames': self.frames,
            'without_depth': self.without_depth,
            'problems': {kind.value: n for kind, n in self.problems.items()},
            'first_problem': {kind.value: m for kind, m in self.first_problem.items()},
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
            f'  {n} frames with {kind.value} problems, first: {self.first_problem[kind]}'
            for kind, n in sorted(self.problems.items())
        ]
        return '\n'.join(lines)


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
        msg = alarm_array(status, self.robot_id, log_time)
        self.bag.write(ALARM_TOPIC, ALARM_TYPE, msg, log_time)

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
        self.runner = FrameRunner(pipeline)
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
        self._out = _Outputs(bag, self.runner.pipeline.config.robot_id)

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
                str(path), color.topic, depth.topic if depth else '', color.msgcount,
                self.runner.counts,
            )  # fmt: skip
            bar = tqdm(
                total=color.msgcount,
                desc='replay',
                unit='frame',
                disable=None if cfg.progress is None else not cfg.progress,
            )
            wait_ns = round(cfg.depth_wait_s * 1e9)
            messages = self._messages(reader, color, depth)
            with bar:
                for frame in pair_recorded(messages, depth is not None, wait_ns):
                    self._process(frame)
                    bar.update(1)
        finally:
            reader.close()
        s = self.summary
        s.wall_s = time.perf_counter() - started
        if self._first_t is not None and self._last_t is not None:
            s.bag_s = self._last_t - self._first_t
        if s.frames == 0:
            reasons = '; '.join(f'{k.value}: {m}' for k, m in s.first_problem.items())
            raise BagError(
                f'no frame of {s.frames_in_bag} on {s.color_topic!r} in {str(path)!r} could be '
                f'processed' + (f' ({reasons})' if reasons else '')
            )
        return s

    def _messages(
        self, reader: AnyReader, color: Connection, depth: Connection | None
    ) -> Iterator[tuple[bool, int, int, Any]]:
        """``(is_colour, log_time, stamp, message)`` of the camera topics in bag order."""
        connections = [color] + ([depth] if depth is not None else [])
        read = 0
        try:
            for connection, log_time, raw in reader.messages(connections=connections):
                msg = reader.deserialize(raw, connection.msgtype)
                read += 1
                yield connection.topic == color.topic, log_time, stamp_ns(msg.header), msg
        except _CORRUPT_BAG_ERRORS as e:
            raise BagError(
                f'bag {self.summary.bag!r} is unreadable after {read} messages '
                f'(truncated or corrupt?): {type(e).__name__}: {e}'
            ) from e

    def _process(self, frame: Recorded) -> None:
        t = frame.stamp_ns * 1e-9
        self._tick_gap(t)
        out = self.runner.frame(frame.rgb, frame.depth, t)
        self._log_first(out.issues)
        r = out.result
        if r is None:
            if not out.rejected:  # the model is only ever swapped in, never out
                raise ConfigError('the pipeline lost its model during replay')
            return
        self.summary.levels[r.alarm.level.name] += 1
        self._first_t = t if self._first_t is None else self._first_t
        self._last_t = t
        if self._out is not None:
            self._out.frame(frame.log_time_ns, frame.rgb.header, r)
        self._samples(frame.log_time_ns, out.samples)
        if out.alarm is not None:
            self._alarm(frame.log_time_ns, t, out.alarm)
        if self.on_frame is not None:
            self.on_frame(r)

    def _tick_gap(self, t: float) -> None:
        if self._last_t is None:
            return
        config = self.runner.pipeline.config
        tick = self._last_t + config.alarm.stale_after + self.config.tick_period_s
        if tick < t:
            out = self.runner.tick(tick)
            self._samples(round(tick * 1e9), out.samples)
            if out.changed:
                self._alarm(round(tick * 1e9), tick, out.alarm)

    def _alarm(self, log_time: int, t: float, status: AlarmStatus) -> None:
        self.summary.alarms.append(
            AlarmChange(t, status.level, status.message, status.score, status.sample_ids)
        )
        log.info('alarm %s at %.3f: %s', status.level.name, t, status.message)
        if self._out is not None:
            self._out.alarm(log_time, status)

    def _samples(self, log_time: int, news: SampleNews) -> None:
        for o in news.refused:
            self.summary.refused.append(o.error)
            log.warning('sample %s not spooled: %s', o.request.sample_id, o.error)
        for event in news.events:
            self.summary.samples.append(event)
            if self._out is not None:
                self._out.sample(log_time, event)

    def _log_first(self, issues: tuple[FrameIssue, ...]) -> None:
        """Log the first issue of each kind; the summary counts them all."""
        for issue in issues:
            if self.runner.counts.issues[issue.kind] == 1:
                log.warning(
                    '%s (further %r issues are counted in the summary)',
                    issue.message,
                    issue.kind.value,
                )


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
    replay = Replay(
        Pipeline(pipeline, slot, writer, config.color_topic), config, on_frame=on_frame
    )
    if write_bag is None:
        return replay.run(bag)
    with new_bag(write_bag, write_storage) as out:  # gone again if the replay fails
        replay.set_outputs(out)
        return replay.run(bag)
