"""Unseen-task recognition from the segmentation model's own outputs (numpy only: runs on robots).

Our method fuses two kinds of evidence into one calibrated score:

* image level: the globally pooled embedding (deep and shallow features side by side: the deep
  ones alone become blind to conditions close to a learned one) is compared with each known
  task's mean under a shared within-task covariance (Mahalanobis distance, the argmin is the task
  guess). The covariance is stored low rank (top ``rank`` eigenvectors plus one isotropic
  residual variance, as in probabilistic PCA) so the calibration stays small for D = 64-256;
* pixel level: minus the max logit is the anomaly map. Two evidences read it: the mean of its
  top ``top_fraction`` pixels (half the image: the whole-image shift of night and snow) and the
  mean of its top ``object_fraction`` (2 %: a new object covering a small part of the frame, as
  the construction site's barriers and cones). Training with outlier exposure
  (``robo_lifelong_cloud.outliers``) is what makes the second one work: it teaches the net to be
  unsure on things no task shows; before it, the model's ordinary uncertain spots on known frames
  scored as high as new objects. The map used to be standardized per known task and predicted
  class; measured on the base model and on the four-round demo's models, the plain max logit is
  better on every count (new-object pixel AP 0.43 -> 0.70, construction AUROC 0.98 -> 0.995,
  still-unseen dusk 0.97 -> 0.99 after the third round, a learned night alarming no more often;
  docs/design.md).

Each evidence is put on a common scale (0 at its median over known frames, 1 at its own
false-alarm quantile); the fused score is the largest of the three, divided by its own false-alarm
quantile, so the threshold is 1.0 and ``score > threshold`` means unseen. All statistics used to
pick the thresholds are out-of-fold: the frames are split into contiguous blocks per task and each
block is scored with statistics fitted on the others, so the false-alarm rate holds on new frames.

The calibration is fitted in the cloud (``robo_lifelong_cloud.calibration``) and travels in the
model package; this module holds what the robot runs: its file format and the per-frame scoring,
plus the pieces the fitting shares with it (max logits, the anomaly map, the embedding distance).
Sedna's original identifier, our baseline, runs only in the cloud's benchmark
(``robo_lifelong_cloud.sedna_baseline``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from robo_lifelong.errors import ConfigError

METHOD = 'mahalanobis+maxlogit'


@dataclass(frozen=True)
class UnseenResult:
    """One frame's verdict. ``anomaly_map`` (h, w) float32 is at the logits' resolution."""

    score: float  # calibrated: > threshold means unseen
    task_guess: str  # closest known task ('' for the baseline, which has no task model)
    anomaly_map: np.ndarray
    is_unseen: bool
    image_evidence: float = 0.0  # normalised image-level evidence (1.0 at its own threshold)
    pixel_evidence: float = 0.0  # normalised pixel-level evidence (1.0 at its own threshold)
    object_evidence: float = 0.0  # the same over the most anomalous few % of the pixels


# The JSON readers below are shared with the cloud's baseline format (sedna_baseline), so both
# calibrations reject bad files with the same messages.


def json_array(d: dict, key: str, shape_rank: int) -> np.ndarray:
    """``d[key]`` as a finite float32 array of ``shape_rank`` dimensions, else ConfigError."""
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


def json_float(d: dict, key: str) -> float:
    """``d[key]`` as a finite float (a bool is not a number here), else ConfigError."""
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(
            f'unseen calibration key {key!r}: expected a finite number, got {value!r}'
        )
    return float(value)


def check_keys(d: object, names: set[str], what: str) -> dict:
    """``d`` itself if it is a dict with exactly the keys ``names``, else ConfigError."""
    if not isinstance(d, dict):
        raise ConfigError(f'{what}: expected a JSON object, got {type(d).__name__}')
    missing, unknown = sorted(names - d.keys()), sorted(d.keys() - names)
    if missing:
        raise ConfigError(f'{what}: missing key {missing[0]!r}')
    if unknown:
        raise ConfigError(f'{what}: unknown key {unknown[0]!r}')
    return d


def check_method(d: dict, method: str, what: str) -> None:
    """ConfigError unless ``d['method']`` is ``method``."""
    if d['method'] != method:
        raise ConfigError(f'{what} key {"method"!r}: expected {method!r}, got {d["method"]!r}')


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
    top_fraction: float  # pixel evidence = mean of this top fraction of the anomaly map
    image_loc: float  # squared distance -> (d2 - image_loc) / image_scale
    image_scale: float
    pixel_loc: float
    pixel_scale: float
    object_fraction: float  # object evidence = mean of this (small) top fraction of the map
    object_loc: float
    object_scale: float
    fused_scale: float  # score = max(image, pixel, object evidence) / fused_scale

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
        positive = {
            'embed_scale': float(np.min(self.embed_scale)),
            'basis_var': float(np.min(self.basis_var, initial=1.0)),
            'residual_var': self.residual_var,
            'image_scale': self.image_scale,
            'pixel_scale': self.pixel_scale,
            'fused_scale': self.fused_scale,
            'top_fraction': self.top_fraction,
            'object_fraction': self.object_fraction,
            'object_scale': self.object_scale,
        }
        for key, value in positive.items():
            if not value > 0.0:
                raise ConfigError(f'unseen calibration key {key!r}: must be > 0, got {value!r}')

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
        check_keys(d, {f.name for f in fields(cls)}, what)
        check_method(d, METHOD, what)
        tasks = d['known_tasks']
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise ConfigError(f'{what} key {"known_tasks"!r}: expected a list of names')
        ranks = {
            'embed_center': 1,
            'embed_scale': 1,
            'task_means': 2,
            'basis': 2,
            'basis_var': 1,
        }
        arrays = {key: json_array(d, key, rank) for key, rank in ranks.items()}
        scalars = {
            f.name: json_float(d, f.name)
            for f in fields(cls)
            if f.name not in ranks and f.name not in ('method', 'known_tasks')
        }
        return cls(method=METHOD, known_tasks=tuple(tasks), **arrays, **scalars)


# ---------------------------------------------------------------------------------------------
# Pixel level


def top_mean(values: np.ndarray, fraction: float) -> float:
    """Mean of the largest ``fraction`` of ``values`` (at least one value)."""
    flat = values.ravel()
    k = max(1, int(round(fraction * flat.size)))
    return float(np.mean(np.partition(flat, flat.size - k)[flat.size - k :]))


def pixel_evidence(
    logits: np.ndarray, top_fraction: float, object_fraction: float
) -> tuple[float, float, np.ndarray]:
    """The raw pixel and object evidence of a frame and its anomaly map (h, w) float32, from its
    logits (C, h, w)."""
    # a low max logit is anomalous (module doc)
    anomaly = np.negative(np.max(logits, axis=0)).astype(np.float32, copy=False)
    return top_mean(anomaly, top_fraction), top_mean(anomaly, object_fraction), anomaly


# ---------------------------------------------------------------------------------------------
# Image level


@dataclass(frozen=True)
class EmbeddingModel:
    """The image-level statistics in float64: standardisation ``center`` and ``scale`` (D,),
    task ``means`` (T, D), the low-rank covariance ``basis`` (D, k), ``basis_var`` (k,) and
    ``residual_var``."""

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


# ---------------------------------------------------------------------------------------------
# Scoring


def _embedding_model(cal: UnseenCalibration) -> EmbeddingModel:
    f64 = np.float64
    return EmbeddingModel(
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
    if np.ndim(logits) != 3:
        raise ConfigError(f'logits shape {np.shape(logits)!r}: expected (C, h, w)')
    d2 = _embedding_model(cal).sq_distances(embedding[None])[0]
    guess = int(np.argmin(d2))
    raw_pixel, raw_obj, anomaly = pixel_evidence(logits, cal.top_fraction, cal.object_fraction)
    image = (float(d2[guess]) - cal.image_loc) / cal.image_scale
    pixel = (raw_pixel - cal.pixel_loc) / cal.pixel_scale
    obj = (raw_obj - cal.object_loc) / cal.object_scale
    score = max(image, pixel, obj) / cal.fused_scale
    return UnseenResult(
        score=score,
        task_guess=cal.known_tasks[guess],
        anomaly_map=anomaly,
        is_unseen=bool(score > cal.threshold),
        image_evidence=image,
        pixel_evidence=pixel,
        object_evidence=obj,
    )
