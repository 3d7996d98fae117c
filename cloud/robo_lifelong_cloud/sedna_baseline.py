"""Fitting of Sedna's original unseen-frame identifier, our baseline (PROTOCOL.md §7.5).

Sedna trained its pixel classifier on labelled OOD pixels it never published (``lr_model.model``,
a joblib pickle). Without real OOD data we fit the same classifier (logistic regression on the two
per-pixel features, see ``robo_lifelong.models.unseen.baseline_features``) on:

* in-distribution pixels: every pixel of held-out known-task frames, plus the untouched pixels of
  the perturbed frames below;
* OOD pixels: the pixels inside one synthetic patch pasted into known frames, either uniform
  colour noise or a colour-inverted, upside-down crop of the frame itself. These imitate no
  unseen task (no darkness, no snow, no cones), so the baseline sees no test data, as ours.

The frame threshold (on the fraction of OOD pixels) is chosen on the held-out known frames at the
same target false-alarm rate as ours, so the two are compared at the same operating point.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from robo_lifelong.errors import ConfigError
from robo_lifelong.models.unseen import (
    BASELINE_METHOD,
    DEFAULT_TARGET_FPR,
    SednaBaselineCalibration,
    baseline_features,
    score_frame_baseline,
)

log = logging.getLogger(__name__)

FITTED_ON = (
    'pixels of held-out known-task frames (in distribution) vs pixels of synthetic OOD patches '
    '(uniform noise, colour-inverted upside-down crops) pasted into known frames'
)


def synthetic_ood(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paste one synthetic OOD patch into a copy of ``rgb`` (H, W, 3) uint8.

    :return: the perturbed image and its (H, W) bool mask of OOD pixels.
    """
    h, w = rgb.shape[:2]
    ph = int(rng.integers(max(h // 8, 1), max(h // 3, 2)))
    pw = int(rng.integers(max(w // 8, 1), max(w // 3, 2)))
    y, x = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    out = rgb.copy()
    if rng.random() < 0.5:
        out[y : y + ph, x : x + pw] = rng.integers(0, 256, (ph, pw, 3), dtype=np.uint8)
    else:
        sy, sx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        out[y : y + ph, x : x + pw] = 255 - rgb[sy : sy + ph, sx : sx + pw][::-1, :, ::-1]
    mask = np.zeros((h, w), bool)
    mask[y : y + ph, x : x + pw] = True
    return out, mask


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) bool mask to the logits' (h, w)."""
    rows = (np.arange(shape[0]) + 0.5) * mask.shape[0] / shape[0]
    cols = (np.arange(shape[1]) + 0.5) * mask.shape[1] / shape[1]
    return mask[rows.astype(int)[:, None], cols.astype(int)[None, :]]


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= n else x[rng.choice(len(x), n, replace=False)]


def fit_baseline(
    known_logits: Sequence[np.ndarray],
    ood_logits: Sequence[np.ndarray],
    ood_masks: Sequence[np.ndarray],
    target_fpr: float = DEFAULT_TARGET_FPR,
    *,
    max_pixels: int = 200_000,
    seed: int = 0,
) -> SednaBaselineCalibration:
    """Fit the pixel classifier and the frame threshold.

    :param known_logits: (C, h, w) logits of held-out known-task frames.
    :param ood_logits: (C, h, w) logits of frames made by ``synthetic_ood``.
    :param ood_masks: their OOD masks, at image or logits resolution.
    :param target_fpr: fraction of known frames allowed to be flagged unseen.
    :param max_pixels: pixels per class (in distribution / OOD) used to fit the classifier.
    """
    if not 0.0 < target_fpr < 0.5:
        raise ConfigError(f'target_fpr must be in (0, 0.5), got {target_fpr!r}')
    if not known_logits or not ood_logits or len(ood_logits) != len(ood_masks):
        raise ConfigError(
            f'need known and OOD frames with one mask each: {len(known_logits)} known, '
            f'{len(ood_logits)} OOD, {len(ood_masks)} masks'
        )
    rng = np.random.default_rng(seed)
    inside, outside = [], [baseline_features(lg).reshape(-1, 2) for lg in known_logits]
    for lg, mask in zip(ood_logits, ood_masks, strict=True):
        feats = baseline_features(lg)
        mask = resize_mask(np.asarray(mask, bool), feats.shape[:2])
        inside.append(feats[mask])
        outside.append(feats[~mask])
    pos = _subsample(np.concatenate(inside), max_pixels, rng)
    neg = _subsample(np.concatenate(outside), max_pixels, rng)
    clf = LogisticRegression(class_weight='balanced')
    clf.fit(np.concatenate([pos, neg]), np.r_[np.ones(len(pos)), np.zeros(len(neg))])
    coef = (float(clf.coef_[0, 0]), float(clf.coef_[0, 1]))
    unfitted = SednaBaselineCalibration(
        BASELINE_METHOD, target_fpr, 0.0, coef, float(clf.intercept_[0]), FITTED_ON
    )
    scores = np.array([score_frame_baseline(unfitted, lg).score for lg in known_logits])
    threshold = float(np.quantile(scores, 1.0 - target_fpr, method='higher'))
    log.info(
        'baseline: %d OOD / %d in-distribution pixels, coef %s, intercept %.3f, threshold %.4f',
        len(pos),
        len(neg),
        coef,
        unfitted.intercept,
        threshold,
    )
    return SednaBaselineCalibration(
        BASELINE_METHOD, target_fpr, threshold, coef, unfitted.intercept, FITTED_ON
    )
