"""The train worker's unseen-calibration set: topped up from the rehearsal set when a round's
held-out frames are few, then from a new task's own training frames, and a shortfall said in the
log and recorded in the manifest."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from robo_lifelong.io.dataset import Sample
from robo_lifelong_cloud.data import Frame
from robo_lifelong_cloud.train import calibration_record, calibration_top_up, training_top_up


def frames(task: str, n: int) -> list[Frame]:
    """``n`` frames of ``task``; frame i's pixel holds i, so tests can tell which were picked."""
    return [
        Frame(np.full((1, 1, 3), i, np.uint8), None, np.zeros((1, 1), np.uint8), task)
        for i in range(n)
    ]


def picked_indices(picked: list[Frame], task: str) -> list[int]:
    return [int(f.rgb[0, 0, 0]) for f in picked if f.task == task]


def samples(task: str, n: int) -> list[Sample]:
    return [Sample(f'{task}/{i}.png', None, f'{task}/{i}_label.png', task) for i in range(n)]


def test_old_tasks_are_topped_up_to_the_minimum_and_no_further() -> None:
    held = frames('night', 3) + frames('sunny', 3) + frames('overcast', 25)
    spare = samples('sunny', 30) + samples('overcast', 10) + samples('curbs', 4)
    picked = calibration_top_up(held, spare, minimum=20)
    counts = {t: sum(s.task == t for s in picked) for t in ('sunny', 'overcast', 'curbs')}
    assert counts == {'sunny': 17, 'overcast': 0, 'curbs': 4}
    assert picked[:17] == spare[:17]  # in index order: the same set on every run


def test_a_new_task_is_topped_up_from_its_training_frames_evenly_spaced() -> None:
    calibration = frames('night', 8) + frames('sunny', 20) + frames('snow', 1)
    train = frames('night', 22) + frames('sunny', 60) + frames('snow', 5) + frames('dusk', 30)
    picked = training_top_up(calibration, train, minimum=20)
    assert picked_indices(picked, 'night') == [0, 2, 4, 6, 8, 10, 11, 13, 15, 17, 19, 21]
    assert picked_indices(picked, 'sunny') == []  # at the minimum already
    assert picked_indices(picked, 'snow') == [0, 1, 2, 3, 4]  # all it has, still short
    assert picked_indices(picked, 'dusk') == []  # nothing held out: not calibrated at all


def test_a_task_below_the_minimum_is_logged_and_recorded(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        record = calibration_record(frames('night', 3) + frames('sunny', 20), minimum=20)
    assert record == {
        'frames_per_task': {'night': 3, 'sunny': 20},
        'training_frames_per_task': {},
        'minimum_per_task': 20,
        'met': False,
    }
    [warning] = [r.getMessage() for r in caplog.records]
    assert "task 'night' has 3 frames, fewer than the minimum 20" in warning


def test_training_frames_in_the_calibration_are_recorded_and_logged(caplog) -> None:
    fill = frames('night', 12)
    with caplog.at_level(logging.WARNING):
        record = calibration_record(frames('night', 8) + fill + frames('sunny', 20), fill, 20)
    assert record == {
        'frames_per_task': {'night': 20, 'sunny': 20},
        'training_frames_per_task': {'night': 12},
        'minimum_per_task': 20,
        'met': True,
    }
    [warning] = [r.getMessage() for r in caplog.records]
    assert "task 'night' has 8 frames the model did not train on; 12 of its training" in warning


@pytest.mark.parametrize('n', [20, 21])
def test_enough_frames_meet_the_minimum_quietly(caplog, n: int) -> None:
    with caplog.at_level(logging.WARNING):
        assert calibration_record(frames('sunny', n), minimum=20)['met'] is True
    assert not caplog.records
