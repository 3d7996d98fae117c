"""Segmentation metrics (confusion matrices, IoU reports) and ranking metrics for unseen frames.

A report is plain JSON: ``{'miou', 'pixel_accuracy', 'per_class': {name: iou},
'per_task': {task: {'miou', 'pixel_accuracy', 'per_class'}}}``. A class that appears neither in
the target nor in the prediction has no IoU and is left out (never NaN); the mIoU averages the
classes that are present, as the Cityscapes tools do.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from robo_lifelong.errors import DatasetError
from robo_lifelong.labels import CLASSES, IGNORE_ID

_NAMES = {c.id: c.name for c in CLASSES}


def class_name(class_id: int) -> str:
    return _NAMES.get(class_id, f'class_{class_id}')


def confusion(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore: int = IGNORE_ID
) -> np.ndarray:
    """(K, K) int64 confusion matrix, rows = target class, columns = predicted class.

    Target pixels equal to ``ignore`` or outside [0, K) are skipped (as Sedna's eval maps ids
    >= num_class to ignore); a prediction outside [0, K) is an error.
    """
    pred = np.asarray(pred).ravel().astype(np.int64)
    target = np.asarray(target).ravel().astype(np.int64)
    if pred.shape != target.shape:
        raise ValueError(f'prediction has {pred.size} pixels, target {target.size}')
    keep = (target != ignore) & (target >= 0) & (target < num_classes)
    pred, target = pred[keep], target[keep]
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f'predicted class ids outside [0, {num_classes}): {pred.max()!r}')
    counts = np.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _summary(conf: np.ndarray) -> dict:
    """mIoU averages the classes in the ground truth. A class only predicted (a task that never
    shows it) is in ``per_class`` with IoU 0 and costs through the IoU of the classes its pixels
    belong to, not as a class of its own: as one, 20 stray barrier pixels in 225 sunny route
    frames (0.0001 % of them) cost the task 4.5 mIoU points, the size of real forgetting."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(axis=0) + conf.sum(axis=1) - tp
    present = np.flatnonzero(union > 0)
    in_truth = np.flatnonzero(conf.sum(axis=1) > 0)
    per_class = {class_name(int(k)): float(tp[k] / union[k]) for k in present}
    return {
        'miou': float(np.mean(tp[in_truth] / union[in_truth])),
        'pixel_accuracy': float(tp.sum() / conf.sum()),
        'per_class': per_class,
    }


def iou_report(confusions_by_task: Mapping[str, np.ndarray]) -> dict:
    """Per-class IoU, per-task mIoU and pixel accuracy, and the overall figures from the summed
    confusion. Tasks without labelled pixels are left out; no labelled pixel at all is an error."""
    tasks = {t: np.asarray(c) for t, c in confusions_by_task.items() if np.asarray(c).sum() > 0}
    if not tasks:
        raise DatasetError('no labelled pixels to evaluate (every target pixel is ignored)')
    shapes = {c.shape for c in tasks.values()}
    if len(shapes) != 1:
        raise ValueError(f'confusion matrices of different sizes: {sorted(shapes)!r}')
    report = _summary(sum(tasks.values()))
    report['per_task'] = {t: _summary(c) for t, c in sorted(tasks.items())}
    return report


def _ranking_inputs(scores_known, scores_unseen) -> tuple[np.ndarray, np.ndarray]:
    known = np.asarray(scores_known, np.float64).ravel()
    unseen = np.asarray(scores_unseen, np.float64).ravel()
    if known.size == 0 or unseen.size == 0:
        raise ValueError('need at least one known and one unseen score')
    scores = np.concatenate([known, unseen])
    if not np.all(np.isfinite(scores)):
        raise ValueError('scores contain NaN or infinity')
    return scores, np.concatenate([np.zeros(known.size), np.ones(unseen.size)])


def auroc(scores_known, scores_unseen) -> float:
    """Area under the ROC curve, unseen = positive (higher score = more unseen); ties count 1/2."""
    scores, labels = _ranking_inputs(scores_known, scores_unseen)
    return float(roc_auc_score(labels, scores))


def fpr_at_tpr(scores_known, scores_unseen, tpr: float = 0.95) -> float:
    """Fraction of known frames flagged at the loosest threshold that catches ``tpr`` of the
    unseen ones (FPR95 for the default)."""
    scores, labels = _ranking_inputs(scores_known, scores_unseen)
    fpr, tpr_curve, _ = roc_curve(labels, scores, drop_intermediate=False)
    # the tolerance keeps k/n == tpr from missing by a rounding error
    return float(fpr[np.searchsorted(tpr_curve, tpr - 1e-9, side='left')])


def average_precision(scores, labels) -> float:
    """Average precision of ``scores`` for binary ``labels`` (1 = positive, e.g. an OOD pixel)."""
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f'{scores.size} scores for {labels.size} labels')
    if not labels.any():
        raise ValueError('average precision needs at least one positive label')
    return float(average_precision_score(labels, scores))
