"""Ray caster: the campus street and its primitives -> RGB, z-depth and labels from one scene.

Every pixel's ray is intersected analytically with the ground (road, raised sidewalk and grass,
curb faces, curb ramps) and with the boxes and ellipsoids of the cells in view; the nearest hit
decides label, depth and material, so the three images always agree. All work is vectorised
numpy over the pixels; primitives are intersected only inside their projected screen rectangle.
No renderer library fits (we need exact per-pixel labels and z-depth without a GPU or a display),
hence this small hand-written one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from robo_lifelong.labels import class_id
from robo_lifelong.sim import materials as mat
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.layout import BOX, CELL, ELLIPSOID, STREET, Cell, Primitives
from robo_lifelong.sim.tasks import Task

SKY = class_id('sky')
_NEAR = 0.05  # metres; near clipping plane
_BATCH_MAX_PIXELS = 1500  # primitives covering fewer screen pixels are intersected in one batch
_BOX_EDGES = np.array(
    [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count('1') == 1]
)
MAX_DEPTH_M = 16.0  # beyond this the simulated depth sensor returns no data (0), like a D435i
TEXELS_PER_M = 50.0
_GROUND = {
    'road': class_id('road'),
    'sidewalk': class_id('sidewalk'),
    'terrain': class_id('terrain'),
    'curb': class_id('curb'),
    'ramp': class_id('ramp'),
}
_COLORS = np.array(mat.COLORS, np.float32)
_PATTERN = np.array(mat.PATTERNS, np.uint8)


@dataclass
class Hits:
    """Per-pixel nearest hit so far; flat arrays of H*W."""

    t: np.ndarray  # ray parameter = z-depth in metres (inf: sky)
    label: np.ndarray  # uint8
    material: np.ndarray  # uint8
    u: np.ndarray  # surface coordinates in metres, for textures and patterns
    v: np.ndarray
    lam: np.ndarray  # cosine between surface normal and sun direction (may be negative)
    up: np.ndarray  # z component of the surface normal

    @staticmethod
    def empty(n: int) -> Hits:
        f = np.zeros(n, np.float32)
        return Hits(
            np.full(n, np.inf, np.float32),
            np.full(n, SKY, np.uint8),
            np.zeros(n, np.uint8),
            f,
            f.copy(),
            f.copy(),
            f.copy(),
        )

    def update(self, idx: np.ndarray, t, label, material, u, v, lam, up) -> None:
        """Write hits at flat indices ``idx`` (callers pass only hits nearer than before)."""
        self.t[idx] = t
        self.label[idx] = label
        self.material[idx] = material
        self.u[idx] = u
        self.v[idx] = v
        self.lam[idx] = lam
        self.up[idx] = up


def sun_direction(task: Task) -> np.ndarray:
    el, az = math.radians(task.sun_elevation_deg), math.radians(task.sun_azimuth_deg)
    return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


class Renderer:
    """Renders frames for one camera; holds the camera-dependent precomputation and textures."""

    def __init__(self, camera: CameraModel, seed: int) -> None:
        self.camera = camera
        self.textures = mat.make_textures(seed)
        rays = camera.rays.reshape(3, -1)
        self.rays = rays
        self.ray_norm = np.linalg.norm(rays, axis=0)
        r2 = rays[0] ** 2 + rays[1] ** 2
        self.vignette = (1.0 - 0.35 * r2 / r2.max()).astype(np.float32)
        self.headlamp = np.exp(-r2 / 0.08).astype(np.float32)
        n = camera.width * camera.height
        pool = np.random.default_rng(seed + 1).standard_normal(4 * n + 4096).astype(np.float32)
        self.noise_pool = pool

    def render(
        self,
        origin: np.ndarray,
        world_from_cam: np.ndarray,
        cells: list[Cell],
        task: Task,
        noise_seed: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> rgb (H,W,3) uint8, depth (H,W) uint16 mm (0 = no return), labels (H,W) uint8."""
        h, w = self.camera.height, self.camera.width
        d = (world_from_cam.astype(np.float32) @ self.rays).astype(np.float32)  # (3, N)
        o = origin.astype(np.float32)
        sun = sun_direction(task)
        hits = Hits.empty(h * w)
        self._ground(hits, o, d, cells, task, sun)
        prims = Primitives.concat([c.primitives for c in cells])
        self._primitives(hits, o, d, prims, world_from_cam, sun)
        rng = np.random.default_rng(noise_seed)
        rgb = self._shade(hits, o, d, cells, task, sun, rng)
        depth = self._depth(hits, rng)
        return rgb.reshape(h, w, 3), depth.reshape(h, w), hits.label.reshape(h, w)

    # --- geometry -------------------------------------------------------------------------------

    def _ground(self, hits: Hits, o, d, cells: list[Cell], task: Task, sun) -> None:
        s = STREET
        # The camera never rolls, so the rays that go down (and can meet the ground) are all
        # the rows below the horizon: a contiguous slice, no gather needed.
        below = np.flatnonzero(d[2] < -1e-6)
        if below.size == 0:
            return
        first = int(below[0])
        dx, dy, dz = d[0, first:], d[1, first:], d[2, first:]
        in_ramp = _ramp_lookup(cells)
        g = np.arange(first, d.shape[1])

        best = np.full(g.size, np.inf, np.float32)
        surface = np.zeros(g.size, np.uint8)

        def consider(t, valid, code):
            better = valid & (t > 0) & (t < best)
            best[better] = t[better]
            surface[better] = code

        # 1 road, 2 raised sidewalk/grass, 3 ramp, 4 curb face, 5 ramp side face
        t = -o[2] / dz
        consider(t, np.abs(o[1] + t * dy) < s.road_half, 1)
        t = (s.curb_height - o[2]) / dz
        x, ay = o[0] + t * dx, np.abs(o[1] + t * dy)
        consider(t, (ay >= s.road_half) & ~((ay < s.road_half + s.ramp_width) & in_ramp(x)), 2)
        slope = s.curb_height / s.ramp_width
        for side in (1.0, -1.0):
            with np.errstate(divide='ignore'):
                t = -(o[2] - slope * (side * o[1] - s.road_half)) / (dz - slope * side * dy)
            sy = side * (o[1] + t * dy)
            ok = (sy >= s.road_half) & (sy < s.road_half + s.ramp_width)
            consider(t, ok & in_ramp(o[0] + t * dx), 3)
            with np.errstate(divide='ignore'):
                t = (side * s.road_half - o[1]) / dy
            z = o[2] + t * dz
            consider(t, (z >= 0) & (z <= s.curb_height) & ~in_ramp(o[0] + t * dx), 4)
        # Ramp side faces are at most curb-high: beyond ~30 m they are under two pixels.
        ends = [
            x
            for c in cells
            if c.ramp
            for x in (c.x0 + s.ramp_start, c.x0 + s.ramp_start + s.ramp_length)
            if abs(x - o[0]) < 30.0
        ]
        for xe in ends:
            with np.errstate(divide='ignore'):
                t = (xe - o[0]) / dx
            ay = np.abs(o[1] + t * dy)
            ramp_z = (ay - s.road_half) * slope
            z = o[2] + t * dz
            inside = (ay >= s.road_half) & (ay < s.road_half + s.ramp_width)
            consider(t, inside & (z >= ramp_z) & (z <= s.curb_height), 5)

        hit = np.flatnonzero(surface)
        g, t, code = g[hit], best[hit], surface[hit]
        x = o[0] + t * d[0, g]
        y = o[1] + t * d[1, g]
        z = o[2] + t * d[2, g]
        ay = np.abs(y)
        label = np.full(g.size, _GROUND['road'], np.uint8)
        material = np.full(g.size, mat.ID['asphalt'], np.uint8)
        lam = np.full(g.size, sun[2], np.float32)
        up = np.ones(g.size, np.float32)
        u, v = x, y

        road = code == 1
        crossing = road & in_ramp(x) & (np.mod(y, 0.9) < 0.45)
        center = road & (ay < 0.07) & (np.mod(x, 6.0) < 3.0)
        material[crossing | center] = mat.ID['marking']

        raised = code == 2
        sidewalk = raised & (ay < s.sidewalk_outer)
        label[sidewalk] = _GROUND['sidewalk']
        material[sidewalk] = mat.ID['brick'] if task.brick_sidewalk else mat.ID['concrete']
        curb_top = raised & (ay < s.road_half + 0.15)
        label[curb_top] = _GROUND['curb']
        material[curb_top] = mat.ID['curb']
        grass = raised & ~sidewalk
        label[grass] = _GROUND['terrain']
        material[grass] = mat.ID['grass']

        ramp = code == 3
        label[ramp] = _GROUND['ramp']
        material[ramp] = np.where(ay[ramp] < s.road_half + 0.5, mat.ID['tactile'], mat.ID['ramp'])
        norm = math.sqrt(1 + slope * slope)
        lam[ramp] = (sun[2] - slope * np.sign(y[ramp]) * sun[1]) / norm
        up[ramp] = 1 / norm

        faces = code >= 4
        label[faces] = _GROUND['curb']
        material[faces] = mat.ID['curb']
        up[faces] = 0.0
        curb = code == 4
        lam[curb] = -np.sign(y[curb]) * sun[1]
        side_face = code == 5
        lam[side_face] = -np.sign(d[0, g[side_face]]) * sun[0]
        v = np.where(faces, z, v)
        hits.update(g, t, label, material, u, v, lam, up)

    def _primitives(self, hits: Hits, o, d, prims: Primitives, world_from_cam, sun) -> None:
        """Large primitives (buildings, near objects) are intersected one by one over their
        screen rectangle; the many small ones in a single batch, because for them the Python
        overhead per primitive would dominate."""
        w = self.camera.width
        large, small = [], []
        for i, (r0, r1, c0, c1) in self._screen_boxes(o, prims, world_from_cam):
            block = (np.arange(r0, r1)[:, None] * w + np.arange(c0, c1)[None, :]).reshape(-1)
            if block.size > _BATCH_MAX_PIXELS:
                large.append((i, (r0, r1, c0, c1), block))
            else:
                small.append((i, block))
        d2 = d.reshape(3, self.camera.height, w)
        for i, (r0, r1, c0, c1), block in large:
            intersect = _box_hits if prims.kind[i] == BOX else _ellipsoid_hits
            rays = d2[:, r0:r1, c0:c1].reshape(3, -1)  # a strided copy: faster than a gather
            result = intersect(o, rays, prims.lo[i], prims.hi[i], sun)
            if result is None:
                continue
            sel, t, u, v, lam, up = result
            nearer = t < hits.t[block[sel]]
            k = block[sel[nearer]]
            hits.update(
                k,
                t[nearer],
                prims.label[i],
                prims.material[i],
                u[nearer],
                v[nearer],
                lam[nearer],
                up[nearer],
            )
        if small:
            pixel = np.concatenate([block for _, block in small])
            prim = np.repeat([i for i, _ in small], [block.size for _, block in small])
            self._intersect(hits, o, d, prims, pixel, prim, sun)

    @staticmethod
    def _intersect(hits: Hits, o, d, prims: Primitives, pixel, prim, sun) -> None:
        """Intersect (pixel, primitive) pairs and keep the nearest hit per pixel."""
        candidates = []
        for kind, intersect in ((BOX, _box_hits), (ELLIPSOID, _ellipsoid_hits)):
            part = np.flatnonzero(prims.kind[prim] == kind)
            if part.size == 0:
                continue
            pix, pr = pixel[part], prim[part]
            result = intersect(o, d[:, pix], prims.lo[pr].T, prims.hi[pr].T, sun)
            if result is not None:
                sel, *attrs = result
                candidates.append((pix[sel], pr[sel], *attrs))
        if not candidates:
            return
        pix, pr, t, u, v, lam, up = (np.concatenate(c) for c in zip(*candidates, strict=True))
        nearer = t < hits.t[pix]
        pix, pr, t, u, v, lam, up = (a[nearer] for a in (pix, pr, t, u, v, lam, up))
        order = np.lexsort((t, pix))  # per pixel, nearest first
        _, first = np.unique(pix[order], return_index=True)
        k = order[first]
        hits.update(
            pix[k], t[k], prims.label[pr[k]], prims.material[pr[k]], u[k], v[k], lam[k], up[k]
        )

    def _screen_boxes(self, o, prims: Primitives, world_from_cam):
        """Yield (index, (row0, row1, col0, col1)) of the primitives in view.
        Boxes crossing the near plane are clipped to it exactly."""
        cam = self.camera
        if prims.kind.size == 0:
            return
        corners = np.stack(
            [np.where(np.array(bits, bool), prims.hi, prims.lo) for bits in np.ndindex(2, 2, 2)],
            axis=1,
        )  # (N, 8, 3)
        pc = (corners - o) @ world_from_cam  # camera frame: x right, y down, z forward
        z = pc[..., 2]
        dist = np.linalg.norm(np.clip(o, prims.lo, prims.hi) - o, axis=1)
        visible = (z.max(axis=1) > _NEAR) & (dist > 1.0) & (dist < 90.0)
        in_front = visible & (z.min(axis=1) > _NEAR)
        with np.errstate(divide='ignore', invalid='ignore'):
            u = cam.fx * pc[..., 0] / z + cam.cx
            v = cam.fy * pc[..., 1] / z + cam.cy
        rect = np.stack([v.min(axis=1), v.max(axis=1), u.min(axis=1), u.max(axis=1)], axis=1)
        for i in np.flatnonzero(visible & ~in_front):
            points = _clip_to_near_plane(pc[i])
            pu = cam.fx * points[:, 0] / points[:, 2] + cam.cx
            pv = cam.fy * points[:, 1] / points[:, 2] + cam.cy
            rect[i] = (pv.min(), pv.max(), pu.min(), pu.max())
        r0 = np.clip(np.floor(rect[:, 0]), 0, cam.height).astype(np.int64)
        r1 = np.clip(np.ceil(rect[:, 1]) + 1, 0, cam.height).astype(np.int64)
        c0 = np.clip(np.floor(rect[:, 2]), 0, cam.width).astype(np.int64)
        c1 = np.clip(np.ceil(rect[:, 3]) + 1, 0, cam.width).astype(np.int64)
        for i in np.flatnonzero(visible & (r0 < r1) & (c0 < c1)):
            yield i, (r0[i], r1[i], c0[i], c1[i])

    # --- appearance -----------------------------------------------------------------------------

    def _shade(self, hits: Hits, o, d, cells, task: Task, sun, rng) -> np.ndarray:
        solid = np.isfinite(hits.t)
        t = np.where(solid, hits.t, 0.0)
        m = hits.material
        texel = self.textures[_texel_index(m, hits.u, hits.v, TEXELS_PER_M)]
        pattern, lit = _pattern(hits, _PATTERN[m], task.night)
        color = _COLORS[m] * (texel * pattern)[:, None]

        ground = np.flatnonzero(hits.up > 0.5)
        tg = t[ground]
        gx, gy, gz = (o[i] + tg * d[i, ground] for i in range(3))
        shadow = np.ones_like(t)
        if task.sun > 0.3:
            shadow[ground[_in_building_shadow(gx, gy, gz, cells, sun)]] = 0.0
        if task.dappled_shade > 0:
            thr = 1.0 + 0.45 * NormalDist().inv_cdf(1.0 - task.dappled_shade)
            foliage = np.full(ground.size, mat.ID['foliage'], np.uint8)
            dap = self.textures[_texel_index(foliage, gx, gy, 8.0)]
            shadow[ground[dap > thr]] *= 0.25
        light = task.ambient + task.sun * np.clip(hits.lam, 0, None) * shadow
        light *= 0.75 + 0.25 * np.clip(hits.up, 0, 1)  # sky light comes from above
        if task.night:
            px, py, pz = (o[i] + t * d[i] for i in range(3))
            light += _lamp_light(px, py, pz) + 1.6 * self.headlamp / (1 + (t / 3.0) ** 2)
        color *= light[:, None] * np.array(task.tint, np.float32)
        if lit is not None:
            color[lit] += np.array([0.75, 0.6, 0.34], np.float32)
        if task.snow > 0:
            snow_mat = np.full(m.size, mat.ID['snow'], np.uint8)
            sn = self.textures[_texel_index(snow_mat, hits.u, hits.v, TEXELS_PER_M)]
            cover = task.snow * np.clip(0.55 + 6.0 * (sn - 1.0), 0, 1) * np.clip(hits.up, 0, 1)
            snow = _COLORS[mat.ID['snow']] * (0.2 + 0.8 * light)[:, None]
            color += (snow - color) * cover[:, None]
        sky = np.flatnonzero(~solid)
        color[sky] = _sky(d[:, sky], self.ray_norm[sky], task)
        if task.fog > 0:
            keep = np.where(solid, np.exp(-task.fog * t * self.ray_norm), 0.0)[:, None]
            color = color * keep + np.array(task.fog_color, np.float32) * (1 - keep)
        color *= (task.exposure * self.vignette)[:, None]
        start = int(rng.integers(0, 4096))
        color += task.noise * self.noise_pool[start : start + color.size].reshape(color.shape)
        return (np.clip(color, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def _depth(self, hits: Hits, rng) -> np.ndarray:
        z = hits.t
        valid = np.isfinite(z) & (z < MAX_DEPTH_M)
        z = np.where(valid, z, 0.0)
        # Stereo depth error grows with the square of the distance; a few pixels drop out.
        start = int(rng.integers(0, 4096))
        noise = self.noise_pool[start + 7 : start + 7 + z.size]
        z = z + 0.004 * z * z * noise
        dropout = self.noise_pool[start + 11 : start + 11 + z.size] > 2.3
        mm = np.where(valid & ~dropout, z * 1000.0, 0.0)
        return np.clip(mm, 0, 65535).astype(np.uint16)


def _box_hits(o, d, lo, hi, sun):
    """Slab test of rays ``d`` (3, n) from ``o`` against boxes ``lo``..``hi`` ((3,) or (3, n))
    -> (indices of hits, t, u, v, cos to sun, normal z)."""
    lo, hi = lo.reshape(3, -1), hi.reshape(3, -1)
    with np.errstate(divide='ignore', invalid='ignore'):
        inv = 1.0 / d
        ta = (lo - o[:, None]) * inv
        tb = (hi - o[:, None]) * inv
    near = np.minimum(ta, tb)
    far = np.maximum(ta, tb)
    # Row-wise maximum/minimum: much faster than reductions and argmax along axis 0.
    tmin = np.maximum(np.maximum(near[0], near[1]), near[2])
    tmax = np.minimum(np.minimum(far[0], far[1]), far[2])
    sel = np.flatnonzero((tmax >= tmin) & (tmin > 0))
    if sel.size == 0:
        return None
    t = tmin[sel]
    x_face = near[0, sel] == t  # the face the ray enters through
    z_face = ~x_face & (near[2, sel] == t)
    y_face = ~x_face & ~z_face
    dx, dy, dz = d[0, sel], d[1, sel], d[2, sel]
    sign = -np.sign(np.where(x_face, dx, np.where(y_face, dy, dz)))  # outward normal
    lam = sign * np.where(x_face, sun[0], np.where(y_face, sun[1], sun[2]))
    up = np.where(z_face, sign, 0.0)
    px, py, pz = o[0] + t * dx, o[1] + t * dy, o[2] + t * dz
    return sel, t, np.where(x_face, py, px), np.where(z_face, py, pz), lam, up


def _ellipsoid_hits(o, d, lo, hi, sun):
    """Rays ``d`` (3, n) against the ellipsoids inscribed in boxes ``lo``..``hi``."""
    c = ((lo + hi) / 2).reshape(3, -1)
    a = ((hi - lo) / 2).reshape(3, -1)
    oc = (o[:, None] - c) / a
    dd = d / a
    qa = (dd * dd).sum(axis=0)
    qb = 2 * (oc * dd).sum(axis=0)
    qc = (oc * oc).sum(axis=0) - 1.0
    disc = qb * qb - 4 * qa * qc
    sel = np.flatnonzero(disc > 0)
    if sel.size == 0:
        return None
    t = (-qb[sel] - np.sqrt(disc[sel])) / (2 * qa[sel])
    ok = t > 0
    sel, t = sel[ok], t[ok]
    p = o[:, None] + t * d[:, sel]
    cs, as_ = (c[:, sel], a[:, sel]) if c.shape[1] > 1 else (c, a)
    n = (p - cs) / (as_ * as_)
    n /= np.linalg.norm(n, axis=0)
    lam = n.T @ sun
    return sel, t, p[0] + p[1], p[2], lam, n[2]


def _texel_index(material: np.ndarray, u: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    """Flat atlas index of surface point (u, v) metres on each pixel's material texture."""
    size = mat.TEXTURE_SIZE  # a power of two, so & wraps negative coordinates correctly
    ti = (u * scale).astype(np.int32) & (size - 1)
    tj = (v * scale).astype(np.int32) & (size - 1)
    return (material.astype(np.int32) * size + tj) * size + ti


def _pattern(hits: Hits, pattern: np.ndarray, night: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Brightness factor of the tile, brick, window and stripe patterns (1 elsewhere), and the
    flat indices of lit windows at night. Each pattern is evaluated on its own pixels only."""
    f = np.ones(hits.u.size, np.float32)
    lit = None
    for kind in np.flatnonzero(np.bincount(pattern, minlength=len(mat.Pattern))):
        if kind == mat.Pattern.PLAIN:
            continue
        idx = np.flatnonzero(pattern == kind)
        u, v = hits.u[idx], hits.v[idx]
        if kind == mat.Pattern.TILES:
            mark = (np.mod(u, 0.6) < 0.03) | (np.mod(v, 0.6) < 0.03)
            value = 0.72
        elif kind == mat.Pattern.BRICKS:
            row = np.floor(v / 0.1)
            mark = (np.mod(v, 0.1) < 0.012) | (np.mod(u + 0.11 * row, 0.22) < 0.015)
            value = 0.65
        elif kind == mat.Pattern.WINDOWS:
            fu, fv = np.mod(u, 3.0), np.mod(v, 3.3)
            mark = (fu > 0.8) & (fu < 2.2) & (fv > 1.0) & (fv < 2.6)
            value = 0.3
            if night:  # a pseudo-random 40 % of the windows are lit
                cell = np.floor(u / 3.0) * 7.0 + np.floor(v / 3.3) * 13.0
                lit = idx[mark & (np.mod(np.sin(cell) * 43758.5, 1.0) < 0.4)]
        elif kind == mat.Pattern.STRIPES:
            mark = np.mod(u + v, 0.5) < 0.25
            value = 3.0  # red -> near white on barriers, lighter slats on fences
        else:  # CONE: a white band
            fv = np.mod(v, 0.7)
            mark = (fv > 0.3) & (fv < 0.42)
            value = 2.5
        f[idx[mark]] = value
    return f, lit


def _ramp_lookup(cells: list[Cell]):
    """in_ramp(x) for world x in the given cells, via a 5 cm table (cheaper than arithmetic)."""
    s = STREET
    x0, res = cells[0].x0, 0.05
    xs = x0 + res * np.arange(int(len(cells) * CELL / res) + 1)
    local = xs - np.floor(xs / CELL) * CELL
    flags = np.array([c.ramp for c in cells] + [False])
    cell = np.minimum(((xs - x0) // CELL).astype(np.int64), len(cells))
    table = flags[cell] & (local >= s.ramp_start) & (local < s.ramp_start + s.ramp_length)
    table[-1] = False  # everything outside the cells maps here

    def in_ramp(x: np.ndarray) -> np.ndarray:
        with np.errstate(invalid='ignore'):
            i = ((x - x0) * (1.0 / res)).astype(np.int64)
        i[(i < 0) | (i >= table.size)] = table.size - 1
        return table[i]

    return in_ramp


def _lamp_light(px, py, pz) -> np.ndarray:
    """Street lamps: one per cell and side, 4.5 m high, 2 m into each cell."""
    lx = np.floor((px - 2.0) / CELL + 0.5) * CELL + 2.0
    ly = STREET.sidewalk_outer - 0.3
    light = np.zeros_like(px)
    for side in (1.0, -1.0):
        d2 = (px - lx) ** 2 + (py - side * ly) ** 2 + (pz - 4.5) ** 2
        light += 14.0 / (1.0 + d2)
    return light


def _in_building_shadow(px, py, pz, cells: list[Cell], sun) -> np.ndarray:
    """True where the sun ray from a ground point hits a building on the sun's side."""
    side = 0 if sun[1] > 0 else 1
    y_front = STREET.building_front * (1 if side == 0 else -1)
    heights = np.concatenate([c.building_height[side] for c in cells])
    x0 = cells[0].x0
    with np.errstate(divide='ignore'):
        lam = (y_front - py) / sun[1]
    bx = np.clip((px + lam * sun[0] - x0).astype(np.int64), 0, heights.size - 1)
    return (lam > 0) & (pz + lam * sun[2] < heights[bx])


def _sky(d, ray_norm, task: Task) -> np.ndarray:
    elevation = np.clip(d[2] / ray_norm * 3.0, 0.0, 1.0)[:, None]
    top, horizon = np.array(task.sky_top, np.float32), np.array(task.sky_horizon, np.float32)
    return horizon * (1 - elevation) + top * elevation


def _clip_to_near_plane(points: np.ndarray) -> np.ndarray:
    """Corners in front of the near plane plus the points where box edges cross it."""
    z = points[:, 2]
    a, b = points[_BOX_EDGES[:, 0]], points[_BOX_EDGES[:, 1]]
    za, zb = z[_BOX_EDGES[:, 0]], z[_BOX_EDGES[:, 1]]
    crossing = (za - _NEAR) * (zb - _NEAR) < 0
    f = ((_NEAR - za[crossing]) / (zb[crossing] - za[crossing]))[:, None]
    cut = a[crossing] + f * (b[crossing] - a[crossing])
    return np.concatenate([points[z > _NEAR], cut])
