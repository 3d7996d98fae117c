"""Fitting of Sedna's baseline identifier on synthetic logits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robo_lifelong.errors import ConfigError
from robo_lifelong.models.unseen import SednaBaselineCalibration, score_frame_baseline
from robo_lifelong_cloud.sedna_baseline import fit_baseline, resize_mask, synthetic_ood

C, H, W = 5, 16, 20


def confident_logits(rng: np.random.Generator, flat: np.ndarray | None = None) -> np.ndarray:
    labels = rng.integers(0, C, (H, W))
    lg = 5.0 * np.eye(C)[labels].transpose(2, 0, 1) + rng.normal(0, 0.7, (C, H, W))
    if flat is not None:
        lg[:, flat] = rng.normal(0, 0.3, (C, int(flat.sum())))  # low, tied logits
    return lg.astype(np.float32)


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
