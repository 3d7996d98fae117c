"""Unseen-task recognition on synthetic embeddings and logits with known ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robo_lifelong.errors import ConfigError
from robo_lifelong.models.unseen import (
    BASELINE_METHOD,
    SednaBaselineCalibration,
    UnseenCalibration,
    baseline_features,
    fit_calibration,
    score_frame,
    score_frame_baseline,
)

D, C, H, W = 24, 6, 12, 16
TASKS = ('sunny', 'overcast', 'curbs')
REGION = (slice(3, 8), slice(5, 12))  # planted anomalous block


class Synth:
    """Known tasks: Gaussian embeddings around per-task means with a shared correlated
    covariance; logits confidently predict a random block label map."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.rng = np.random.default_rng(seed + 1)
        self.means = {t: rng.normal(0, 3.0, D) for t in TASKS}
        self.mix = rng.normal(0, 1.0, (D, D)) / np.sqrt(D)
        self.unseen_mean = rng.normal(0, 3.0, D)

    def embedding(self, mean: np.ndarray) -> np.ndarray:
        return (mean + self.rng.normal(0, 1.0, D) @ self.mix).astype(np.float32)

    def logits(self, anomalous: bool = False) -> np.ndarray:
        labels = np.repeat(np.repeat(self.rng.integers(0, C, (3, 4)), 4, 0), 4, 1)
        lg = self.rng.normal(0, 0.5, (C, H, W))
        lg += 6.0 * np.eye(C)[labels].transpose(2, 0, 1)
        if anomalous:
            lg[(slice(None), *REGION)] = self.rng.normal(0, 0.5, (C, 5, 7))
        return lg.astype(np.float32)

    def known(self, n_per_task: int) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
        tasks = [t for t in TASKS for _ in range(n_per_task)]
        emb = np.stack([self.embedding(self.means[t]) for t in tasks])
        return emb, tasks, [self.logits() for _ in tasks]


@pytest.fixture(scope='module')
def synth() -> Synth:
    return Synth()


@pytest.fixture(scope='module')
def calibration(synth: Synth) -> UnseenCalibration:
    return fit_calibration(*synth.known(120), target_fpr=0.05)


def test_known_frames_false_alarm_rate_near_target(synth, calibration):
    emb, tasks, logits = synth.known(200)
    results = [score_frame(calibration, e, lg) for e, lg in zip(emb, logits, strict=True)]
    rate = np.mean([r.is_unseen for r in results])
    assert 0.01 <= rate <= 0.11, rate
    assert calibration.threshold == 1.0
    assert all(r.is_unseen == (r.score > 1.0) for r in results)


def test_task_guess_is_the_generating_task(synth, calibration):
    emb, tasks, logits = synth.known(30)
    guesses = [
        score_frame(calibration, e, lg).task_guess for e, lg in zip(emb, logits, strict=True)
    ]
    assert np.mean(np.array(guesses) == np.array(tasks)) >= 0.95


def test_unseen_embedding_cluster_scores_above_threshold(synth, calibration):
    results = [
        score_frame(calibration, synth.embedding(synth.unseen_mean), synth.logits())
        for _ in range(60)
    ]
    assert np.mean([r.is_unseen for r in results]) >= 0.95
    assert min(r.image_evidence for r in results) > max(r.pixel_evidence for r in results)


def test_planted_pixel_anomaly_is_flagged_and_localised(synth, calibration):
    results = [
        score_frame(calibration, synth.embedding(synth.means['sunny']), synth.logits(True))
        for _ in range(60)
    ]
    assert np.mean([r.is_unseen for r in results]) >= 0.95
    for r in results[:10]:
        assert r.anomaly_map.shape == (H, W) and r.anomaly_map.dtype == np.float32
        mask = np.zeros((H, W), bool)
        mask[REGION] = True
        # every planted pixel is more anomalous than every untouched one
        assert r.anomaly_map[mask].min() > r.anomaly_map[~mask].max()


def test_calibration_json_round_trip(synth, calibration):
    text = json.dumps(calibration.to_json(), allow_nan=False)
    back = UnseenCalibration.from_json(json.loads(text))
    assert back.to_json() == calibration.to_json()
    assert back.known_tasks == TASKS
    e, lg = synth.embedding(synth.means['curbs']), synth.logits(True)
    a, b = score_frame(calibration, e, lg), score_frame(back, e, lg)
    assert a.score == pytest.approx(b.score) and a.task_guess == b.task_guess


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
    ],
)
def test_from_json_names_the_bad_key(calibration, edit, key):
    d = calibration.to_json()
    edit(d)
    with pytest.raises(ConfigError, match=repr(key)):
        UnseenCalibration.from_json(d)


def test_mismatched_inputs_are_rejected(synth, calibration):
    with pytest.raises(ConfigError, match='expects 24'):
        score_frame(calibration, np.zeros(D + 1, np.float32), synth.logits())
    with pytest.raises(ConfigError, match='expects'):
        score_frame(calibration, np.zeros(D, np.float32), np.zeros((C + 1, H, W), np.float32))
    emb, tasks, logits = synth.known(3)
    with pytest.raises(ConfigError, match="'curbs' has fewer than 2"):
        fit_calibration(emb[:7], tasks[:7], logits[:7])
    with pytest.raises(ConfigError, match='target_fpr'):
        fit_calibration(emb, tasks, logits, target_fpr=0.0)


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
