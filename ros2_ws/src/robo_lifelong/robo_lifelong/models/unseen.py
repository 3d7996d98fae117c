"""Unseen-task recognition from the segmentation model's own outputs (numpy only: runs on robots).

Our method fuses two kinds of evidence into one calibrated score:

* image level: the globally pooled embedding is compared with each known task's mean under a
  shared within-task covariance (Mahalanobis distance, the argmin is the task guess). The
  covariance is stored low rank (top ``rank`` eigenvectors plus one isotropic residual variance,
  as in probabilistic PCA) so the calibration stays small for D = 64-256;
* pixel level: standardized max logits (max logit minus its mean for the predicted class, over its
  standard deviation); minus that is the anomaly map, and the mean of its top ``top_fraction``
  pixels is the frame's pixel evidence. The default half of the image is deliberate: on the
  simulated tasks a small top fraction (a few % of pixels) picked up the model's ordinary
  uncertain spots on known frames more than small new objects, and lost the whole-image shift of
  night and snow.

Each evidence is put on a common scale (0 at its median over known frames, 1 at its own
false-alarm quantile); the fused score is the larger of the two, divided by its own false-alarm
quantile, so the threshold is 1.0 and ``score > threshold`` means unseen. All statistics used to
pick the thresholds are out-of-fold: the frames are split into contiguous blocks per task and each
block is scored with statistics fitted on the others, so the false-alarm rate holds on new frames.

Sedna's original identifier (PROTOCOL.md §7.5) is kept as the baseline: per pixel, the max logit
min-max normalised over the image and the softmax top-1 minus top-2 margin feed a logistic
regression; the score is the fraction of pixels it calls OOD. Its fitting lives in the cloud
(``robo_lifelong_cloud.sedna_baseline``); scoring is here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from robo_lifelong.errors import ConfigError

log = logging.getLogger(__name__)

METHOD = 'mahalanobis+sml'
BASELINE_METHOD = 'sedna-lr'
DEFAULT_TARGET_FPR = 0.05

_MIN_CLASS_PIXELS = 64  # fewer predicted pixels than this: the class uses the all-pixel statistics
_EPS = 1e-6


@dataclass(frozen=True)
class UnseenResult:
    """One frame's verdict. ``anomaly_map`` (h, w) float32 is at the logits' resolution."""

    score: float  # calibrated: > threshold means unseen
    task_guess: str  # closest known task ('' for the baseline, which has no task model)
    anomaly_map: np.ndarray
    is_unseen: bool
    image_evidence: float = 0.0  # normalised image-level evidence (1.0 at its own threshold)
    pixel_evidence: float = 0.0  # normalised pixel-level evidence (1.0 at its own threshold)


def _as_array(d: dict, key: str, shape_rank: int) -> np.ndarray:
    try:
        arr = np.asarray(d[key], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ConfigError(f'unseen calibration key {key!r}: not a numeric array') from e
    if arr.ndim != shape_rank:
        raise ConfigError(
            f'unseen calibration key {key!r}: expected {shape_rank} dimensions, got {arr.ndim}'
        )
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f'unseen calibration key {key!r}: contains NaN or infinity')
    return arr.astype(np.float32)


def _as_float(d: dict, key: str) -> float:
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(
            f'unseen calibration key {key!r}: expected a finite number, got {value!r}'
        )
    return float(value)


def _check_keys(d: object, names: set[str], what: str) -> dict:
    if not isinstance(d, dict):
        raise ConfigError(f'{what}: expected a JSON object, got {type(d).__name__}')
    missing, unknown = sorted(names - d.keys()), sorted(d.keys() - names)
    if missing:
        raise ConfigError(f'{what}: missing key {missing[0]!r}')
    if unknown:
        raise ConfigError(f'{what}: unknown key {unknown[0]!r}')
    return d


def _check_method(d: dict, method: str, what: str) -> None:
    if d['method'] != method:
        raise ConfigError(f'{what} key {"method"!r}: expected {method!r}, got {d["method"]!r}')


def _check_fpr(value: float) -> None:
    if not 0.0 < value < 0.5:
        raise ConfigError(f'target_fpr must be in (0, 0.5), got {value!r}')


@dataclass(frozen=True, eq=False)
class UnseenCalibration:
    """Everything the robot needs to score frames. Arrays are float32; all values finite.

    Embedding statistics live in the standardised space ``z = (e - embed_center) / embed_scale``.
    """

    method: str
    known_tasks: tuple[str, ...]
    target_fpr: float
    threshold: float  # on ``score``; 1.0 as fitted
    embed_center: np.ndarray  # (D,)
    embed_scale: np.ndarray  # (D,)
    task_means: np.ndarray  # (T, D) in the standardised space
    basis: np.ndarray  # (D, k) orthonormal top eigenvectors of the within-task covariance
    basis_var: np.ndarray  # (k,) their (shrunk) variances
    residual_var: float  # variance of every direction outside the basis
    class_logit_mean: np.ndarray  # (C,) max-logit mean over pixels predicted as each class
    class_logit_std: np.ndarray  # (C,)
    top_fraction: float  # pixel evidence = mean of this top fraction of the anomaly map
    image_loc: float  # squared distance -> (d2 - image_loc) / image_scale
    image_scale: float
    pixel_loc: float
    pixel_scale: float
    fused_scale: float  # score = max(image, pixel evidence) / fused_scale

    def __post_init__(self) -> None:
        t, d = self.task_means.shape
        if t != len(self.known_tasks) or t == 0:
            raise ConfigError(
                f'unseen calibration: {t} task means for known tasks {self.known_tasks!r}'
            )
        if self.embed_center.shape != (d,) or self.embed_scale.shape != (d,):
            raise ConfigError(f'unseen calibration: embedding statistics are not of size {d}')
        if self.basis.ndim != 2 or self.basis.shape[0] != d:
            raise ConfigError(f'unseen calibration: basis shape {self.basis.shape} for D={d}')
        if self.basis_var.shape != (self.basis.shape[1],):
            raise ConfigError('unseen calibration: basis_var does not match the basis')
        if self.class_logit_mean.shape != self.class_logit_std.shape:
            raise ConfigError('unseen calibration: class_logit_mean and _std differ in size')
        positive = {
            'embed_scale': float(np.min(self.embed_scale)),
            'basis_var': float(np.min(self.basis_var, initial=1.0)),
            'class_logit_std': float(np.min(self.class_logit_std, initial=1.0)),
            'residual_var': self.residual_var,
            'image_scale': self.image_scale,
            'pixel_scale': self.pixel_scale,
            'fused_scale': self.fused_scale,
            'top_fraction': self.top_fraction,
        }
        for key, value in positive.items():
            if not value > 0.0:
                raise ConfigError(f'unseen calibration key {key!r}: must be > 0, got {value!r}')

    @property
    def num_classes(self) -> int:
        return int(self.class_logit_mean.shape[0])

    @property
    def embedding_dim(self) -> int:
        return int(self.embed_center.shape[0])

    def to_json(self) -> dict:
        """A JSON-ready dict (lists and finite floats only)."""
        out: dict = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                out[f.name] = value.astype(np.float64).tolist()
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls, d: dict) -> UnseenCalibration:
        """Inverse of ``to_json``; ConfigError naming the first bad key."""
        what = 'unseen calibration'
        _check_keys(d, {f.name for f in fields(cls)}, what)
        _check_method(d, METHOD, what)
        tasks = d['known_tasks']
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise ConfigError(f'{what} key {"known_tasks"!r}: expected a list of names')
        ranks = {
            'embed_center': 1,
            'embed_scale': 1,
            'task_means': 2,
            'basis': 2,
            'basis_var': 1,
            'class_logit_mean': 1,
            'class_logit_std': 1,
        }
        arrays = {key: _as_array(d, key, rank) for key, rank in ranks.items()}
        scalars = {
            f.name: _as_float(d, f.name)
            for f in fields(cls)
            if f.name not in ranks and f.name not in ('method', 'known_tasks')
        }
        return cls(method=METHOD, known_tasks=tuple(tasks), **arrays, **scalars)


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
        _check_keys(d, {f.name for f in fields(cls)}, what)
        _check_method(d, BASELINE_METHOD, what)
        coef = _as_array(d, 'coef', 1)
        if coef.shape != (2,):
            raise ConfigError(f'{what} key {"coef"!r}: expected 2 values, got {coef.shape[0]}')
        if not isinstance(d['fitted_on'], str):
            raise ConfigError(f'{what} key {"fitted_on"!r}: expected a string')
        return cls(
            method=BASELINE_METHOD,
            target_fpr=_as_float(d, 'target_fpr'),
            threshold=_as_float(d, 'threshold'),
            coef=(float(coef[0]), float(coef[1])),
            intercept=_as_float(d, 'intercept'),
            fitted_on=d['fitted_on'],
        )


# ---------------------------------------------------------------------------------------------
# Pixel level


def max_logit_map(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, h, w) logits -> (max logit (h, w) float32, predicted class (h, w) int64)."""
    if logits.ndim != 3:
        raise ConfigError(f'logits must be (C, h, w), got shape {logits.shape!r}')
    pred = np.argmax(logits, axis=0)
    top = np.take_along_axis(logits, pred[None], axis=0)[0]
    return top.astype(np.float32, copy=False), pred


def _anomaly(top: np.ndarray, pred: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    # minus the standardized max logit: a low logit for the class the model picked is anomalous
    return ((mean[pred] - top) / std[pred]).astype(np.float32, copy=False)


def _top_mean(values: np.ndarray, fraction: float) -> float:
    flat = values.ravel()
    k = max(1, int(round(fraction * flat.size)))
    return float(np.mean(np.partition(flat, flat.size - k)[flat.size - k :]))


def _class_moments(top: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(3, C+1) pixel count, sum and sum of squares of the max logit per predicted class; the
    last column is over all pixels."""
    p, t = pred.ravel(), top.ravel().astype(np.float64)
    out = np.empty((3, num_classes + 1))
    out[0, :-1] = np.bincount(p, minlength=num_classes)
    out[1, :-1] = np.bincount(p, weights=t, minlength=num_classes)
    out[2, :-1] = np.bincount(p, weights=t * t, minlength=num_classes)
    out[:, -1] = (t.size, t.sum(), (t * t).sum())
    return out


def _moments_to_stats(moments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    count = np.maximum(moments[0], 1.0)
    mean = moments[1] / count
    std = np.sqrt(np.maximum(moments[2] / count - mean**2, 0.0))
    all_mean, all_std = mean[-1], max(std[-1], _EPS)
    rare = moments[0, :-1] < _MIN_CLASS_PIXELS
    mean, std = mean[:-1].copy(), np.maximum(std[:-1], 0.05 * all_std)
    mean[rare], std[rare] = all_mean, all_std
    return mean.astype(np.float32), std.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Image level


@dataclass(frozen=True)
class _EmbeddingModel:
    center: np.ndarray
    scale: np.ndarray
    means: np.ndarray
    basis: np.ndarray
    basis_var: np.ndarray
    residual_var: float

    def sq_distances(self, emb: np.ndarray) -> np.ndarray:
        """(N, D) embeddings -> (N, T) squared Mahalanobis distances to the task means."""
        z = (np.asarray(emb, np.float64) - self.center) / self.scale
        diff = z[:, None, :] - self.means[None]  # (N, T, D)
        proj = diff @ self.basis  # (N, T, k)
        inside = np.sum(proj**2, axis=-1)
        resid = np.maximum(np.sum(diff**2, axis=-1) - inside, 0.0)
        return np.sum(proj**2 / self.basis_var, axis=-1) + resid / self.residual_var


def _fit_embedding(
    emb: np.ndarray, task_idx: np.ndarray, num_tasks: int, rank: int, shrinkage: float
) -> _EmbeddingModel:
    emb = emb.astype(np.float64)
    center = emb.mean(axis=0)
    std = emb.std(axis=0)
    # a smooth floor keeps near-constant channels (dead ReLUs) from dominating the distance
    scale = std + 0.1 * float(np.mean(std)) + _EPS
    z = (emb - center) / scale
    means = np.zeros((num_tasks, z.shape[1]))
    np.add.at(means, task_idx, z)
    means /= np.maximum(np.bincount(task_idx, minlength=num_tasks), 1)[:, None]
    within = z - means[task_idx]
    dof = max(len(z) - num_tasks, 1)
    evals, evecs = np.linalg.eigh(within.T @ within / dof)
    evals = np.maximum(evals, 0.0)
    # shrink towards the average variance: few frames per dimension make the small eigenvalues
    # (and so the distances along them) unreliable
    avg = max(float(np.mean(evals)), _EPS)
    evals = (1.0 - shrinkage) * evals + shrinkage * avg
    k = int(min(rank, len(evals) - 1, dof))
    k = max(k, 1)
    order = np.argsort(evals)[::-1]
    top, rest = order[:k], order[k:]
    residual_var = float(np.mean(evals[rest])) if len(rest) else avg
    return _EmbeddingModel(
        center, scale, means, evecs[:, top], evals[top], max(residual_var, _EPS * avg)
    )


# ---------------------------------------------------------------------------------------------
# Fitting


def _quantile(values: np.ndarray, q: float) -> float:
    # 'higher' never interpolates below an observed value, so at most (1 - q) of the
    # calibration frames exceed it
    return float(np.quantile(values, q, method='higher'))


def _normaliser(values: np.ndarray, target_fpr: float) -> tuple[float, float]:
    loc = float(np.median(values))
    scale = _quantile(values, 1.0 - target_fpr) - loc
    return loc, max(scale, _EPS * (abs(loc) + 1.0))


def _folds(task_idx: np.ndarray, num_folds: int) -> np.ndarray:
    """Fold id per frame: contiguous blocks within each task, since neighbouring frames of a
    recording are correlated and interleaved folds would leak."""
    fold = np.empty(len(task_idx), np.int64)
    for t in np.unique(task_idx):
        where = np.flatnonzero(task_idx == t)
        fold[where] = np.arange(len(where)) * num_folds // len(where)
    return fold


def _check_inputs(embeddings: np.ndarray, tasks: Sequence[str], logits_list: Sequence) -> None:
    if embeddings.ndim != 2:
        raise ConfigError(f'embeddings must be (N, D), got shape {embeddings.shape!r}')
    if not len(embeddings) == len(tasks) == len(logits_list):
        raise ConfigError(
            f'{len(embeddings)} embeddings, {len(tasks)} tasks and {len(logits_list)} logits'
        )
    if not np.all(np.isfinite(embeddings)):
        raise ConfigError('embeddings contain NaN or infinity')
    shapes = {np.shape(lg)[0] if np.ndim(lg) == 3 else None for lg in logits_list}
    if len(shapes) != 1 or None in shapes:
        raise ConfigError(f'logits must all be (C, h, w) with one C; got C values {shapes!r}')


def fit_calibration(
    embeddings: np.ndarray,
    tasks: Sequence[str],
    logits_list: Sequence[np.ndarray],
    target_fpr: float = DEFAULT_TARGET_FPR,
    *,
    rank: int = 32,
    shrinkage: float = 0.1,
    top_fraction: float = 0.5,
    num_folds: int = 5,
) -> UnseenCalibration:
    """Fit the unseen-task recogniser on HELD-OUT known-task frames (not the training frames,
    whose features the model has fitted).

    :param embeddings: (N, D) float32 pooled embeddings.
    :param tasks: N known-task names; every task needs at least 2 frames.
    :param logits_list: N arrays (C, h, w) of low-resolution logits.
    :param target_fpr: fraction of known frames allowed to be flagged unseen.
    :return: the calibration, with ``threshold`` = 1.0 on the fused score.
    """
    _check_fpr(target_fpr)
    embeddings = np.asarray(embeddings)
    _check_inputs(embeddings, tasks, logits_list)
    known = tuple(dict.fromkeys(tasks))
    task_idx = np.array([known.index(t) for t in tasks])
    counts = np.bincount(task_idx, minlength=len(known))
    if counts.min() < 2:
        raise ConfigError(f'task {known[int(counts.argmin())]!r} has fewer than 2 frames')
    num_folds = int(min(num_folds, counts.min()))
    num_classes = int(np.shape(logits_list[0])[0])
    maps = [max_logit_map(np.asarray(lg)) for lg in logits_list]
    moments = np.stack([_class_moments(top, pred, num_classes) for top, pred in maps])
    fold = _folds(task_idx, num_folds)

    d2_oof = np.empty(len(tasks))
    pix_oof = np.empty(len(tasks))
    for f in range(num_folds):
        held, rest = fold == f, fold != f
        model = _fit_embedding(embeddings[rest], task_idx[rest], len(known), rank, shrinkage)
        d2_oof[held] = model.sq_distances(embeddings[held]).min(axis=1)
        mean, std = _moments_to_stats(moments[rest].sum(axis=0))
        for i in np.flatnonzero(held):
            pix_oof[i] = _top_mean(_anomaly(*maps[i], mean, std), top_fraction)

    image_loc, image_scale = _normaliser(d2_oof, target_fpr)
    pixel_loc, pixel_scale = _normaliser(pix_oof, target_fpr)
    fused = np.maximum((d2_oof - image_loc) / image_scale, (pix_oof - pixel_loc) / pixel_scale)
    fused_scale = _quantile(fused, 1.0 - target_fpr)  # >= 1: each part is 1 at that quantile

    model = _fit_embedding(embeddings, task_idx, len(known), rank, shrinkage)
    mean, std = _moments_to_stats(moments.sum(axis=0))
    log.info(
        'unseen calibration: %d frames, %d tasks, D=%d, rank %d, %d folds, target FPR %.3f',
        len(tasks),
        len(known),
        embeddings.shape[1],
        model.basis.shape[1],
        num_folds,
        target_fpr,
    )
    f32 = np.float32
    return UnseenCalibration(
        method=METHOD,
        known_tasks=known,
        target_fpr=float(target_fpr),
        threshold=1.0,
        embed_center=model.center.astype(f32),
        embed_scale=model.scale.astype(f32),
        task_means=model.means.astype(f32),
        basis=model.basis.astype(f32),
        basis_var=model.basis_var.astype(f32),
        residual_var=float(model.residual_var),
        class_logit_mean=mean,
        class_logit_std=std,
        top_fraction=float(top_fraction),
        image_loc=image_loc,
        image_scale=image_scale,
        pixel_loc=pixel_loc,
        pixel_scale=pixel_scale,
        fused_scale=fused_scale,
    )


# ---------------------------------------------------------------------------------------------
# Scoring


def _embedding_model(cal: UnseenCalibration) -> _EmbeddingModel:
    f64 = np.float64
    return _EmbeddingModel(
        cal.embed_center.astype(f64),
        cal.embed_scale.astype(f64),
        cal.task_means.astype(f64),
        cal.basis.astype(f64),
        cal.basis_var.astype(f64),
        cal.residual_var,
    )


def score_frame(
    calibration: UnseenCalibration, embedding: np.ndarray, logits: np.ndarray
) -> UnseenResult:
    """Score one frame: ``embedding`` (D,), ``logits`` (C, h, w) at the model's low resolution."""
    cal = calibration
    embedding = np.asarray(embedding).reshape(-1)
    if embedding.shape[0] != cal.embedding_dim:
        raise ConfigError(
            f'embedding has {embedding.shape[0]} values, calibration expects {cal.embedding_dim}'
        )
    if np.ndim(logits) != 3 or np.shape(logits)[0] != cal.num_classes:
        raise ConfigError(
            f'logits shape {np.shape(logits)!r}, calibration expects ({cal.num_classes}, h, w)'
        )
    d2 = _embedding_model(cal).sq_distances(embedding[None])[0]
    guess = int(np.argmin(d2))
    anomaly = _anomaly(*max_logit_map(logits), cal.class_logit_mean, cal.class_logit_std)
    image = (float(d2[guess]) - cal.image_loc) / cal.image_scale
    pixel = (_top_mean(anomaly, cal.top_fraction) - cal.pixel_loc) / cal.pixel_scale
    score = max(image, pixel) / cal.fused_scale
    return UnseenResult(
        score=score,
        task_guess=cal.known_tasks[guess],
        anomaly_map=anomaly,
        is_unseen=bool(score > cal.threshold),
        image_evidence=image,
        pixel_evidence=pixel,
    )


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
