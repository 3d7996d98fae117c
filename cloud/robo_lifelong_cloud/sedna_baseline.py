"""Sedna's original unseen-frame identifier, our baseline (PROTOCOL.md §7.5): its calibration
format, scoring and fitting. Only the cloud's benchmark runs it; the robot scores with our method.

Per pixel, the max logit min-max normalised over the image and the softmax top-1 minus top-2
margin feed a logistic regression; the frame's score is the fraction of pixels it calls OOD.
Sedna trained its pixel classifier on labelled OOD pixels it never published (``lr_model.model``,
a joblib pickle). Without real OOD data we fit the same classifier (logistic regression on the two
per-pixel features, ``baseline_features``) on:

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
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from sklearn.linear_model import LogisticRegression

from robo_lifelong.errors import ConfigError
from robo_lifelong.models.unseen import (
    UnseenResult,
    check_keys,
    check_method,
    json_array,
    json_float,
)
from robo_lifelong_cloud.calibration import DEFAULT_TARGET_FPR

log = logging.getLogger(__name__)

BASELINE_METHOD = 'sedna-lr'
FITTED_ON = (
    'pixels of held-out known-task frames (in distribution) vs pixels of synthetic OOD patches '
    '(uniform noise, colour-inverted upside-down crops) pasted into known frames'
)


@dataclass(frozen=True, eq=False)
class SednaBaselineCalibration:
    """Sedna's pixel classifier as plain coefficients (no pickle).

    ``p_ood = sigmoid(coef[0] * f1 + coef[1] * f2 + intercept)``; a pixel is OOD when p_ood > 0.5
    (Sedna's classifier labels an OOD pixel 0; here the positive class is OOD).
    """

    method: str
    target_fpr: float
    threshold: float  # on the fraction of OOD pixels; unseen iff score > threshold
    coef: tuple[float, float]
    intercept: float
    fitted_on: str  # what the classifier was trained on, for the record

    def __post_init__(self) -> None:
        values = (*self.coef, self.intercept, self.threshold)
        if len(self.coef) != 2 or not all(math.isfinite(v) for v in values):
            raise ConfigError(f'baseline calibration: bad coefficients {values!r}')

    def to_json(self) -> dict:
        return {
            'method': self.method,
            'target_fpr': self.target_fpr,
            'threshold': self.threshold,
            'coef': list(self.coef),
            'intercept': self.intercept,
            'fitted_on': self.fitted_on,
        }

    @classmethod
    def from_json(cls, d: dict) -> SednaBaselineCalibration:
        what = 'baseline calibration'
        check_keys(d, {f.name for f in fields(cls)}, what)
        check_method(d, BASELINE_METHOD, what)
        coef = json_array(d, 'coef', 1)
        if coef.shape != (2,):
            raise ConfigError(f'{what} key {"coef"!r}: expected 2 values, got {coef.shape[0]}')
        if not isinstance(d['fitted_on'], str):
            raise ConfigError(f'{what} key {"fitted_on"!r}: expected a string')
        return cls(
            method=BASELINE_METHOD,
            target_fpr=json_float(d, 'target_fpr'),
            threshold=json_float(d, 'threshold'),
            coef=(float(coef[0]), float(coef[1])),
            intercept=json_float(d, 'intercept'),
            fitted_on=d['fitted_on'],
        )


# ---------------------------------------------------------------------------------------------
# Scoring


def baseline_features(logits: np.ndarray) -> np.ndarray:
    """Sedna's per-pixel features (h, w, 2) float32: f1 = max logit min-max normalised over the
    image, f2 = softmax top-1 minus top-2 probability."""
    if logits.ndim != 3 or logits.shape[0] < 2:
        raise ConfigError(f'logits must be (C>=2, h, w), got shape {logits.shape!r}')
    logits = logits.astype(np.float32, copy=False)
    c = logits.shape[0]
    part = np.partition(logits, (c - 2, c - 1), axis=0)
    top1, top2 = part[c - 1], part[c - 2]
    lo, hi = float(top1.min()), float(top1.max())
    f1 = (top1 - lo) / (hi - lo) if hi > lo else np.zeros_like(top1)
    denom = np.sum(np.exp(logits - top1[None]), axis=0)  # softmax with the max subtracted
    f2 = (1.0 - np.exp(top2 - top1)) / denom
    return np.stack([f1, f2], axis=-1).astype(np.float32, copy=False)


def baseline_ood_probability(cal: SednaBaselineCalibration, logits: np.ndarray) -> np.ndarray:
    """(h, w) float32 probability that each pixel is OOD under the baseline classifier."""
    feats = baseline_features(logits)
    z = feats[..., 0] * cal.coef[0] + feats[..., 1] * cal.coef[1] + cal.intercept
    return (1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))).astype(np.float32)


def score_frame_baseline(
    calibration: SednaBaselineCalibration, logits: np.ndarray
) -> UnseenResult:
    """Sedna's rule: score = fraction of OOD pixels; unseen iff score > threshold."""
    prob = baseline_ood_probability(calibration, logits)
    score = float(np.mean(prob > 0.5))
    return UnseenResult(
        score=score,
        task_guess='',
        anomaly_map=prob,
        is_unseen=bool(score > calibration.threshold),
        pixel_evidence=score,
    )


# ---------------------------------------------------------------------------------------------
# Fitting


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
