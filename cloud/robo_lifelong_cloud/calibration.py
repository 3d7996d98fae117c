"""Fitting of the robot's unseen-task calibration (``robo_lifelong.models.unseen``), in the cloud.

The train worker fits it on held-out known-task frames and ships it in the model package; the
robot only reads and scores with it. The method (image-level Mahalanobis distance, pixel-level
max logits over half the image and over its most anomalous few %, out-of-fold thresholds) is
described in ``robo_lifelong.models.unseen``; this module computes its statistics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from robo_lifelong.errors import ConfigError
from robo_lifelong.models.unseen import (
    METHOD,
    EmbeddingModel,
    UnseenCalibration,
    pixel_evidence,
)

log = logging.getLogger(__name__)

# The share of single known frames over the threshold. 2 %: on bench_unseen's known test frames
# 0.6 % then go over it (3.3 % at 5 %) while every unseen task keeps its detection (construction
# 0.97, dusk 0.98, night and snow 1.0); the alarm, which needs several frames in a row, is rarer.
DEFAULT_TARGET_FPR = 0.02

_EPS = 1e-6


def _check_fpr(value: float) -> None:
    if not 0.0 < value < 0.5:
        raise ConfigError(f'target_fpr must be in (0, 0.5), got {value!r}')


# ---------------------------------------------------------------------------------------------
# Image level


def _fit_embedding(
    emb: np.ndarray, task_idx: np.ndarray, num_tasks: int, rank: int, shrinkage: float
) -> EmbeddingModel:
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
    return EmbeddingModel(
        center, scale, means, evecs[:, top], evals[top], max(residual_var, _EPS * avg)
    )


# ---------------------------------------------------------------------------------------------
# Out-of-fold thresholds and the fit


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
    object_fraction: float = 0.02,
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
    fold = _folds(task_idx, num_folds)

    d2_oof = np.empty(len(tasks))
    for f in range(num_folds):
        held, rest = fold == f, fold != f
        model = _fit_embedding(embeddings[rest], task_idx[rest], len(known), rank, shrinkage)
        d2_oof[held] = model.sq_distances(embeddings[held]).min(axis=1)
    # the pixel evidences fit nothing per frame: only their thresholds come from these frames
    pixel = [pixel_evidence(np.asarray(lg), top_fraction, object_fraction) for lg in logits_list]
    pixel_raw = np.array([p for p, _, _ in pixel])
    object_raw = np.array([o for _, o, _ in pixel])

    image_loc, image_scale = _normaliser(d2_oof, target_fpr)
    pixel_loc, pixel_scale = _normaliser(pixel_raw, target_fpr)
    object_loc, object_scale = _normaliser(object_raw, target_fpr)
    fused = np.maximum.reduce(
        [
            (d2_oof - image_loc) / image_scale,
            (pixel_raw - pixel_loc) / pixel_scale,
            (object_raw - object_loc) / object_scale,
        ]
    )
    fused_scale = _quantile(fused, 1.0 - target_fpr)  # >= 1: each part is 1 at that quantile

    model = _fit_embedding(embeddings, task_idx, len(known), rank, shrinkage)
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
        top_fraction=float(top_fraction),
        image_loc=image_loc,
        image_scale=image_scale,
        pixel_loc=pixel_loc,
        pixel_scale=pixel_scale,
        object_fraction=float(object_fraction),
        object_loc=object_loc,
        object_scale=object_scale,
        fused_scale=fused_scale,
    )
