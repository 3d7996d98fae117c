"""The seconds before (and after) each alarm ERROR, kept as a rosbag2 bag in the spool (no ROS).

``EventRecorder`` keeps a ring buffer of the last ``pre_s`` seconds of what perception saw and
said: camera frames (colour and aligned depth) with their labels, at most ``frame_rate_hz`` of
them and at most ``max_width`` pixels wide, and the unseen score and alarm status of every frame.
When the alarm enters ERROR it goes on for ``post_s`` seconds, then hands the window to its
writer thread, which writes it as one MCAP bag (``rosbags``, zstd-compressed chunks) and spools
it as an *event*: a spool entry whose meta.json has ``kind: event``. The bridge uploads it like a
sample, under ``events/`` with a line in ``events.txt`` (``transfer/uploader.py``).

The bag uses the topics and types the node and the camera publish (root namespace), so
``ros2 bag play`` replays it into a live system and ``robo-lifelong replay`` runs a model over
it: ``/camera/color/image_raw`` (rgb8), ``/camera/aligned_depth_to_color/image_raw`` (16UC1 mm,
when the frames had depth), ``/segmentation/labels`` (mono8, the frame's size), ``/unseen/score``
(std_msgs/Float32) and ``/alarm`` (diagnostic_msgs/DiagnosticArray: the status at the start of
the window and at every change). Messages are logged at the frames' stamps.

Frames are kept raw (downscaled, not lossy-compressed), so a replay sees the pixels the model saw
at that size; the MCAP's zstd chunks make them smaller on disk. A frame that is downscaled keeps
its labels and depth at the same size (nearest neighbour). A second ERROR inside the window of
the first belongs to that event. Bounds: memory holds at most (pre_s + post_s) * frame_rate_hz
kept frames per window, for the buffer, one event waiting and one being written; the spool
holds at most ``max_bytes`` of events (more: the event is refused with the reason, never
silently dropped), so events never crowd out the samples the lifelong loop learns from.

Times: ``t`` is the caller's monotonic clock (node clock, or the stamps in replay) for the
windows; messages carry the frames' stamps, ticks' alarm changes the stamp the clock offset of
the last frame gives.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from robo_lifelong.errors import BagError, ConfigError, SpoolError, SpoolFullError
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
)
from robo_lifelong.parameters import param
from robo_lifelong.perception.alarm_policy import AlarmLevel, AlarmStatus
from robo_lifelong.perception.pipeline import ALARM_NAME, FrameResult
from robo_lifelong.supervision import Health, QueueWorker
from robo_lifelong.transfer.spool import EVENT_KIND, KIND_KEY, Spool, make_sample_id

log = logging.getLogger(__name__)

SCORE_TYPE = 'std_msgs/msg/Float32'
ALARM_TYPE = 'diagnostic_msgs/msg/DiagnosticArray'
BAG_STORAGE = 'mcap'
# a frame stamped up to this before its turn still counts for the rate: cameras jitter
_RATE_SLACK_S = 1e-3


@dataclass(frozen=True)
class EventConfig:
    """The event recorder's settings; the perception node's parameters ``event_<field>``, read
    at start (the ring buffer is sized by them)."""

    record: bool = field(
        default=True,
        metadata=param('Keep a bag of the seconds around each alarm ERROR in the spool.'),
    )
    pre_s: float = field(
        default=10.0, metadata=param('Seconds before the ERROR kept in its bag.', low=0.0)
    )
    post_s: float = field(
        default=5.0, metadata=param('Seconds after the ERROR kept in its bag.', low=0.0)
    )
    frame_rate_hz: float = field(
        default=5.0,
        metadata=param(
            'Camera frames per second kept in the bag (score and alarm: every frame).', low=0.0
        ),
    )
    max_width: int = field(
        default=320,
        metadata=param(
            'Wider frames are downscaled to this width in the bag (labels, depth too).', low=16
        ),
    )
    max_bytes: int = field(
        default=500_000_000,
        metadata=param('Bytes of events the spool may hold; more -> refused + WARN.', low=1),
    )
    max_queue: int = 1  # finished windows waiting for the writer thread (each is memory)

    def __post_init__(self) -> None:
        if self.pre_s < 0.0 or self.post_s < 0.0:
            raise ConfigError(
                f'pre_s and post_s must be >= 0, got {self.pre_s!r}, {self.post_s!r}'
            )
        if not self.frame_rate_hz > 0.0:
            raise ConfigError(f'frame_rate_hz must be > 0, got {self.frame_rate_hz!r}')
        if self.max_width < 16:
            raise ConfigError(f'max_width must be >= 16, got {self.max_width!r}')
        if self.max_bytes < 1 or self.max_queue < 1:
            raise ConfigError(
                f'max_bytes and max_queue must be >= 1, got {self.max_bytes!r}, {self.max_queue!r}'
            )


@dataclass(frozen=True)
class _Frame:
    """One kept camera frame, downscaled; arrays owned (copies)."""

    t: float
    stamp_ns: int
    rgb: np.ndarray  # (h, w, 3) uint8
    depth_mm: np.ndarray | None  # (h, w) uint16
    labels: np.ndarray  # (h, w) uint8

    @property
    def nbytes(self) -> int:
        depth = 0 if self.depth_mm is None else self.depth_mm.nbytes
        return self.rgb.nbytes + depth + self.labels.nbytes


@dataclass(frozen=True)
class _Note:
    """The score (None: a tick) and the alarm status at one moment."""

    t: float
    stamp_ns: int
    score: float | None
    alarm: AlarmStatus
    changed: bool  # the alarm's level changed here


@dataclass
class _Window:
    """An event being recorded: what the buffer held at the ERROR, then what came after."""

    event_id: str
    error: AlarmStatus
    error_stamp_ns: int
    end_t: float
    frames: list[_Frame]
    notes: list[_Note]


@dataclass(frozen=True)
class EventOutcome:
    event_id: str
    path: str | None  # the spooled directory; None when refused
    error: str  # '' when spooled
    frames: int = 0
    bytes: int = 0  # of the bag's files
    write_s: float = 0.0  # wall time of writing the bag
    full: bool = False  # refused for the events' or the spool's bound

    @property
    def spooled(self) -> bool:
        return self.path is not None


def alarm_array(status: AlarmStatus, robot_id: str, stamp_ns: int) -> Any:
    """A rosbags ``diagnostic_msgs/DiagnosticArray`` of the alarm status, as the node publishes
    it on ``alarm``."""
    t = TYPESTORE.types
    diag = t['diagnostic_msgs/msg/DiagnosticStatus'](
        level=int(status.level),
        name=ALARM_NAME,
        message=status.message,
        hardware_id=robot_id,
        values=[t['diagnostic_msgs/msg/KeyValue'](key=k, value=v) for k, v in status.key_values()],
    )
    return t[ALARM_TYPE](header=header(stamp_ns), status=[diag])


def downscale(
    rgb: np.ndarray, depth_mm: np.ndarray | None, labels: np.ndarray, max_width: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Copies of a frame at most ``max_width`` wide, aspect kept: colour by area averaging,
    depth and labels by nearest neighbour (a mean of class ids or of depth edges is no value)."""
    h, w = rgb.shape[:2]
    if w <= max_width:
        return rgb.copy(), None if depth_mm is None else depth_mm.copy(), labels.copy()
    size = (max_width, max(1, round(h * max_width / w)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    depth = (
        None if depth_mm is None else cv2.resize(depth_mm, size, interpolation=cv2.INTER_NEAREST)
    )
    return small, depth, cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)


class EventRecorder:
    """Feed it every processed frame (``frame``) and the periodic tick (``tick``) from one
    thread; finished events come back through ``drain``. ``threaded=False`` writes each bag in
    the call that finishes its window (offline use and tests)."""

    def __init__(
        self, config: EventConfig, robot_id: str, spool: Spool, threaded: bool = True
    ) -> None:
        self.config = config
        self.robot_id = robot_id
        self.spool = spool
        self._frames: deque[_Frame] = deque()
        self._notes: deque[_Note] = deque()
        self._last_kept_t: float | None = None
        self._last_alarm: AlarmStatus | None = None
        self._clock_offset_ns = 0  # stamp - t of the last frame
        self._window: _Window | None = None
        # spool entry id -> whether it is an event (None: not read yet); writer thread only
        self._is_event: dict[str, bool | None] = {}
        self._worker = QueueWorker(
            'event-writer',
            'events',
            self._write,
            # a busy writer is not the events' bound: ``full`` stays False
            lambda w, reason, _busy: EventOutcome(w.event_id, None, reason, len(w.frames)),
            log,
            threaded=threaded and config.record,
            max_queue=config.max_queue,
        )

    # -- feeding (the caller's thread) ----------------------------------------------------

    @property
    def recording(self) -> bool:
        """An ERROR's window is open."""
        return self._window is not None

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the frames in the ring buffer and the open window."""
        held = {id(f): f.nbytes for f in self._frames}
        if self._window is not None:
            held.update((id(f), f.nbytes) for f in self._window.frames)
        return sum(held.values())

    def frame(self, t: float, r: FrameResult) -> None:
        """Record one processed frame at the caller's time ``t``."""
        if not self.config.record:
            return
        stamp_ns = round(r.stamp * 1e9)
        self._clock_offset_ns = stamp_ns - round(t * 1e9)
        if self._window is not None and t > self._window.end_t:
            self._finish()
        entering = r.alarm_changed and r.alarm.level is AlarmLevel.ERROR
        score = None if r.unseen is None else float(r.unseen.score)
        note = self._note(t, stamp_ns, score, r.alarm)
        kept = self._keep(t, stamp_ns, r, force=entering)
        if entering and self._window is None:
            self._open(t, stamp_ns, r.alarm)
        elif self._window is not None:
            self._window.notes.append(note)
            if kept is not None:
                self._window.frames.append(kept)

    def tick(self, t: float, status: AlarmStatus) -> None:
        """Note an alarm change without a frame (STALE) and close a window whose time is up
        though frames stopped coming."""
        if not self.config.record:
            return
        if self._window is not None and t >= self._window.end_t:
            self._finish()
        if self._last_alarm is not None and status.level is self._last_alarm.level:
            return
        note = self._note(t, round(t * 1e9) + self._clock_offset_ns, None, status)
        if self._window is not None:
            self._window.notes.append(note)

    def _note(self, t: float, stamp_ns: int, score: float | None, alarm: AlarmStatus) -> _Note:
        changed = self._last_alarm is None or alarm.level is not self._last_alarm.level
        self._last_alarm = alarm
        note = _Note(t, stamp_ns, score, alarm, changed)
        self._notes.append(note)
        self._prune(t)
        return note

    def _keep(self, t: float, stamp_ns: int, r: FrameResult, force: bool) -> _Frame | None:
        last = self._last_kept_t
        period = 1.0 / self.config.frame_rate_hz
        # a clock that went back (a replay restarting) starts the rate over
        due = last is None or t < last or t - last >= period - _RATE_SLACK_S
        if not (due or force):
            return None
        self._last_kept_t = t
        rgb, depth, labels = downscale(r.rgb, r.depth_mm, r.labels, self.config.max_width)
        kept = _Frame(t, stamp_ns, rgb, depth, labels)
        self._frames.append(kept)
        self._prune(t)
        return kept

    def _prune(self, t: float) -> None:
        start = t - self.config.pre_s
        while self._frames and self._frames[0].t < start:
            self._frames.popleft()
        while self._notes and self._notes[0].t < start:
            self._notes.popleft()

    def _open(self, t: float, stamp_ns: int, status: AlarmStatus) -> None:
        self._window = _Window(
            make_sample_id(self.robot_id, stamp_ns * 1e-9),
            status,
            stamp_ns,
            t + self.config.post_s,
            list(self._frames),
            list(self._notes),
        )
        log.info('alarm ERROR: recording event %s', self._window.event_id)

    def _finish(self) -> None:
        window, self._window = self._window, None
        if window is None:
            return
        self._worker.submit(window)

    # -- results ---------------------------------------------------------------------------

    def drain(self) -> list[EventOutcome]:
        return self._worker.drain()

    def health(self) -> Health | None:
        """The writer thread's health; None when not threaded."""
        return self._worker.health()

    def close(self, timeout: float = 30.0) -> None:
        """Write an open window as far as it got, finish the queued events, stop the thread."""
        if not self.config.record:
            return
        self._finish()
        self._worker.close(timeout)

    # -- writing (the writer thread) -------------------------------------------------------

    def _write(self, w: _Window) -> EventOutcome:
        started = time.perf_counter()
        scratch = Path(tempfile.mkdtemp(prefix='robo-lifelong-event-'))
        try:
            bag_dir = scratch / w.event_id
            self._write_bag(bag_dir, w)
            files = {p.name: p.read_bytes() for p in sorted(bag_dir.iterdir())}
        except (BagError, OSError) as e:
            return EventOutcome(w.event_id, None, f'cannot write its bag: {e}', len(w.frames))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        write_s = time.perf_counter() - started
        size = sum(len(d) for d in files.values())
        outcome = EventOutcome(w.event_id, None, '', len(w.frames), size, write_s)
        try:
            self._check_room(w.event_id, size)
            path = self.spool.put(w.event_id, files, self._meta(w, files))
        except SpoolFullError as e:
            return _refused(outcome, str(e), full=True)
        except SpoolError as e:
            return _refused(outcome, str(e))
        return EventOutcome(w.event_id, str(path), '', len(w.frames), size, write_s)

    def _write_bag(self, path: Path, w: _Window) -> None:
        types = TYPESTORE.types
        messages: list[tuple[int, int, str, str, Any]] = []  # (stamp, order, topic, type, msg)
        for f in w.frames:
            head = header(f.stamp_ns)
            messages.append((f.stamp_ns, 0, COLOR_TOPIC, IMAGE_TYPE, image(f.rgb, 'rgb8', head)))
            if f.depth_mm is not None:
                depth = image(f.depth_mm, '16UC1', head)
                messages.append((f.stamp_ns, 1, DEPTH_TOPIC, IMAGE_TYPE, depth))
            labels = image(f.labels, 'mono8', head)
            messages.append((f.stamp_ns, 2, LABELS_TOPIC, IMAGE_TYPE, labels))
        for i, n in enumerate(w.notes):
            if n.score is not None:
                score = types[SCORE_TYPE](data=n.score)
                messages.append((n.stamp_ns, 3, SCORE_TOPIC, SCORE_TYPE, score))
            # the bag opens with the level in force, as the latched topic gives it a subscriber
            if n.changed or i == 0:
                alarm = alarm_array(n.alarm, self.robot_id, n.stamp_ns)
                messages.append((n.stamp_ns, 4, ALARM_TOPIC, ALARM_TYPE, alarm))
        messages.sort(key=lambda m: m[:2])
        with BagWriter(path, BAG_STORAGE, compress=True) as bag:
            for stamp_ns, _, topic, msgtype, msg in messages:
                bag.write(topic, msgtype, msg, stamp_ns)

    def _meta(self, w: _Window, files: dict[str, bytes]) -> dict:
        stamps = [f.stamp_ns for f in w.frames] + [n.stamp_ns for n in w.notes]
        first = w.frames[0] if w.frames else None
        return {
            KIND_KEY: EVENT_KIND,
            'stamp': w.error_stamp_ns * 1e-9,  # the ERROR: names the event's UTC day
            'robot_id': self.robot_id,
            'storage': BAG_STORAGE,
            'bag_start': min(stamps) * 1e-9,
            'bag_end': max(stamps) * 1e-9,
            'pre_s': self.config.pre_s,
            'post_s': self.config.post_s,
            'frames': len(w.frames),
            'frames_before_error': sum(f.stamp_ns < w.error_stamp_ns for f in w.frames),
            'width': 0 if first is None else int(first.rgb.shape[1]),
            'height': 0 if first is None else int(first.rgb.shape[0]),
            'with_depth': first is not None and first.depth_mm is not None,
            'alarm': dict(w.error.key_values(), message=w.error.message),
        }

    def _check_room(self, event_id: str, size: int) -> None:
        used = 0
        entries = self.spool.list()
        self._is_event = {e.sample_id: self._is_event.get(e.sample_id) for e in entries}
        for e in entries:
            if self._is_event[e.sample_id] is None:
                try:
                    self._is_event[e.sample_id] = e.is_event()
                except SpoolError:  # uploaded and removed meanwhile
                    self._is_event[e.sample_id] = False
            used += e.bytes if self._is_event[e.sample_id] else 0
        if used + size > self.config.max_bytes:
            raise SpoolFullError(
                f'events in spool {str(self.spool.root)!r} hold {used} bytes; refusing '
                f'{event_id!r} ({size} bytes; bound event_max_bytes={self.config.max_bytes})'
            )


def _refused(outcome: EventOutcome, error: str, full: bool = False) -> EventOutcome:
    return EventOutcome(
        outcome.event_id, None, error, outcome.frames, outcome.bytes, outcome.write_s, full
    )
