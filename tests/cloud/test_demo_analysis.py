"""The demo's before/after comparison: the same route frames through both models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robo_lifelong.errors import DatasetError
from robo_lifelong.labels import NUM_CLASSES
from robo_lifelong.sim.route import parse_schedule
from robo_lifelong.sim.tasks import KNOWN_TASKS
from robo_lifelong_cloud.demo.analysis import (
    ERROR,
    WARN,
    Drive,
    Span,
    alarmed_by_task,
    shared_frame_reports,
    unseen_spans,
)
from robo_lifelong_cloud.demo.loop import ROUND_TASKS, DemoConfig
from robo_lifelong_cloud.demo.report import outcome
from robo_lifelong_cloud.metrics import confusion

TRUTH = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], np.uint8)  # two classes, half the frame each
RIGHT = confusion(TRUTH, TRUTH, NUM_CLASSES)  # mIoU 1.0
WRONG = confusion(np.zeros_like(TRUTH), TRUTH, NUM_CLASSES)  # class 1 missed: mIoU 0.25


def drive(frames: dict[int, tuple[str, np.ndarray]], version: str) -> Drive:
    return Drive(
        stamps=np.arange(100, dtype=np.int64),
        rate_hz=1.0,
        duration_s=100.0,
        unseen_spans=[],
        version=version,
        score_t=np.zeros(0),
        score=np.zeros(0),
        alarm_t=np.zeros(0),
        alarm_level=np.zeros(0, np.int64),
        frame_confusion=frames,
        samples=0,
        threshold=None,
        alarm_quality={'precision': 1.0, 'recall': 0.0, 'known_frames_alarmed': 0.0,
                       'error_in_unseen': False},
    )  # fmt: skip


def test_only_frames_at_the_same_route_time_with_the_same_task_are_compared() -> None:
    before = drive({0: ('sunny', RIGHT), 1: ('sunny', RIGHT), 5: ('night', RIGHT)}, '1')
    # frame 1 is missing (dropped), frame 5 is another task, frame 9 only in this drive
    after = drive({0: ('sunny', RIGHT), 5: ('snow', WRONG), 9: ('overcast', WRONG)}, '2')
    report_b, report_a, counts = shared_frame_reports(before, after)
    assert counts == {'sunny': 1}
    assert set(report_b['per_task']) == set(report_a['per_task']) == {'sunny'}
    assert report_a['per_task']['sunny']['miou'] == pytest.approx(1.0)


def test_no_shared_frame_is_an_error_not_an_empty_comparison() -> None:
    with pytest.raises(DatasetError, match='same route time'):
        shared_frame_reports(drive({0: ('sunny', RIGHT)}, '1'), drive({1: ('sunny', RIGHT)}, '2'))


def test_forgetting_is_judged_on_the_shared_frames_not_on_another_stretch() -> None:
    # the last drive passes overcast twice: at the first drive's route time (as well segmented
    # as before) and later, on a harder stretch; only the shared frames say whether it forgot
    before = drive({0: ('sunny', RIGHT), 1: ('overcast', RIGHT)}, '1')
    after = drive({0: ('sunny', RIGHT), 1: ('overcast', RIGHT), 7: ('overcast', WRONG)}, '2')
    result = outcome(before, after, conditions=[])
    assert result['forgetting_points'] == {'sunny': 0.0, 'overcast': 0.0}
    assert result['checks']['old tasks lose < 1 mIoU point']
    assert result['frames_compared'] == {'sunny': 1, 'overcast': 1}
    worse = drive({0: ('sunny', RIGHT), 1: ('overcast', WRONG)}, '2')
    assert outcome(before, worse, conditions=[])['forgetting_points']['overcast'] == 75.0


@pytest.mark.parametrize('rounds', [2, 3, 4])
@pytest.mark.parametrize('quick', [True, False])
def test_the_last_drive_passes_the_first_drives_route_at_the_same_times(
    quick: bool, rounds: int
) -> None:
    def spans(schedule: str) -> dict[tuple[float, float], str]:
        out, start = {}, 0.0
        for task, seconds in parse_schedule(schedule):
            out[(start, start + seconds)] = task
            start += seconds
        return out

    schedules = DemoConfig(Path('unused'), rounds=rounds, quick=quick).schedules
    assert len(schedules) == rounds
    first, last = spans(schedules[0]), spans(schedules[-1])
    assert all(last.get(span) == task for span, task in first.items()), schedules
    assert len({task for task in first.values() if task in KNOWN_TASKS}) >= 2  # two old tasks
    learned = {task for tasks in ROUND_TASKS[1:rounds] for task in tasks}
    assert learned <= set(last.values())
    for schedule in schedules:  # known -> unseen -> known: the alarm's rise and its end
        tasks = [task for task, _ in parse_schedule(schedule)]
        assert tasks[0] in KNOWN_TASKS and tasks[-1] in KNOWN_TASKS, schedule
        assert any(task not in KNOWN_TASKS for task in tasks), schedule


def test_each_unseen_task_has_its_own_alarmed_share() -> None:
    # night twice (10-20 s and 40-50 s), construction between; one score message a second;
    # WARN from 15 s, ERROR from 18 s, all clear at 25 s; nothing scored on snow's stretch
    schedule = 'sunny:10,night:10,construction:10,overcast:10,night:10,snow:10'
    spans = unseen_spans(schedule, ('night', 'construction', 'snow'))
    assert spans[:2] == [Span('night', 10.0, 20.0), Span('construction', 20.0, 30.0)]
    d = drive({}, '1')
    d.unseen_spans = spans
    d.score_t = np.arange(50.0)
    d.score = np.zeros(50)
    d.alarm_t = np.array([0.0, 15.0, 18.0, 25.0])
    d.alarm_level = np.array([0, WARN, ERROR, 0])
    shares = alarmed_by_task(d)
    assert list(shares) == ['night', 'construction', 'snow']  # route order
    assert shares['night'] == pytest.approx(5 / 20)  # 15-19 s of its 20 s
    assert shares['construction'] == pytest.approx(5 / 10)  # 20-24 s
    assert shares['snow'] is None  # no score: unknown, not "never alarmed"


def test_a_stretch_holds_its_start_but_not_its_end() -> None:
    """Consecutive stretches share a boundary: a score message at it belongs to the later one."""
    t = np.array([9.9, 10.0, 19.9, 20.0])
    np.testing.assert_array_equal(Span('night', 10.0, 20.0).contains(t), [0, 1, 1, 0])
    np.testing.assert_array_equal(Span('snow', 20.0, 30.0).contains(t), [0, 0, 0, 1])
