"""Surface materials: base colour, texture and pattern of everything the renderer draws.

Labels say what a surface is; materials say how it looks (a lane marking is still road).
Object colour variants (cars, clothes, facades) are separate materials so that a pixel needs only
one material id.
"""

from __future__ import annotations

import enum

import cv2
import numpy as np


class Pattern(enum.IntEnum):
    PLAIN = 0
    TILES = 1  # sidewalk slabs
    BRICKS = 2  # running-bond bricks
    WINDOWS = 3  # facade with a window grid
    STRIPES = 4  # red/white barrier stripes
    CONE = 5  # orange cone with a white band


# name, RGB base colour (0..1), pattern, texture contrast
_BASE: tuple[tuple[str, tuple[float, float, float], Pattern, float], ...] = (
    ('asphalt', (0.33, 0.33, 0.35), Pattern.PLAIN, 0.18),
    ('marking', (0.88, 0.88, 0.85), Pattern.PLAIN, 0.08),
    ('concrete', (0.63, 0.61, 0.58), Pattern.TILES, 0.12),
    ('brick', (0.58, 0.32, 0.24), Pattern.BRICKS, 0.15),
    ('curb', (0.74, 0.74, 0.72), Pattern.PLAIN, 0.1),
    ('grass', (0.28, 0.48, 0.18), Pattern.PLAIN, 0.35),
    ('ramp', (0.67, 0.65, 0.61), Pattern.PLAIN, 0.1),
    ('tactile', (0.86, 0.72, 0.18), Pattern.TILES, 0.1),
    ('bark', (0.3, 0.22, 0.15), Pattern.PLAIN, 0.3),
    ('foliage', (0.18, 0.36, 0.13), Pattern.PLAIN, 0.45),
    ('metal', (0.45, 0.46, 0.48), Pattern.PLAIN, 0.05),
    ('sign', (0.1, 0.3, 0.72), Pattern.PLAIN, 0.05),
    ('bicycle', (0.14, 0.14, 0.15), Pattern.PLAIN, 0.1),
    ('wall', (0.56, 0.53, 0.5), Pattern.BRICKS, 0.1),
    ('fence', (0.42, 0.36, 0.3), Pattern.STRIPES, 0.1),
    ('barrier', (0.85, 0.12, 0.1), Pattern.STRIPES, 0.05),
    ('cone', (0.98, 0.42, 0.05), Pattern.CONE, 0.05),
    ('stairs', (0.6, 0.59, 0.57), Pattern.PLAIN, 0.12),
    ('glass', (0.16, 0.19, 0.23), Pattern.PLAIN, 0.05),
    ('snow', (0.94, 0.95, 0.97), Pattern.PLAIN, 0.06),
    ('skin', (0.76, 0.57, 0.45), Pattern.PLAIN, 0.05),
)
_VARIANTS: dict[str, tuple[tuple[float, float, float], ...]] = {
    'car': (
        (0.7, 0.1, 0.1),
        (0.1, 0.2, 0.55),
        (0.85, 0.85, 0.85),
        (0.12, 0.12, 0.12),
        (0.5, 0.5, 0.52),
        (0.15, 0.35, 0.2),
    ),
    'clothes': (
        (0.15, 0.15, 0.35),
        (0.55, 0.1, 0.12),
        (0.2, 0.2, 0.2),
        (0.75, 0.7, 0.55),
        (0.2, 0.45, 0.3),
        (0.8, 0.5, 0.1),
    ),
    'facade': (
        (0.62, 0.56, 0.5),
        (0.72, 0.68, 0.6),
        (0.55, 0.35, 0.28),
        (0.5, 0.52, 0.55),
        (0.8, 0.78, 0.72),
        (0.45, 0.4, 0.36),
    ),
}

NAMES: list[str] = [b[0] for b in _BASE]
COLORS: list[tuple[float, float, float]] = [b[1] for b in _BASE]
PATTERNS: list[Pattern] = [b[2] for b in _BASE]
CONTRAST: list[float] = [b[3] for b in _BASE]
for _family, _colors in _VARIANTS.items():
    for _i, _c in enumerate(_colors):
        NAMES.append(f'{_family}{_i}')
        COLORS.append(_c)
        PATTERNS.append(Pattern.WINDOWS if _family == 'facade' else Pattern.PLAIN)
        CONTRAST.append(0.1)

ID: dict[str, int] = {n: i for i, n in enumerate(NAMES)}
COUNT = len(NAMES)
TEXTURE_SIZE = 128  # texels per side; textures tile every TEXTURE_SIZE * texel metres


def variant(family: str, k: int) -> int:
    """Material id of colour variant ``k`` (wrapped) of a family such as 'car'."""
    return ID[f'{family}{k % len(_VARIANTS[family])}']


def make_textures(seed: int) -> np.ndarray:
    """(COUNT * S * S,) float32 flat atlas of tileable multi-octave noise, mean 1, per material."""
    rng = np.random.default_rng(seed)
    s = TEXTURE_SIZE
    atlas = np.empty((COUNT, s, s), np.float32)
    for m in range(COUNT):
        acc = np.zeros((s, s), np.float32)
        for octave, weight in ((4, 0.5), (16, 0.3), (64, 0.2)):
            coarse = rng.standard_normal((octave, octave)).astype(np.float32)
            # Wrapping the border before resizing keeps the texture tileable.
            wrapped = np.pad(coarse, 1, mode='wrap')
            big = cv2.resize(wrapped, (s + 2 * s // octave, s + 2 * s // octave))
            off = s // octave
            acc += weight * big[off : off + s, off : off + s]
        acc /= acc.std() + 1e-6
        atlas[m] = 1.0 + CONTRAST[m] * np.clip(acc, -2.5, 2.5)
    return atlas.reshape(-1)
