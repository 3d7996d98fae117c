"""Fitting the unseen-task calibration on synthetic embeddings and logits with known ground
truth, and scoring with it as the robot does."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robo_lifelong.errors import ConfigError
from robo_lifelong.models.unseen import UnseenCalibration, score_frame
from robo_lifelong_cloud.calibration import fit_calibration

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

    def logits(self, anomalous: bool = False, sure: float = 6.0) -> np.ndarray:
        """``sure``: the predicted class's logit margin (a dark night frame has a lower one)."""
        labels = np.repeat(np.repeat(self.rng.integers(0, C, (3, 4)), 4, 0), 4, 1)
        lg = self.rng.normal(0, 0.5, (C, H, W))
        lg += sure * np.eye(C)[labels].transpose(2, 0, 1)
        if anomalous:
            lg[(slice(None), *REGION)] = self.rng.normal(0, 0.5, (C, 5, 7))
        return lg.astype(np.float32)

    def known(
        self, n_per_task: int, sure: dict[str, float] | None = None
    ) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
        tasks = [t for t in TASKS for _ in range(n_per_task)]
        emb = np.stack([self.embedding(self.means[t]) for t in tasks])
        sure = sure or {}
        return emb, tasks, [self.logits(sure=sure.get(t, 6.0)) for t in tasks]


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


def test_an_anomaly_stands_out_in_a_task_the_net_is_less_sure_of(synth):
    """A learned night is dark: the net's max logits are lower on every pixel of its frames. The
    thresholds are fitted over all known tasks, so the false-alarm rate holds, and a new object
    inside such a frame still drops the max logit far below the task's ordinary pixels."""
    sure = {'sunny': 6.0, 'overcast': 6.0, 'curbs': 3.0}
    cal = fit_calibration(*synth.known(120, sure), target_fpr=0.05)
    emb, _, logits = synth.known(60, sure)
    known = [score_frame(cal, e, lg).is_unseen for e, lg in zip(emb, logits, strict=True)]
    assert np.mean(known) <= 0.1
    planted = [
        score_frame(cal, synth.embedding(synth.means['curbs']), synth.logits(True, sure=3.0))
        for _ in range(40)
    ]
    assert np.mean([r.is_unseen for r in planted]) >= 0.95


def test_calibration_json_round_trip(synth, calibration):
    text = json.dumps(calibration.to_json(), allow_nan=False)
    back = UnseenCalibration.from_json(json.loads(text))
    assert back.to_json() == calibration.to_json()
    assert back.known_tasks == TASKS
    e, lg = synth.embedding(synth.means['curbs']), synth.logits(True)
    a, b = score_frame(calibration, e, lg), score_frame(back, e, lg)
    assert a.score == pytest.approx(b.score) and a.task_guess == b.task_guess


def test_too_few_frames_or_a_bad_target_rate_are_rejected(synth):
    emb, tasks, logits = synth.known(3)
    with pytest.raises(ConfigError, match="'curbs' has fewer than 2"):
        fit_calibration(emb[:7], tasks[:7], logits[:7])
    with pytest.raises(ConfigError, match='target_fpr'):
        fit_calibration(emb, tasks, logits, target_fpr=0.0)
