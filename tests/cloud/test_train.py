"""The train worker's unseen-calibration set: topped up from the rehearsal set when a round's
held-out frames are few, and a shortfall said in the log and recorded in the manifest."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from robo_lifelong.io.dataset import Sample
from robo_lifelong_cloud.data import Frame
from robo_lifelong_cloud.train import calibration_record, calibration_top_up


def frames(task: str, n: int) -> list[Frame]:
    pixel = np.zeros((1, 1), np.uint8)
    return [Frame(np.zeros((1, 1, 3), np.uint8), None, pixel, task) for _ in range(n)]


def samples(task: str, n: int) -> list[Sample]:
    return [Sample(f'{task}/{i}.png', None, f'{task}/{i}_label.png', task) for i in range(n)]


def test_old_tasks_are_topped_up_to_the_minimum_and_no_further() -> None:
    held = frames('night', 3) + frames('sunny', 3) + frames('overcast', 25)
    spare = samples('sunny', 30) + samples('overcast', 10) + samples('curbs', 4)
    picked = calibration_top_up(held, spare, minimum=20)
    counts = {t: sum(s.task == t for s in picked) for t in ('sunny', 'overcast', 'curbs')}
    assert counts == {'sunny': 17, 'overcast': 0, 'curbs': 4}
    assert picked[:17] == spare[:17]  # in index order: the same set on every run


def test_a_task_below_the_minimum_is_logged_and_recorded(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        record = calibration_record(frames('night', 3) + frames('sunny', 20), minimum=20)
    assert record == {
        'frames_per_task': {'night': 3, 'sunny': 20},
        'minimum_per_task': 20,
        'met': False,
    }
    [warning] = [r.getMessage() for r in caplog.records]
    assert "task 'night' has 3 held-out frames, fewer than the minimum 20" in warning


@pytest.mark.parametrize('n', [20, 21])
def test_enough_frames_meet_the_minimum_quietly(caplog, n: int) -> None:
    with caplog.at_level(logging.WARNING):
        assert calibration_record(frames('sunny', n), minimum=20)['met'] is True
    assert not caplog.records
