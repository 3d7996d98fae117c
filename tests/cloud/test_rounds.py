"""The lifelong rounds' matrix and its measures (``demo/rounds.py``): BWT and FWT on a matrix
worked by hand, and the whole measurement on a real package."""

from __future__ import annotations

import numpy as np
import pytest

from robo_lifelong.sim.tasks import KNOWN_TASKS
from robo_lifelong_cloud.demo import rounds
from tests.ros.model_fixture import HEIGHT, WIDTH, cached_package

# row 0 untrained, then after rounds 1..3; tasks learned in rounds 1, 2, 3
MATRIX = np.array(
    [
        [0.10, 0.10, 0.10],
        [0.60, 0.20, 0.10],
        [0.55, 0.70, 0.20],
        [0.50, 0.65, 0.80],
    ]
)
LEARNED_IN = [1, 2, 3]


def test_bwt_is_the_last_row_minus_the_row_that_learned_each_earlier_task() -> None:
    # task 0: 0.50 - 0.60, task 1: 0.65 - 0.70; task 2 was learned in the last round
    assert rounds.bwt(MATRIX, LEARNED_IN) == pytest.approx(-0.075)


def test_fwt_is_the_round_before_learning_minus_the_untrained_row() -> None:
    # task 1: 0.20 - 0.10 (after round 1), task 2: 0.20 - 0.10 (after round 2)
    assert rounds.fwt(MATRIX, LEARNED_IN) == pytest.approx(0.10)


def test_ianvs_bwt_telescopes_to_the_total_gain() -> None:
    assert rounds.bwt_ianvs(MATRIX) == pytest.approx((0.40 + 0.55 + 0.70) / 9)


def test_one_round_has_no_transfer_to_measure() -> None:
    assert rounds.bwt(MATRIX[:2], [1, 1, 1]) is None
    assert rounds.fwt(MATRIX[:2], [1, 1, 1]) is None


def test_a_refused_candidate_learns_nothing_the_next_deployed_one_learns_its_tasks() -> None:
    def round_(number, tasks, deployed):
        return rounds.Round(number, tasks, None, deployed, (), 0.0)  # the package is not read

    measured = [
        round_(1, ('sunny', 'overcast'), True),
        round_(2, ('night',), False),
        round_(3, ('snow',), True),
        round_(4, ('construction',), False),
    ]
    assert rounds.learned_rounds(measured) == [1, 1, 3, 3, None]
    # night counts from round 3 (its model trained on night's samples too); construction is out
    before, after = [0.5, 0.5, 0.1, 0.1, 0.1], [0.4, 0.5, 0.6, 0.7, 0.2]
    matrix = np.array([[0.0] * 5, before, before, after, after])  # rows: untrained, rounds 1-4
    learned = rounds.learned_rounds(measured)
    assert rounds.fwt(matrix, learned) == pytest.approx(0.1)  # row 2 for night and for snow
    assert rounds.bwt(matrix, learned) == pytest.approx((-0.1 + 0.0 + 0.0 + 0.0) / 4)


def test_measure_scores_every_round_on_every_task(tmp_path_factory) -> None:
    package = cached_package(tmp_path_factory.getbasetemp() / 'perception-model')
    # the same model deployed twice: the second round changed nothing, so it forgot nothing
    measured = [
        rounds.Round(1, KNOWN_TASKS, package, True, ('initial model',), 10.0),
        rounds.Round(2, ('snow',), package, True, ('snow better',), 20.0),
    ]
    frames = rounds.fresh_frames([*KNOWN_TASKS, 'snow'], 2, WIDTH, HEIGHT)
    result = rounds.measure(measured, frames)

    assert result['tasks'] == [*KNOWN_TASKS, 'snow']
    assert result['learned_in_round'] == {**dict.fromkeys(KNOWN_TASKS, 1), 'snow': 2}
    matrix = np.array(result['miou_matrix'])
    assert matrix.shape == (3, 4)
    assert np.array_equal(matrix[1], matrix[2])
    # the fixture model trains 40 iterations: mIoU ~0.14 against ~0.0002 untrained
    assert matrix[1][:3].mean() > matrix[0][:3].mean() + 0.05
    assert result['bwt'] == 0.0
    assert result['forgetting_points'] == dict.fromkeys(KNOWN_TASKS, 0.0)
    assert result['fwt'] == pytest.approx(100 * (matrix[1][3] - matrix[0][3]), abs=0.01)
    # snow is unseen after round 1 and scores above the known frames more often than not (2
    # frames a task: a coarse AUROC); after round 2 it counts as learned: no task left to score
    assert result['unseen_auroc_by_round']['1']['snow'] > 0.5
    assert result['unseen_auroc_by_round']['2'] == {}
    assert [r['candidate_deployed'] for r in result['per_round']] == [True, True]
    assert result['per_round'][1]['reasons'] == ['snow better']

    path = rounds.heatmap(result, tmp_path_factory.mktemp('rounds') / 'rounds.png')
    assert path.stat().st_size > 1000
