"""The robot's original terrain skill on a predicted label map (Sedna robot example, PROTOCOL.md
§7.2-§7.4), for label maps of any size.

* Ground regions ahead of the robot: a "current" trapezoid at the bottom of the image and a
  "future" one above it. A region is ``curb`` when class 19 covers more than 20 % of it, else
  ``road`` / ``sidewalk`` / ``other`` by its most frequent class id (0 / 1 / anything else).
* Ramp location (class 21) from three pairs of polygons (a small trapezoid straight ahead, the
  image-left and image-right sides), each split into a bottom and an upper part.
* Gait advice: a danger level that rises while a curb is ahead or the regions differ and falls
  twice as fast otherwise; up-stair gait above 1, trot at 0, stop on unseen scenes.

The polygons are defined at 2048x1024 and scaled as fractions of the image size; they are
rasterised once per image size, so a frame costs a few masked counts.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

from robo_lifelong.errors import ConfigError, ImageConversionError
from robo_lifelong.labels import CLASSES, class_id

CURB_ID = class_id('curb')  # 19
RAMP_ID = class_id('ramp')  # 21
ROAD_ID = class_id('road')  # 0
SIDEWALK_ID = class_id('sidewalk')  # 1

_REF_W, _REF_H = 2048.0, 1024.0
Polygon = tuple[tuple[float, float], ...]  # (x, y) as fractions of width and height


def _ref(*points: tuple[int, int]) -> Polygon:
    return tuple((x / _REF_W, y / _REF_H) for x, y in points)


CURRENT_REGION: Polygon = ((0.0, 1.0), (1.0, 1.0), (0.882, 0.8), (0.118, 0.8))
FUTURE_REGION: Polygon = ((0.118, 0.8), (0.882, 0.8), (0.765, 0.66), (0.235, 0.66))
# (bottom part, upper part) of each ramp test area, in Sedna's pixels at 2048x1024
RAMP_AREAS: dict[str, tuple[Polygon, Polygon]] = {
    'small_trapezoid': (
        _ref((488, 1024), (1560, 1024), (1391, 819), (621, 819)),
        _ref((741, 676), (1275, 676), (1391, 819), (621, 819)),
    ),
    'left': (
        _ref((621, 819), (242, 819), (0, 1024), (488, 1024)),
        _ref((741, 676), (481, 676), (242, 819), (621, 819)),
    ),
    'right': (
        _ref((1806, 819), (1391, 819), (1560, 1024), (2048, 1024)),
        _ref((1567, 676), (1275, 676), (1391, 819), (1806, 819)),
    ),
}
_NAMES = {c.id: c.name for c in CLASSES}


class Ground(str, Enum):
    CURB = 'curb'
    ROAD = 'road'
    SIDEWALK = 'sidewalk'
    OTHER = 'other'


class Ramp(str, Enum):
    SMALL_TRAPEZOID = 'small_trapezoid'
    BOTTOM_LEFT = 'bottom_left'
    UPPER_LEFT = 'upper_left'
    CENTER_LEFT = 'center_left'
    BOTTOM_RIGHT = 'bottom_right'
    UPPER_RIGHT = 'upper_right'
    CENTER_RIGHT = 'center_right'
    NO_RAMP = 'no_ramp'


@dataclass(frozen=True)
class TerrainConfig:
    curb_share: float = 0.2  # curb when class 19 covers more than this share of a region
    small_trapezoid_ratios: tuple[float, float] = (0.9, 0.7)  # (partial, all)
    side_ratios: tuple[float, float] = (0.4, 0.2)
    ramp_detection: bool = True  # False: always no_ramp (Sedna's robo_skill != ramp_detection)
    mix_classes: int = 5  # most frequent classes reported per region
    cached_sizes: int = 4  # image sizes whose masks are kept

    def __post_init__(self) -> None:
        for name in ('small_trapezoid_ratios', 'side_ratios'):
            ratios = getattr(self, name)
            if len(ratios) != 2 or not all(0.0 <= r <= 1.0 for r in ratios):
                raise ConfigError(f'{name} must be two shares in [0, 1], got {ratios!r}')
        if not 0.0 <= self.curb_share <= 1.0:
            raise ConfigError(f'curb_share must be in [0, 1], got {self.curb_share!r}')
        if self.mix_classes < 1 or self.cached_sizes < 1:
            raise ConfigError('mix_classes and cached_sizes must be >= 1')


@dataclass(frozen=True)
class TerrainResult:
    current: Ground
    future: Ground
    ramp: Ramp
    current_mix: dict[str, float]  # class name -> share of the region, most frequent first
    future_mix: dict[str, float]

    def to_json(self) -> dict:
        """Sedna's result keys (``curr``, ``future``, ``ramp``) plus the class mixes."""
        return {
            'curr': self.current.value,
            'future': self.future.value,
            'ramp': self.ramp.value,
            'current_mix': self.current_mix,
            'future_mix': self.future_mix,
        }


def _pixels(polygon: Polygon, height: int, width: int) -> np.ndarray:
    return np.array(
        [[int(fx * width + 0.5), int(fy * height + 0.5)] for fx, fy in polygon], np.int32
    )


def _fill(height: int, width: int, *polygons: Polygon) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    for p in polygons:
        cv2.fillPoly(mask, [_pixels(p, height, width)], 1)
    return mask


@dataclass(frozen=True)
class _Masks:
    """Flat pixel indices of every region at one image size."""

    current: np.ndarray
    future: np.ndarray
    ramp: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # bottom, upper, union

    @classmethod
    def build(cls, height: int, width: int) -> _Masks:
        regions = np.zeros((height, width), np.uint8)
        # future is drawn after current, so their shared edge belongs to future
        cv2.fillPoly(regions, [_pixels(CURRENT_REGION, height, width)], 1)
        cv2.fillPoly(regions, [_pixels(FUTURE_REGION, height, width)], 2)
        flat = regions.ravel()
        ramp = {}
        for name, (bottom, upper) in RAMP_AREAS.items():
            b, u = _fill(height, width, bottom), _fill(height, width, upper)
            ramp[name] = (np.flatnonzero(b), np.flatnonzero(u), np.flatnonzero(b | u))
        return cls(np.flatnonzero(flat == 1), np.flatnonzero(flat == 2), ramp)


def _share(hits: np.ndarray, idx: np.ndarray) -> float:
    return float(np.count_nonzero(hits[idx])) / idx.size if idx.size else 0.0


class TerrainAnalyzer:
    def __init__(self, config: TerrainConfig | None = None) -> None:
        self.config = config or TerrainConfig()
        self._masks: OrderedDict[tuple[int, int], _Masks] = OrderedDict()

    def _masks_for(self, height: int, width: int) -> _Masks:
        key = (height, width)
        masks = self._masks.get(key)
        if masks is None:
            masks = self._masks[key] = _Masks.build(height, width)
            while len(self._masks) > self.config.cached_sizes:
                self._masks.popitem(last=False)
        self._masks.move_to_end(key)
        return masks

    def analyze(self, labels: np.ndarray) -> TerrainResult:
        """Classify the ground ahead and locate a ramp on an (H, W) uint8 label map."""
        if labels.ndim != 2 or labels.dtype != np.uint8 or labels.size == 0:
            raise ImageConversionError(
                f'expected an (H, W) uint8 label map, got {labels.shape!r} {labels.dtype}'
            )
        masks = self._masks_for(*labels.shape)
        flat = labels.ravel()
        current, current_mix = self._ground(flat, masks.current)
        future, future_mix = self._ground(flat, masks.future)
        ramp = Ramp.NO_RAMP
        if self.config.ramp_detection:
            hits = flat == RAMP_ID
            if hits.any():  # most frames have no ramp pixel: skip the nine masked counts
                ramp = self._ramp(hits, masks)
        return TerrainResult(current, future, ramp, current_mix, future_mix)

    def _ground(self, flat: np.ndarray, idx: np.ndarray) -> tuple[Ground, dict[str, float]]:
        counts = np.bincount(flat[idx], minlength=256)
        total = max(int(idx.size), 1)
        top = np.argsort(-counts, kind='stable')[: self.config.mix_classes]
        mix = {
            _NAMES.get(int(c), str(int(c))): round(float(counts[c]) / total, 4)
            for c in top
            if counts[c]
        }
        if counts[CURB_ID] / total > self.config.curb_share:
            return Ground.CURB, mix
        most = int(np.argmax(counts))
        if not counts[most]:
            return Ground.OTHER, mix  # an image too small for the region to cover a pixel
        return {ROAD_ID: Ground.ROAD, SIDEWALK_ID: Ground.SIDEWALK}.get(most, Ground.OTHER), mix

    def _ramp(self, hits: np.ndarray, masks: _Masks) -> Ramp:
        order = (
            ('small_trapezoid', self.config.small_trapezoid_ratios),
            ('left', self.config.side_ratios),
            ('right', self.config.side_ratios),
        )
        for name, (partial, whole) in order:
            bottom, upper, union = masks.ramp[name]
            if _share(hits, bottom) > partial:
                part = 'bottom'
            elif _share(hits, upper) > partial:
                part = 'upper'
            elif _share(hits, union) > whole:
                part = 'center'
            else:
                continue
            return Ramp.SMALL_TRAPEZOID if name == 'small_trapezoid' else Ramp(f'{part}_{name}')
        return Ramp.NO_RAMP


# ---------------------------------------------------------------------------------------------
# Gait advice


class Gait(str, Enum):
    TROT = 'trot'
    UP_STAIR = 'up-stair'
    STOP = 'stop'


class Motion(str, Enum):
    FORWARD = 'forward'
    TURN_LEFT = 'turn_left'
    BACK_UP_TURN_LEFT = 'back_up_turn_left'
    TURN_RIGHT = 'turn_right'
    BACK_UP_TURN_RIGHT = 'back_up_turn_right'
    HALT = 'halt'


# the robot's reaction to a ramp (then it goes forward)
RAMP_MOTION: dict[Ramp, Motion] = {
    Ramp.SMALL_TRAPEZOID: Motion.FORWARD,
    Ramp.UPPER_LEFT: Motion.TURN_LEFT,
    Ramp.CENTER_LEFT: Motion.TURN_LEFT,
    Ramp.BOTTOM_LEFT: Motion.BACK_UP_TURN_LEFT,
    Ramp.UPPER_RIGHT: Motion.TURN_RIGHT,
    Ramp.CENTER_RIGHT: Motion.TURN_RIGHT,
    Ramp.BOTTOM_RIGHT: Motion.BACK_UP_TURN_RIGHT,
    Ramp.NO_RAMP: Motion.FORWARD,
}


@dataclass(frozen=True)
class GaitConfig:
    max_danger: float = 10.0
    up_stair_above: float = 1.0  # danger above this: up-stair gait
    decay: float = 2.0  # danger falls this many times faster than it rises
    max_step_s: float = 0.5  # longest time step credited at once (after a gap in frames)
    up_stair_hold_s: float = 7.0  # no switch back to trot sooner after switching to up-stair

    def __post_init__(self) -> None:
        if not 0.0 < self.up_stair_above < self.max_danger:
            raise ConfigError(
                f'up_stair_above must be in (0, max_danger), got {self.up_stair_above!r}'
            )
        if self.decay <= 0.0 or self.max_step_s <= 0.0 or self.up_stair_hold_s < 0.0:
            raise ConfigError('decay and max_step_s must be > 0, up_stair_hold_s >= 0')


@dataclass(frozen=True)
class GaitAdvice:
    gait: Gait
    motion: Motion
    danger: float
    reason: str

    def to_json(self) -> dict:
        return {
            'gait': self.gait.value,
            'motion': self.motion.value,
            'danger': round(self.danger, 3),
            'reason': self.reason,
        }


class GaitAdvisor:
    """Turns the terrain stream into a gait and a motion; time in seconds on any clock."""

    def __init__(self, config: GaitConfig | None = None) -> None:
        self.config = config or GaitConfig()
        self.danger = 0.0
        self.gait = Gait.TROT
        self._last_t: float | None = None
        self._up_stair_since: float | None = None

    def update(
        self, t: float, terrain: TerrainResult | None, unseen: bool
    ) -> tuple[GaitAdvice, bool]:
        """:param terrain: this frame's terrain, or None when there is none to act on.
        :param unseen: the frame (or the alarm) says unseen: stop, whatever the terrain.
        :return: the advice and whether the gait changed."""
        cfg = self.config
        dt = 0.0 if self._last_t is None else min(max(t - self._last_t, 0.0), cfg.max_step_s)
        self._last_t = t if self._last_t is None else max(t, self._last_t)
        before = self.gait
        if unseen or terrain is None:
            self.gait = Gait.STOP
            reason = 'unseen scene' if unseen else 'no terrain estimate'
            return GaitAdvice(Gait.STOP, Motion.HALT, self.danger, reason), before != self.gait
        risky = (
            terrain.current == Ground.CURB
            or terrain.future == Ground.CURB
            or terrain.current != terrain.future
        )
        if risky:
            self.danger = min(self.danger + dt, cfg.max_danger)
        else:
            self.danger = max(self.danger - cfg.decay * dt, 0.0)
        if self.danger > cfg.up_stair_above:
            if self.gait != Gait.UP_STAIR:
                self._up_stair_since = t
            self.gait = Gait.UP_STAIR
        elif self.danger == 0.0 and not self._holding(t):
            self.gait = Gait.TROT
        reason = f'current {terrain.current.value}, future {terrain.future.value}'
        if self.gait == Gait.STOP:
            # after an unseen scene, stay stopped until the danger level settles either way
            motion, reason = Motion.HALT, f'{reason}; stopped until the ground is settled'
        else:
            motion = RAMP_MOTION[terrain.ramp]
        advice = GaitAdvice(self.gait, motion, self.danger, reason)
        return advice, before != self.gait

    def _holding(self, t: float) -> bool:
        return (
            self.gait == Gait.UP_STAIR
            and self._up_stair_since is not None
            and t - self._up_stair_since < self.config.up_stair_hold_s
        )
