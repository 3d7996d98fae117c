"""The unseen-task alarm: a pure state machine over the stream of calibrated unseen scores.

Levels follow diagnostic_msgs/DiagnosticStatus (OK 0, WARN 1, ERROR 2, STALE 3):

* WARN: the smoothed score stayed above the threshold for ``warn_enter_frames`` frames in a row;
* ERROR: the episode persisted (``error_enter_frames`` frames above the threshold since it began,
  or ``error_enter_seconds`` with the score still above it): the emergency response;
* back to OK only after ``exit_frames`` consecutive frames below ``exit_ratio * threshold``, so a
  score hovering around the threshold cannot flap;
* STALE: no model, no frame yet, or no frame for ``stale_after`` seconds. Recovery restarts the
  smoothing, since scores from before the gap say nothing about the scene now.

What an admin reads (``AlarmStatus``): the message names the reason of the level and what to do;
``task`` is the alarm's verdict, ``unseen`` in WARN and ERROR (the nearest known task in
``nearest_known_task``), the recognised known task otherwise. The per-frame task guess is the
nearest known task in embedding space, and on a scene the model knows only partly it changes from
frame to frame (sunny, overcast and curbs in turn on one sunny street): the reported task is the
most frequent guess of the last ``task_window_frames`` frames, and the one reported keeps a tie,
so it changes only when another task wins the window.

Times are seconds since the epoch on the caller's clock (ROS time or bag time), so ``since`` can
be shown as a UTC date; a step backwards is held at the last time seen.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import IntEnum

from robo_lifelong.errors import ConfigError
from robo_lifelong.parameters import Off, param


class AlarmLevel(IntEnum):
    """Values equal diagnostic_msgs/DiagnosticStatus levels, so nodes can pass them through."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


UNSEEN_TASK = 'unseen'  # the ``task`` of a WARN or ERROR status
_CHECK_CAMERA = 'check that the camera driver runs and publishes there'


@dataclass(frozen=True)
class AlarmConfig:
    """The alarm's settings; the perception node's parameters ``alarm_<field>``."""

    ema_alpha: float = field(
        default=0.5,
        metadata=param(
            'Weight of the newest score in the exponential moving average, (0, 1].',
            low=0.0,
            high=1.0,
            dynamic=True,
        ),
    )
    # 5: a third of a second at 15 Hz. With 3, a 4-frame glance at an odd view of a known street
    # (a new campus in bench_perception) warned for 12 frames; ERROR still comes after 8 frames.
    warn_enter_frames: int = field(
        default=5,
        metadata=param('Frames above the threshold in a row before WARN.', low=1, dynamic=True),
    )
    error_enter_frames: int | None = field(
        default=8,
        metadata=param(
            'Frames above the threshold in the episode before ERROR (0 = off).',
            low=0,
            dynamic=True,
            off=Off.ZERO,
        ),
    )
    error_enter_seconds: float | None = field(
        default=None,
        metadata=param(
            'Or: episode age (score still above) before ERROR, s (0 = off).',
            low=0.0,
            dynamic=True,
            off=Off.ZERO,
        ),
    )
    exit_ratio: float = field(
        default=0.8,
        metadata=param(
            'Exit threshold = exit_ratio * threshold (hysteresis), (0, 1].',
            low=0.0,
            high=1.0,
            dynamic=True,
        ),
    )
    exit_frames: int = field(
        default=10,
        metadata=param('Frames below the exit threshold in a row before OK.', low=1, dynamic=True),
    )
    stale_after: float = field(
        default=1.0,
        metadata=param('Seconds without frames before STALE.', low=0.0, dynamic=True),
    )
    task_window_frames: int = field(
        default=15,
        metadata=param(
            'Frames whose task guesses vote for the reported task (module doc: why).',
            low=1,
            dynamic=True,
        ),
    )
    max_sample_ids: int = 50  # newest sample ids kept per episode (bounds the status size)

    def __post_init__(self) -> None:
        if not 0.0 < self.ema_alpha <= 1.0:
            raise ConfigError(f'ema_alpha must be in (0, 1], got {self.ema_alpha!r}')
        if not 0.0 < self.exit_ratio <= 1.0:
            raise ConfigError(f'exit_ratio must be in (0, 1], got {self.exit_ratio!r}')
        for name in ('warn_enter_frames', 'exit_frames', 'task_window_frames', 'max_sample_ids'):
            if getattr(self, name) < 1:
                raise ConfigError(f'{name} must be >= 1, got {getattr(self, name)!r}')
        if self.error_enter_frames is None and self.error_enter_seconds is None:
            raise ConfigError('set error_enter_frames or error_enter_seconds (or both)')
        if (
            self.error_enter_frames is not None
            and self.error_enter_frames < self.warn_enter_frames
        ):
            raise ConfigError(
                f'error_enter_frames ({self.error_enter_frames!r}) must be >= '
                f'warn_enter_frames ({self.warn_enter_frames!r})'
            )
        if self.error_enter_seconds is not None and not self.error_enter_seconds > 0.0:
            raise ConfigError(f'error_enter_seconds must be > 0, got {self.error_enter_seconds!r}')
        if not self.stale_after > 0.0:
            raise ConfigError(f'stale_after must be > 0, got {self.stale_after!r}')


@dataclass(frozen=True)
class AlarmStatus:
    level: AlarmLevel
    message: str  # the level's reason and what to do about it
    score: float | None  # smoothed score; None before the first frame or after a gap
    threshold: float | None
    known_task: str  # the recognised (or, when unseen, nearest) known task; '' if none yet
    model_version: str | None
    since: float  # time the current level started, seconds since the epoch
    sample_ids: tuple[str, ...]  # samples collected during the current episode

    @property
    def task(self) -> str:
        """``unseen`` while the alarm judges the scene unseen, else the known task."""
        return (
            UNSEEN_TASK if self.level in (AlarmLevel.WARN, AlarmLevel.ERROR) else self.known_task
        )

    def key_values(self) -> list[tuple[str, str]]:
        """The DiagnosticStatus key-values (README: the alarm), only those with a value."""
        values = [
            ('level', self.level.name),
            ('task', self.task),
            ('nearest_known_task', self.known_task if self.task == UNSEEN_TASK else ''),
            ('score', '' if self.score is None else f'{self.score:.3f}'),
            # the threshold is the score's: without a score (STALE) it says nothing
            ('threshold', '' if self.score is None else f'{self.threshold:.3f}'),
            ('since', iso_utc(self.since)),
            ('model_version', self.model_version or ''),
            ('sample_ids', ','.join(self.sample_ids)),
        ]
        return [(k, v) for k, v in values if v]


def iso_utc(t: float) -> str:
    """Seconds since the epoch as ISO-8601 UTC, e.g. ``2026-12-02T05:15:06.123Z``."""
    stamp = datetime.fromtimestamp(t, timezone.utc).isoformat(timespec='milliseconds')
    return stamp.replace('+00:00', 'Z')


class AlarmPolicy:
    """Feed it every processed frame (``score`` given) and a periodic tick (``score=None``)."""

    def __init__(
        self, config: AlarmConfig | None = None, source: str = 'the camera topic'
    ) -> None:
        self.config = config or AlarmConfig()
        self.source = source  # where frames come from, named when there are none
        self._level = AlarmLevel.STALE
        self._message = self._no_frames_yet()
        self._since: float | None = None
        self._last_t: float | None = None
        self._last_frame_t: float | None = None
        self._no_score = ''  # why the frames that arrive have no score, if they do
        self._ema: float | None = None
        self._threshold: float | None = None
        self._task = ''
        self._guesses: deque[str] = deque()  # task guesses of the newest frames
        self._model: str | None = None
        self._above_run = 0  # consecutive frames above the threshold
        self._below_run = 0  # consecutive frames below the exit threshold
        self._episode_above = 0  # frames above the threshold since the episode began
        self._episode_start: float | None = None
        self._sample_ids: list[str] = []

    @property
    def level(self) -> AlarmLevel:
        return self._level

    def attach_sample(self, sample_id: str) -> None:
        """Record a sample collected during the current episode; the status lists it until the
        episode ends (back to OK, or STALE)."""
        self._sample_ids.append(sample_id)
        del self._sample_ids[: -self.config.max_sample_ids]

    def status(self) -> AlarmStatus:
        return AlarmStatus(
            level=self._level,
            message=self._message,
            score=self._ema,
            threshold=self._threshold,
            known_task=self._task,
            model_version=self._model,
            since=self._since if self._since is not None else 0.0,
            sample_ids=tuple(self._sample_ids),
        )

    def update(
        self,
        t: float,
        score: float | None = None,
        *,
        threshold: float = 1.0,
        task_guess: str = '',
        model_version: str | None,
        no_model: str = '',
        no_score: str = '',
    ) -> tuple[AlarmStatus, bool]:
        """Advance to time ``t``. ``score`` is the frame's calibrated unseen score, or None when
        this is a tick without a frame (a non-finite score counts as no frame). ``no_model``
        says why ``model_version`` is None, ``no_score`` why a frame that did arrive has no
        score (a camera fault, a model without unseen calibration): the STALE messages name it
        rather than claiming that no frames arrive.

        :return: the status after this update and whether its level changed.
        """
        if self._last_t is not None and t < self._last_t:
            t = self._last_t  # a clock step backwards must not shorten 'since' or staleness
        self._last_t = t
        if self._since is None:
            self._since = t
        self._model = model_version
        before = self._level
        frame = score is not None and math.isfinite(score)
        if frame:
            self._last_frame_t = t
            self._no_score = ''
        elif no_score:
            self._no_score = no_score
        if model_version is None:
            self._go_stale(t, f'no model loaded: {no_model}' if no_model else 'no model loaded')
        elif self._last_frame_t is None:
            self._go_stale(t, self._no_verdict('yet'))
        elif t - self._last_frame_t > self.config.stale_after:
            self._go_stale(t, self._no_verdict(f'for {t - self._last_frame_t:.1f} s'))
        elif frame and score is not None:
            if self._level == AlarmLevel.STALE:
                self._set(AlarmLevel.OK, t, '')
            self._threshold = threshold
            self._vote(task_guess)
            self._on_frame(t, score, threshold)
        return self.status(), self._level != before

    def _no_frames_yet(self) -> str:
        return f'no frames on {self.source} yet: {_CHECK_CAMERA}'

    def _no_verdict(self, how_long: str) -> str:
        if self._no_score:
            return f'no unseen-task verdict {how_long}: {self._no_score}'
        return f'no frames on {self.source} {how_long}: {_CHECK_CAMERA}'

    def _vote(self, guess: str) -> None:
        """Add the frame's guess to the window; the reported task changes only when another
        task has more votes in it (module doc: why)."""
        self._guesses.append(guess)
        while len(self._guesses) > self.config.task_window_frames:
            self._guesses.popleft()
        votes = Counter(self._guesses)
        best = max(votes.values())
        if votes.get(self._task, 0) < best:
            # the first to reach the most votes, counting from the oldest frame
            self._task = next(g for g in self._guesses if votes[g] == best)

    def _go_stale(self, t: float, why: str) -> None:
        if self._level != AlarmLevel.STALE:
            self._set(AlarmLevel.STALE, t, why)
            self._reset_episode()
            self._ema = None
            self._guesses.clear()  # like the smoothing: the scene may have changed meanwhile
            self._task = ''
        self._message = why

    def _reset_episode(self) -> None:
        self._above_run = self._below_run = self._episode_above = 0
        self._episode_start = None
        self._sample_ids.clear()

    def _set(self, level: AlarmLevel, t: float, message: str) -> None:
        self._level, self._since, self._message = level, t, message

    def _on_frame(self, t: float, score: float, threshold: float) -> None:
        cfg = self.config
        a = cfg.ema_alpha
        self._ema = score if self._ema is None else a * score + (1.0 - a) * self._ema
        above = self._ema > threshold
        below_exit = self._ema < cfg.exit_ratio * threshold
        self._above_run = self._above_run + 1 if above else 0
        self._below_run = self._below_run + 1 if below_exit else 0
        if above:
            if self._episode_start is None:
                self._episode_start = t
            self._episode_above += 1

        if self._level == AlarmLevel.OK:
            if self._above_run >= cfg.warn_enter_frames:
                self._set(AlarmLevel.WARN, t, '')
            elif not above:
                # no episode in progress: what was attached belonged to isolated frames
                self._reset_episode()
        if self._level == AlarmLevel.WARN and above and self._persistent(t):
            self._set(AlarmLevel.ERROR, t, '')
        if (
            self._level in (AlarmLevel.WARN, AlarmLevel.ERROR)
            and self._below_run >= cfg.exit_frames
        ):
            self._set(AlarmLevel.OK, t, '')
            self._reset_episode()
        self._message = self._describe(threshold)

    def _persistent(self, t: float) -> bool:
        cfg = self.config
        by_frames = (
            cfg.error_enter_frames is not None and self._episode_above >= cfg.error_enter_frames
        )
        by_time = (
            cfg.error_enter_seconds is not None
            and self._episode_start is not None
            and t - self._episode_start >= cfg.error_enter_seconds
        )
        return by_frames or by_time

    def _describe(self, threshold: float) -> str:
        # short enough for ``ros2 topic echo`` (it cuts strings at 128 characters); the nearest
        # known task and the sample ids are keys of their own
        score = f'score {self._ema:.2f}, threshold {threshold:.2f}'
        if self._level == AlarmLevel.OK:
            return f'known task {self._task or "-"} ({score})'
        if self._level == AlarmLevel.WARN:
            return f'unseen task suspected ({score}): collecting its frames (sample_ids)'
        return (
            'persistent unseen task, emergency response: slow down or stop the robot; its '
            'frames (sample_ids) await labelling'
        )
