"""Procedural campus street: a straight street along world +x, generated in 20 m cells.

World frame: x along the street, y to the left, z up; the road centre line is y = 0. Across the
street (both sides, mirrored): road | curb | sidewalk | grass | buildings. Each cell may hold a
curb-ramp pair with a crosswalk, stairs up to a building, and the objects of the task.
A cell depends only on (world seed, cell index, task), so any stretch can be regenerated exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from robo_lifelong.labels import class_id
from robo_lifelong.sim import materials as mat
from robo_lifelong.sim.tasks import Task

CELL = 20.0  # metres of street per cell
BOX, ELLIPSOID = 0, 1


@dataclass(frozen=True)
class Street:
    road_half: float = 3.2
    curb_height: float = 0.14
    sidewalk: float = 2.6
    grass: float = 3.0
    ramp_width: float = 1.4  # how far the curb ramp reaches into the sidewalk
    ramp_start: float = 8.0  # ramp x-range within a cell
    ramp_length: float = 2.6

    @property
    def sidewalk_outer(self) -> float:
        return self.road_half + self.sidewalk

    @property
    def building_front(self) -> float:
        return self.road_half + self.sidewalk + self.grass


STREET = Street()


@dataclass(frozen=True)
class Primitives:
    """N solid primitives, axis-aligned boxes or ellipsoids inscribed in their box."""

    kind: np.ndarray  # (N,) uint8, BOX or ELLIPSOID
    lo: np.ndarray  # (N, 3) float32 box minimum corner
    hi: np.ndarray  # (N, 3) float32 box maximum corner
    label: np.ndarray  # (N,) uint8 label-map id
    material: np.ndarray  # (N,) uint8 material id

    @staticmethod
    def from_rows(rows: list[tuple]) -> Primitives:
        if not rows:
            z = np.zeros((0, 3), np.float32)
            e = np.zeros(0, np.uint8)
            return Primitives(e, z, z, e, e)
        kind, lo, hi, label, material = zip(*rows, strict=True)
        return Primitives(
            np.array(kind, np.uint8),
            np.array(lo, np.float32),
            np.array(hi, np.float32),
            np.array(label, np.uint8),
            np.array(material, np.uint8),
        )

    @staticmethod
    def concat(parts: list[Primitives]) -> Primitives:
        return Primitives(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in Primitives.__annotations__)
        )


@dataclass(frozen=True)
class Cell:
    index: int
    ramp: bool
    building_height: np.ndarray  # (2, CELL) metres per 1 m of x; side 0 is +y, side 1 is -y
    primitives: Primitives

    @property
    def x0(self) -> float:
        return self.index * CELL


_L = {n: class_id(n) for n in ('building', 'wall', 'fence', 'pole', 'traffic_sign', 'vegetation')}
_L.update({n: class_id(n) for n in ('person', 'car', 'bicycle', 'stairs', 'barrier')})
_L['cone'] = class_id('traffic_cone')
_M = mat.ID


class _CellBuilder:
    """Places everything of one cell; `rows` collects primitives as (kind, lo, hi, label, mat)."""

    def __init__(self, index: int, task: Task, rng: np.random.Generator) -> None:
        self.x0 = index * CELL
        self.task = task
        self.rng = rng
        self.rows: list[tuple] = []
        self.heights = np.zeros((2, int(CELL)), np.float32)
        self.ramp = bool(rng.random() < task.ramp_rate)

    def box(self, lo, hi, label: str, material: int, kind: int = BOX) -> None:
        self.rows.append((kind, lo, hi, _L[label], material))

    def side_y(self, side: int, offset: float) -> float:
        """y of a point `offset` metres from the road centre on `side` (0: +y, 1: -y)."""
        return offset if side == 0 else -offset

    def span(self, side: int, a: float, b: float) -> tuple[float, float]:
        ya, yb = self.side_y(side, a), self.side_y(side, b)
        return min(ya, yb), max(ya, yb)

    def build(self) -> Cell:
        for side in (0, 1):
            self.buildings(side)
            self.lamp_and_sign(side)
            self.trees(side)
            self.parked(side)
            self.pedestrians(side)
            if self.rng.random() < self.task.stairs_rate:
                self.stairs(side)
        if self.task.construction:
            self.construction()
        return Cell(
            int(round(self.x0 / CELL)),
            self.ramp,
            self.heights,
            Primitives.from_rows(self.rows),
        )

    def buildings(self, side: int) -> None:
        rng, s = self.rng, STREET
        x = self.x0 + rng.uniform(0.0, 3.0)
        while x < self.x0 + CELL - 3.0:
            length = min(rng.uniform(6.0, 16.0), self.x0 + CELL - x)
            height = rng.uniform(5.0, 18.0)
            y0, y1 = self.span(side, s.building_front, s.building_front + 12.0)
            facade = mat.variant('facade', int(rng.integers(0, 6)))
            self.box((x, y0, 0.0), (x + length, y1, height), 'building', facade)
            i0, i1 = int(x - self.x0), int(np.ceil(x + length - self.x0))
            self.heights[side, i0:i1] = height
            x += length + rng.uniform(2.0, 8.0)
        if rng.random() < 0.4:  # low wall or fence along the grass
            y = s.building_front - 0.4
            y0, y1 = self.span(side, y, y + 0.25)
            x = self.x0 + rng.uniform(0, 8)
            if rng.random() < 0.5:
                self.box((x, y0, 0.0), (x + 8.0, y1, 0.9), 'wall', _M['wall'])
            else:
                self.box((x, y0, 0.0), (x + 8.0, y1, 1.3), 'fence', _M['fence'])

    def lamp_and_sign(self, side: int) -> None:
        s = STREET
        y = self.side_y(side, s.sidewalk_outer - 0.3)
        x = self.x0 + 2.0
        self.box((x - 0.07, y - 0.07, 0.0), (x + 0.07, y + 0.07, 4.5), 'pole', _M['metal'])
        if self.rng.random() < 0.3:
            x = self.x0 + self.rng.uniform(5, 15)
            y = self.side_y(side, s.road_half + 0.35)
            self.box((x - 0.04, y - 0.04, 0.0), (x + 0.04, y + 0.04, 2.4), 'pole', _M['metal'])
            self.box(
                (x - 0.03, y - 0.35, 2.0), (x + 0.03, y + 0.35, 2.6), 'traffic_sign', _M['sign']
            )

    def trees(self, side: int) -> None:
        s, rng = STREET, self.rng
        for _ in range(int(rng.integers(0, 4))):
            x = self.x0 + rng.uniform(0, CELL)
            y = self.side_y(side, s.sidewalk_outer + rng.uniform(0.8, s.grass - 0.8))
            h = rng.uniform(2.0, 3.5)
            self.box(
                (x - 0.15, y - 0.15, 0.0), (x + 0.15, y + 0.15, h + 0.5), 'vegetation', _M['bark']
            )
            r = rng.uniform(1.0, 2.0)
            lo, hi = (x - r, y - r, h), (x + r, y + r, h + 2.2 * r)
            self.box(lo, hi, 'vegetation', _M['foliage'], kind=ELLIPSOID)
        if rng.random() < 0.3:  # hedge
            x = self.x0 + rng.uniform(0, 10)
            y0, y1 = self.span(side, s.sidewalk_outer + 0.3, s.sidewalk_outer + 1.1)
            self.box((x, y0, 0.0), (x + rng.uniform(3, 9), y1, 0.9), 'vegetation', _M['foliage'])

    def parked(self, side: int) -> None:
        s, rng = STREET, self.rng
        ramp_lo = self.x0 + s.ramp_start - 1.0
        ramp_hi = ramp_lo + s.ramp_length + 2.0
        for _ in range(int(rng.integers(0, 2))):
            x = self.x0 + rng.uniform(0, CELL - 4.5)
            if self.ramp and x + 4.5 > ramp_lo and x < ramp_hi:
                continue
            y0, y1 = self.span(side, s.road_half - 2.1, s.road_half - 0.3)
            color = mat.variant('car', int(rng.integers(0, 6)))
            self.box((x, y0, 0.25), (x + 4.3, y1, 1.05), 'car', color)
            c0, c1 = self.span(side, s.road_half - 2.0, s.road_half - 0.4)
            self.box((x + 1.1, c0, 1.05), (x + 3.3, c1, 1.55), 'car', _M['glass'])
            for wx in (x + 0.8, x + 3.5):  # wheels
                self.box(
                    (wx - 0.33, y0 + 0.05, 0.0), (wx + 0.33, y1 - 0.05, 0.5), 'car', _M['bicycle']
                )
        for _ in range(int(rng.poisson(0.8 * self.task.crowd))):
            x = self.x0 + rng.uniform(0, CELL - 1.8)
            y0, y1 = self.span(side, s.sidewalk_outer - 0.65, s.sidewalk_outer - 0.55)
            self.box((x, y0, 0.0), (x + 1.75, y1, 1.0), 'bicycle', _M['bicycle'])

    def pedestrians(self, side: int) -> None:
        s, rng = STREET, self.rng
        for _ in range(int(rng.poisson(1.2 * self.task.crowd))):
            x = self.x0 + rng.uniform(0, CELL)
            y = self.side_y(side, rng.uniform(s.road_half + 0.4, s.sidewalk_outer - 0.2))
            tall = rng.uniform(1.55, 1.9)
            clothes = mat.variant('clothes', int(rng.integers(0, 6)))
            self.box(
                (x - 0.2, y - 0.26, 0.0),
                (x + 0.2, y + 0.26, tall * 0.9),
                'person',
                clothes,
                ELLIPSOID,
            )
            self.box(
                (x - 0.12, y - 0.12, tall * 0.84),
                (x + 0.12, y + 0.12, tall),
                'person',
                _M['skin'],
                ELLIPSOID,
            )

    def stairs(self, side: int) -> None:
        """A flight of steps from the sidewalk up to a building entrance, across the grass."""
        s, rng = STREET, self.rng
        x = self.x0 + rng.uniform(11.0, 16.0)
        width, rise, run = rng.uniform(2.0, 3.5), 0.16, 0.35
        steps = int((s.grass - 0.2) / run)
        for k in range(steps):
            y0, y1 = self.span(side, s.sidewalk_outer + 0.1 + k * run, s.building_front + 0.5)
            z = s.curb_height + (k + 1) * rise
            self.box((x, y0, 0.0), (x + width, y1, z), 'stairs', _M['stairs'])

    def construction(self) -> None:
        """A fenced-off work area on the sidewalk of each side in every cell, with a cone taper
        into the road lane beside it: large and frequent enough that the new classes cover real
        image area wherever a route meets the construction task."""
        for side in (0, 1):
            self.work_area(side, self.x0 + self.rng.uniform(1.0, 9.0))

    def work_area(self, side: int, x: float) -> None:
        s, rng = STREET, self.rng
        length = rng.uniform(5.0, 9.0)
        inner, outer = s.road_half + 0.15, s.sidewalk_outer - 0.1
        for bx in (x, x + length):  # barrier lines across the sidewalk at both ends
            y0, y1 = self.span(side, inner, outer)
            self.box((bx, y0, 0.0), (bx + 0.2, y1, 1.1), 'barrier', _M['barrier'])
        y0, y1 = self.span(side, inner, inner + 0.2)  # and along the curb between them
        self.box((x, y0, 0.0), (x + length, y1, 1.1), 'barrier', _M['barrier'])
        for k in range(int(rng.integers(5, 9))):
            cx = x - 1.2 - 1.3 * k
            self.cone(cx, self.side_y(side, s.road_half - 0.4 - 0.22 * k), 0.0)
        for k in range(int(length // 1.5)):  # cones inside the work area
            y = rng.uniform(inner + 0.5, outer - 0.4)
            self.cone(x + 0.8 + 1.5 * k, self.side_y(side, y), s.curb_height)
        if rng.random() < 0.5:  # a barrier closing part of the road
            y0, y1 = self.span(side, 0.3, s.road_half - 0.2)
            bx = x + rng.uniform(1.0, length - 1.0)
            self.box((bx, y0, 0.0), (bx + 0.25, y1, 1.1), 'barrier', _M['barrier'])

    def cone(self, x: float, y: float, z: float) -> None:
        # Three stacked, shrinking boxes read as a cone at camera resolution.
        for r, z0, h in ((0.28, 0.0, 0.06), (0.19, 0.06, 0.36), (0.1, 0.42, 0.36)):
            self.box((x - r, y - r, z + z0), (x + r, y + r, z + z0 + h), 'cone', _M['cone'])


@lru_cache(maxsize=512)
def _cell(seed: int, index: int, task: Task) -> Cell:
    rng = np.random.default_rng([seed, index & 0xFFFFFFFF, sum(map(ord, task.name))])
    return _CellBuilder(index, task, rng).build()


def cells(seed: int, task: Task, x_min: float, x_max: float) -> list[Cell]:
    """The cells covering world x in [x_min, x_max]."""
    return [
        _cell(seed, k, task) for k in range(int(np.floor(x_min / CELL)), int(x_max // CELL) + 1)
    ]
