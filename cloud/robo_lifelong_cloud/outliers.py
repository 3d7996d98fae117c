"""Outlier exposure: made-up things pasted into known-task training frames.

The segmentation net only sees known classes, so nothing teaches it to be unsure on something
new; its max logit on a barrier can be as high as on a wall. Outlier exposure (Hendrycks et al.,
ICLR 2019, here at pixel level as in Chan et al., ICCV 2021) pastes content no task contains into
training frames and asks the net for a flat class distribution there, which lowers the max logit
the robot's pixel evidence reads (``robo_lifelong.models.unseen``).

The content is drawn here, not by the simulator: random polygons and ellipses filled with random
colours, stripes, checkers or colour mosaics, at random scales, closer to the camera than what
they cover. It never uses a task's objects (barriers, cones) or conditions (night, snow, fog):
what the detector learns is "not like the known classes", not the unseen tasks themselves, so
the benchmarks on those tasks stay honest (``tests/cloud/test_outliers.py`` checks it).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from robo_lifelong.sim import materials

# the training-target id of pasted pixels: not a class (cross-entropy ignores them), and never
# written to a label map on disk (those use 0..NUM_CLASSES-1 and IGNORE_ID = 255)
OUTLIER_ID = 254


@dataclass(frozen=True)
class OutlierConfig:
    probability: float  # share of training frames that get pasted things (TrainConfig's)
    max_objects: int = 3  # 1..max_objects per such frame
    min_size: float = 0.06  # object size as a fraction of the frame height
    max_size: float = 0.45


# The unseen tasks' own looks (0..1 RGB): pasted colours keep AVOID_RADIUS from them, so no
# made-up thing is a red barrier stripe, an orange cone or a patch of snow.
UNSEEN_LOOKS = np.array(
    [materials.COLORS[materials.NAMES.index(n)] for n in ('barrier', 'cone', 'snow')]
)
AVOID_RADIUS = 0.3
_NOISE = 10  # uniform per-pixel noise on flat colours, in 0..255 units


def safe_colors(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) float32 colours in 0..255, each at least AVOID_RADIUS from UNSEEN_LOOKS."""
    out = rng.uniform(0, 1, (n, 3))
    while True:
        near = (
            np.linalg.norm(out[:, None] - UNSEEN_LOOKS[None], axis=-1).min(axis=1) < AVOID_RADIUS
        )
        if not near.any():
            return (out * 255).astype(np.float32)
        out[near] = rng.uniform(0, 1, (int(near.sum()), 3))


def _texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w, 3) uint8: one of a flat noisy colour, stripes, a checkerboard or a mosaic of
    random colours; every pixel keeps its distance from the unseen tasks' looks."""
    colors = safe_colors(2, rng)
    kind = rng.integers(4)
    if kind == 0:
        out = np.broadcast_to(colors[0], (h, w, 3)) + rng.uniform(-_NOISE, _NOISE, (h, w, 3))
    elif kind in (1, 2):
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        period = rng.uniform(4, 24)
        if kind == 1:
            angle = rng.uniform(0, np.pi)
            phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
            pick = (np.floor(phase) % 2).astype(bool)
        else:
            pick = ((np.floor(xx / period) + np.floor(yy / period)) % 2).astype(bool)
        out = np.where(pick[..., None], colors[0], colors[1])
    else:
        ch, cw = max(2, h // 8), max(2, w // 8)
        # nearest, not cubic: blending two safe colours could make an unsafe one (red + yellow)
        coarse = safe_colors(ch * cw, rng).reshape(ch, cw, 3)
        out = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_NEAREST)
    return np.clip(out, 0, 255).astype(np.uint8)


def _shape_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w) bool: a random convex polygon or an ellipse filling most of the box."""
    mask = np.zeros((h, w), np.uint8)
    if rng.random() < 0.5:
        center = (w // 2, h // 2)
        axes = (max(1, int(w * rng.uniform(0.3, 0.5))), max(1, int(h * rng.uniform(0.3, 0.5))))
        cv2.ellipse(mask, center, axes, rng.uniform(0, 180), 0, 360, 1, -1)
    else:
        points = np.stack([rng.uniform(0, w, 8), rng.uniform(0, h, 8)], axis=1)
        cv2.fillConvexPoly(mask, cv2.convexHull(points.astype(np.int32)), 1)
    return mask.astype(bool)


def paste_outliers(
    rgb: np.ndarray,
    depth_mm: np.ndarray | None,
    target: np.ndarray,
    rng: np.random.Generator,
    cfg: OutlierConfig,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Copies of ``rgb`` (h, w, 3) uint8, ``depth_mm`` (h, w) uint16 or None and ``target``
    (h, w) int64 with 1..``cfg.max_objects`` made-up things pasted in, their pixels set to
    ``OUTLIER_ID`` in the target. Depth: each thing stands closer than the ground it covers."""
    rgb, target = rgb.copy(), target.copy()
    depth = None if depth_mm is None else depth_mm.copy()
    h, w = target.shape
    for _ in range(int(rng.integers(1, cfg.max_objects + 1))):
        bh = max(4, int(h * rng.uniform(cfg.min_size, cfg.max_size)))
        bw = max(4, int(bh * rng.uniform(0.5, 2.0)))
        bh, bw = min(bh, h), min(bw, w)
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        mask = _shape_mask(bh, bw, rng)
        patch = _texture(bh, bw, rng)
        rgb[y : y + bh, x : x + bw][mask] = patch[mask]
        target[y : y + bh, x : x + bw][mask] = OUTLIER_ID
        if depth is not None:
            region = depth[y : y + bh, x : x + bw]
            valid = region[region > 0]
            near = float(valid.min()) if valid.size else 2000.0
            region[mask] = np.uint16(min(near, max(300.0, near * rng.uniform(0.6, 1.0))))
    return rgb, depth, target


def outlier_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy from the uniform class distribution to the softmax on the pasted pixels,
    at logit resolution (where the robot scores them): 0 when no frame has pasted pixels."""
    pasted = (target == OUTLIER_ID).float()[:, None]
    share = F.adaptive_avg_pool2d(pasted, logits.shape[-2:])[:, 0]
    keep = share >= 0.5
    if not bool(keep.any()):
        return logits.sum() * 0.0
    uniform_ce = -F.log_softmax(logits, dim=1).mean(dim=1)
    return uniform_ce[keep].mean()
