"""Segmentation and ranking metrics against hand-computed tiny examples."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from robo_lifelong.errors import DatasetError
from robo_lifelong_cloud.metrics import (
    auroc,
    average_precision,
    confusion,
    fpr_at_tpr,
    iou_report,
)

# 2x3 label maps, classes 0 road, 1 sidewalk, 2 building; 255 ignored
TARGET = np.array([[0, 0, 1], [1, 255, 2]], np.uint8)
PRED = np.array([[0, 1, 1], [1, 0, 0]], np.uint8)


def test_confusion_counts_rows_target_columns_prediction():
    conf = confusion(PRED, TARGET, num_classes=3)
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    np.testing.assert_array_equal(conf, expected)
    assert conf.dtype == np.int64
    # target ids >= num_classes are ignored like 255 (Sedna maps them to ignore)
    np.testing.assert_array_equal(confusion(PRED, TARGET, num_classes=2), expected[:2, :2])


def test_confusion_rejects_bad_inputs():
    with pytest.raises(ValueError, match='pixels'):
        confusion(PRED[:1], TARGET, 3)
    with pytest.raises(ValueError, match='outside'):
        confusion(PRED + 3, TARGET, 3)


def test_iou_report_hand_computed():
    # road: tp 1, fp 1 (building predicted road), fn 1 -> 1/3; sidewalk: tp 2, fp 1 -> 2/3;
    # building: tp 0, fn 1 -> 0
    a = confusion(PRED, TARGET, 24)
    b = confusion(np.zeros((1, 2), np.uint8), np.zeros((1, 2), np.uint8), 24)  # road only
    report = iou_report({'sunny': a, 'night': b, 'empty': np.zeros((24, 24), np.int64)})
    sunny = report['per_task']['sunny']
    assert sunny['per_class'] == pytest.approx({'road': 1 / 3, 'sidewalk': 2 / 3, 'building': 0.0})
    assert sunny['miou'] == pytest.approx(1 / 3)
    assert sunny['pixel_accuracy'] == pytest.approx(3 / 5)
    assert report['per_task']['night'] == {
        'miou': 1.0,
        'pixel_accuracy': 1.0,
        'per_class': {'road': 1.0},
    }
    assert 'empty' not in report['per_task']
    # overall from the summed confusion: road tp 3, fp 1, fn 1 -> 3/5
    assert report['per_class']['road'] == pytest.approx(3 / 5)
    assert report['miou'] == pytest.approx((3 / 5 + 2 / 3 + 0.0) / 3)
    assert report['pixel_accuracy'] == pytest.approx(5 / 7)
    json.dumps(report, allow_nan=False)  # absent classes are omitted, never NaN


def test_miou_averages_the_classes_of_the_ground_truth() -> None:
    # road everywhere; 1 pixel in 100 predicted as barrier (22), a class this task never shows
    target = np.zeros((10, 10), np.uint8)
    pred = target.copy()
    pred[0, 0] = 22
    sunny = iou_report({'sunny': confusion(pred, target, 24)})['per_task']['sunny']
    assert sunny['per_class'] == pytest.approx({'road': 0.99, 'barrier': 0.0})  # reported
    assert sunny['miou'] == pytest.approx(0.99)  # the stray pixel costs road, not a class slot


def test_iou_report_without_labelled_pixels_is_an_error():
    with pytest.raises(DatasetError, match='no labelled pixels'):
        iou_report({'sunny': np.zeros((3, 3), np.int64)})


def test_auroc_and_fpr95_hand_computed():
    known, unseen = [0.1, 0.2, 0.3, 0.4], [0.35, 0.5, 0.6, 0.7]
    # pairs (unseen > known): 0.35 beats 3 of 4, the others all 4 -> 15/16
    assert auroc(known, unseen) == pytest.approx(15 / 16)
    # catching >= 95 % of unseen needs threshold 0.35, which flags known 0.4 -> 1/4
    assert fpr_at_tpr(known, unseen) == pytest.approx(0.25)
    assert fpr_at_tpr(known, unseen, tpr=0.75) == 0.0
    assert auroc([0.0, 1.0], [1.0, 2.0]) == pytest.approx(0.875)  # a tie counts half
    with pytest.raises(ValueError, match='NaN'):
        auroc([math.nan], [1.0])


def test_average_precision_hand_computed():
    # ranked: 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): AP = (1/1 + 2/3) / 2
    assert average_precision([0.1, 0.9, 0.7, 0.8], [0, 1, 1, 0]) == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match='positive'):
        average_precision([0.1, 0.2], [0, 0])
