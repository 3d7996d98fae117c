"""Sedna's baseline identifier: its features and score by their definition, its calibration
format, and its fitting on synthetic logits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robo_lifelong.errors import ConfigError
from robo_lifelong_cloud.sedna_baseline import (
    BASELINE_METHOD,
    SednaBaselineCalibration,
    baseline_features,
    fit_baseline,
    resize_mask,
    score_frame_baseline,
    synthetic_ood,
)

C, H, W = 5, 16, 20


def confident_logits(rng: np.random.Generator, flat: np.ndarray | None = None) -> np.ndarray:
    labels = rng.integers(0, C, (H, W))
    lg = 5.0 * np.eye(C)[labels].transpose(2, 0, 1) + rng.normal(0, 0.7, (C, H, W))
    if flat is not None:
        lg[:, flat] = rng.normal(0, 0.3, (C, int(flat.sum())))  # low, tied logits
    return lg.astype(np.float32)


def test_baseline_features_match_the_definition():
    # two pixels, three classes
    logits = np.array([[[2.0, 0.0]], [[1.0, 0.0]], [[0.0, 3.0]]], np.float32)  # (3, 1, 2)
    f = baseline_features(logits)
    assert f.shape == (1, 2, 2)
    # max logits 2 and 3, min-max normalised over the image -> 0 and 1
    np.testing.assert_allclose(f[0, :, 0], [0.0, 1.0])
    e = np.exp([2.0, 1.0, 0.0])
    p = np.exp([0.0, 0.0, 3.0])
    np.testing.assert_allclose(
        f[0, :, 1], [(e[0] - e[1]) / e.sum(), (p[2] - p[0]) / p.sum()], rtol=1e-5
    )
    flat = baseline_features(np.ones((3, 2, 2), np.float32))
    np.testing.assert_array_equal(flat, 0.0)


def test_baseline_score_is_fraction_of_ood_pixels():
    # p_ood = sigmoid(-10 * f1 + 5): pixels whose normalised max logit is < 0.5 are OOD
    cal = SednaBaselineCalibration(BASELINE_METHOD, 0.05, 0.2, (-10.0, 0.0), 5.0, 'test')
    logits = np.zeros((2, 1, 4), np.float32)
    logits[0, 0] = [0.0, 0.1, 1.0, 0.9]  # f1 = 0, 0.1, 1, 0.9 -> two OOD pixels of four
    r = score_frame_baseline(cal, logits)
    assert r.score == pytest.approx(0.5) and r.is_unseen
    assert r.anomaly_map.shape == (1, 4) and r.anomaly_map[0, 0] > 0.5 > r.anomaly_map[0, 2]
    d = json.loads(json.dumps(cal.to_json(), allow_nan=False))
    assert SednaBaselineCalibration.from_json(d).to_json() == cal.to_json()
    d['coef'] = [1.0]
    with pytest.raises(ConfigError, match="'coef'"):
        SednaBaselineCalibration.from_json(d)


def test_synthetic_ood_changes_only_the_masked_patch():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for _ in range(10):
        out, mask = synthetic_ood(rgb, rng)
        assert out.shape == rgb.shape and mask.shape == (48, 64)
        assert 0 < mask.sum() < mask.size / 4
        np.testing.assert_array_equal(out[~mask], rgb[~mask])
        assert np.any(out[mask] != rgb[mask])


def test_resize_mask_nearest():
    mask = np.zeros((8, 8), bool)
    mask[:4, 4:] = True
    np.testing.assert_array_equal(resize_mask(mask, (2, 2)), [[False, True], [False, False]])


def test_fit_baseline_flags_flat_regions_at_the_target_rate():
    rng = np.random.default_rng(0)
    known = [confident_logits(rng) for _ in range(100)]
    masks = []
    for _ in range(40):
        m = np.zeros((H * 4, W * 4), bool)  # image resolution: resized to the logits inside
        y, x = rng.integers(0, H * 2, 2)
        m[y : y + 24, x : x + 24] = True
        masks.append(m)
    ood = [confident_logits(rng, resize_mask(m, (H, W))) for m in masks]
    cal = fit_baseline(known, ood, masks, target_fpr=0.05)
    assert cal.coef[0] < 0 and cal.coef[1] < 0  # low max logit and low margin mean OOD
    fresh = [score_frame_baseline(cal, confident_logits(rng)).is_unseen for _ in range(200)]
    assert np.mean(fresh) <= 0.1
    flat = np.zeros((H, W), bool)
    flat[4:10, 5:12] = True
    flagged = [score_frame_baseline(cal, confident_logits(rng, flat)) for _ in range(20)]
    assert all(r.is_unseen for r in flagged)
    assert np.mean([r.score for r in flagged]) == pytest.approx(flat.mean(), abs=0.05)
    back = SednaBaselineCalibration.from_json(json.loads(json.dumps(cal.to_json())))
    assert back.to_json() == cal.to_json()


def test_fit_baseline_rejects_missing_inputs():
    with pytest.raises(ConfigError, match='masks'):
        fit_baseline([np.zeros((C, H, W), np.float32)], [], [])
