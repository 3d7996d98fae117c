"""The robot's side of unseen-task recognition: the calibration file format and per-frame scoring,
on a calibration written by hand so every number can be worked out on paper (the fitting is
tested in tests/cloud/test_calibration.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robo_lifelong.errors import ConfigError
from robo_lifelong.models.unseen import METHOD, UnseenCalibration, score_frame


def hand_made(**changes) -> UnseenCalibration:
    """Two tasks in D = 2, a one-direction basis along x (variance 4), residual variance 1 along
    y; the pixel evidence reads the worse half of the map (of two pixels: the worst one), the
    object evidence its worst 1 %."""
    fields = dict(
        method=METHOD,
        known_tasks=('sunny', 'overcast'),
        target_fpr=0.05,
        threshold=1.0,
        embed_center=np.zeros(2, np.float32),
        embed_scale=np.ones(2, np.float32),
        task_means=np.array([[0.0, 0.0], [4.0, 0.0]], np.float32),
        basis=np.array([[1.0], [0.0]], np.float32),
        basis_var=np.array([4.0], np.float32),
        residual_var=1.0,
        top_fraction=0.5,
        image_loc=0.25,
        image_scale=2.0,
        pixel_loc=-3.0,
        pixel_scale=4.0,
        object_fraction=0.01,  # of two pixels: the top one
        object_loc=-2.5,
        object_scale=1.0,
        fused_scale=1.6,
    )
    return UnseenCalibration(**{**fields, **changes})


# (C=2, h=1, w=2): max logits 3 (pixel 0, class 0) and 2 (pixel 1, class 1)
LOGITS = np.array([[[3.0, 0.0]], [[1.0, 2.0]]], np.float32)


def test_score_frame_follows_the_definition():
    r = score_frame(hand_made(), np.array([1.0, 2.0], np.float32), LOGITS)
    # to sunny (0, 0): x 1 -> 1/4, y 2 -> 4/1; to overcast (4, 0): 9/4 + 4 -> sunny is closer
    assert r.task_guess == 'sunny'
    assert r.image_evidence == pytest.approx((4.25 - 0.25) / 2.0)
    np.testing.assert_array_equal(r.anomaly_map, [[-3.0, -2.0]])  # minus the max logit
    assert r.anomaly_map.dtype == np.float32
    assert r.pixel_evidence == pytest.approx((-2.0 + 3.0) / 4.0)
    assert r.object_evidence == pytest.approx(-2.0 + 2.5)
    assert r.score == pytest.approx(2.0 / 1.6) and r.is_unseen
    near = score_frame(hand_made(), np.array([3.5, 0.5], np.float32), LOGITS)
    assert near.task_guess == 'overcast'
    # d2 = 0.25 / 4 + 0.25: image evidence 0.03, below the object evidence 0.5
    assert near.image_evidence == pytest.approx(0.03125)
    assert near.score == pytest.approx(0.5 / 1.6) and not near.is_unseen
    # pixel 1 unsure (max logit 0): the object evidence alone crosses the threshold
    odd = np.array([[[3.0, -1.0]], [[1.0, 0.0]]], np.float32)
    r = score_frame(hand_made(), np.array([3.5, 0.5], np.float32), odd)
    np.testing.assert_array_equal(r.anomaly_map, [[-3.0, 0.0]])
    assert r.pixel_evidence == pytest.approx(3.0 / 4.0)
    assert r.object_evidence == pytest.approx(2.5)
    assert r.score == pytest.approx(2.5 / 1.6) and r.is_unseen


def test_score_above_the_threshold_is_unseen_and_at_it_is_not():
    embedding = np.array([1.0, 2.0], np.float32)
    assert not score_frame(hand_made(fused_scale=2.0), embedding, LOGITS).is_unseen  # 1.0
    assert score_frame(hand_made(threshold=1.2), embedding, LOGITS).is_unseen  # 1.25


def test_calibration_json_round_trip():
    cal = hand_made()
    back = UnseenCalibration.from_json(json.loads(json.dumps(cal.to_json(), allow_nan=False)))
    assert back.to_json() == cal.to_json()
    assert back.known_tasks == ('sunny', 'overcast')
    e = np.array([1.0, 2.0], np.float32)
    assert score_frame(back, e, LOGITS).score == score_frame(cal, e, LOGITS).score


@pytest.mark.parametrize(
    ('edit', 'key'),
    [
        (lambda d: d.pop('basis'), 'basis'),
        (lambda d: d.update(extra=1), 'extra'),
        (lambda d: d.update(image_scale=float('nan')), 'image_scale'),
        (lambda d: d.update(basis_var=[[1.0]]), 'basis_var'),
        (lambda d: d.update(embed_center='x'), 'embed_center'),
        (lambda d: d.update(method='energy'), 'method'),
        (lambda d: d.update(known_tasks='sunny'), 'known_tasks'),
        (lambda d: d.update(residual_var=True), 'residual_var'),
        (lambda d: d.update(pixel_scale=0.0), 'pixel_scale'),
    ],
)
def test_from_json_names_the_bad_key(edit, key):
    d = hand_made().to_json()
    edit(d)
    with pytest.raises(ConfigError, match=repr(key)):
        UnseenCalibration.from_json(d)


def test_inconsistent_shapes_are_refused():
    with pytest.raises(ConfigError, match='task means'):
        hand_made(known_tasks=('sunny',))
    with pytest.raises(ConfigError, match='basis shape'):
        hand_made(basis=np.ones((3, 1), np.float32))


def test_mismatched_inputs_are_rejected():
    cal = hand_made()
    with pytest.raises(ConfigError, match='expects 2'):
        score_frame(cal, np.zeros(3, np.float32), LOGITS)
    with pytest.raises(ConfigError, match=r'expected \(C, h, w\)'):
        score_frame(cal, np.zeros(2, np.float32), np.zeros((1, 2), np.float32))
