"""Alarm policy state machine on synthetic score streams."""

import math

import numpy as np
import pytest

from robo_lifelong.errors import ConfigError
from robo_lifelong.perception.alarm_policy import AlarmConfig, AlarmLevel, AlarmPolicy

OK, WARN, ERROR, STALE = AlarmLevel.OK, AlarmLevel.WARN, AlarmLevel.ERROR, AlarmLevel.STALE
DT = 1.0 / 15.0  # a 15 Hz camera
V = 'v1'


def feed(policy, scores, t0=0.0, model_version=V, task='sunny'):
    """Feed one score per frame at 15 Hz; returns (levels, statuses, change flags, next t)."""
    levels, statuses, changes = [], [], []
    t = t0
    for s in scores:
        status, changed = policy.update(t, s, task_guess=task, model_version=model_version)
        levels.append(status.level)
        statuses.append(status)
        changes.append(changed)
        t += DT
    return levels, statuses, changes, t


def first_index(levels, level):
    return levels.index(level)


def cfg(**kw):
    base = dict(ema_alpha=1.0, warn_enter_frames=3, error_enter_frames=8, exit_frames=5)
    base.update(kw)
    return AlarmConfig(**base)


def test_starts_stale_and_first_frame_gives_ok():
    policy = AlarmPolicy(cfg())
    status, changed = policy.update(0.0, None, model_version=V)
    assert status.level == STALE and 'no frames' in status.message and not changed
    status, changed = policy.update(0.1, 0.2, task_guess='sunny', model_version=V)
    assert status.level == OK and changed
    assert status.since == pytest.approx(0.1)
    assert status.task == 'sunny' and status.model_version == V


def test_enter_warn_then_escalate_to_error_then_hold():
    policy = AlarmPolicy(cfg())
    levels, statuses, changes, t = feed(policy, [0.1] * 5 + [2.0] * 20)
    assert levels[:7] == [OK] * 7
    assert first_index(levels, WARN) == 5 + 3 - 1  # third consecutive frame above threshold
    assert first_index(levels, ERROR) == 5 + 8 - 1  # eighth frame of the episode
    assert levels[12:] == [ERROR] * 13  # holds while the score stays up
    assert sum(changes) == 3  # STALE->OK, OK->WARN, WARN->ERROR
    err = statuses[12]
    assert err.since == pytest.approx(12 * DT)
    assert statuses[-1].since == pytest.approx(12 * DT)  # since does not move while holding
    assert err.score == pytest.approx(2.0) and err.threshold == 1.0
    assert 'persistent unseen' in err.message


def test_exit_to_ok_only_after_exit_count():
    policy = AlarmPolicy(cfg(exit_frames=5))
    feed(policy, [2.0] * 10)
    assert policy.level == ERROR
    # below the threshold but inside the hysteresis band: no exit, and the run does not count
    levels, *_ = feed(policy, [0.9] * 20, t0=1.0)
    assert set(levels) == {ERROR}
    levels, statuses, changes, _ = feed(policy, [0.1] * 6, t0=3.0)
    assert levels == [ERROR] * 4 + [OK, OK]
    assert changes == [False] * 4 + [True, False]
    assert statuses[4].since == pytest.approx(3.0 + 4 * DT)


def test_interrupted_exit_run_starts_over():
    policy = AlarmPolicy(cfg(exit_frames=5))
    feed(policy, [2.0] * 4)
    assert policy.level == WARN
    levels, *_ = feed(policy, [0.1] * 4 + [0.9] + [0.1] * 4, t0=1.0)
    assert set(levels) == {WARN}  # 4 + 4 below exit, split by one in the band
    levels, *_ = feed(policy, [0.1], t0=2.0)
    assert levels == [OK]


def test_warn_clears_without_error_for_a_short_burst():
    policy = AlarmPolicy(cfg())
    levels, *_ = feed(policy, [0.1] * 3 + [2.0] * 4 + [0.1] * 10)
    assert WARN in levels and ERROR not in levels and levels[-1] == OK


def test_error_by_seconds():
    policy = AlarmPolicy(cfg(error_enter_frames=None, error_enter_seconds=0.5))
    levels, *_ = feed(policy, [2.0] * 15)
    # the episode starts at frame 0; 0.5 s later is frame ceil(0.5 / DT) = 8
    assert first_index(levels, ERROR) == math.ceil(0.5 / DT - 1e-9)
    assert first_index(levels, WARN) == 2


def test_smoothing_delays_entry_and_ignores_a_single_spike():
    policy = AlarmPolicy(cfg(ema_alpha=0.3, warn_enter_frames=2))
    levels, statuses, *_ = feed(policy, [0.2] * 10 + [5.0] + [0.2] * 10)
    # one spike lifts the EMA above 1 for a few frames only: 0.2 + 0.3 * 4.8 = 1.64, then decays
    assert statuses[10].score == pytest.approx(0.2 + 0.3 * 4.8)
    assert WARN in levels  # the smoothed score stays up for >= 2 frames ...
    assert ERROR not in levels  # ... but not long enough to escalate
    assert levels[-1] == OK


def test_oscillating_score_does_not_flap():
    rng = np.random.default_rng(0)
    policy = AlarmPolicy(AlarmConfig(ema_alpha=0.5, warn_enter_frames=3, exit_frames=10))
    # a score wandering around the threshold: noise +-0.15 about 1.0 for 60 s at 15 Hz
    scores = 1.0 + rng.uniform(-0.15, 0.15, size=900)
    levels, _, changes, _ = feed(policy, scores)
    transitions = sum(changes[1:])  # the first change is STALE -> OK
    assert transitions <= 2  # at most OK -> WARN -> ERROR, never back and forth
    assert levels[-1] in (WARN, ERROR)


def test_alternating_extremes_bounded_transitions():
    policy = AlarmPolicy(AlarmConfig(ema_alpha=0.5, warn_enter_frames=3, exit_frames=10))
    levels, _, changes, _ = feed(policy, [0.0, 2.0] * 300)
    assert sum(changes[1:]) <= 2


def test_stale_on_missing_frames_and_recovery():
    policy = AlarmPolicy(cfg(stale_after=1.0))
    feed(policy, [2.0] * 5)  # a WARN episode with a sample attached
    policy.attach_sample('s1')
    assert policy.level == WARN and policy.status().sample_ids == ('s1',)
    last = 4 * DT
    status, changed = policy.update(last + 0.9, None, model_version=V)
    assert status.level == WARN and not changed  # not stale yet
    status, changed = policy.update(last + 1.2, None, model_version=V)
    assert (
        status.level == STALE
        and changed
        and 'no frames on the camera topic for 1.2 s' in status.message
    )
    assert status.since == pytest.approx(last + 1.2)
    assert status.score is None and status.sample_ids == ()
    status, changed = policy.update(last + 5.0, None, model_version=V)
    assert status.level == STALE and not changed and 'for 5.0 s' in status.message
    assert status.since == pytest.approx(last + 1.2)
    # frames return: OK, smoothing restarted, and the episode counters too
    levels, statuses, changes, _ = feed(policy, [2.0] * 3, t0=10.0)
    assert levels == [OK, OK, WARN] and changes == [True, False, True]
    assert statuses[0].score == pytest.approx(2.0)


def test_stale_without_model_and_recovery():
    policy = AlarmPolicy(cfg())
    feed(policy, [0.1] * 3)
    status, changed = policy.update(1.0, 0.1, model_version=None)
    assert status.level == STALE and changed and status.message == 'no model loaded'
    assert status.task == '' and status.score is None
    status, changed = policy.update(1.1, 0.1, model_version='v2')
    assert status.level == OK and changed and status.model_version == 'v2'


def test_non_finite_score_counts_as_missing_frame():
    policy = AlarmPolicy(cfg(stale_after=0.5))
    feed(policy, [0.1])
    status, _ = policy.update(0.3, float('nan'), model_version=V)
    assert status.level == OK and status.score == pytest.approx(0.1)
    status, _ = policy.update(0.6, float('inf'), model_version=V)
    assert status.level == STALE


def test_time_going_backwards_keeps_bookkeeping():
    policy = AlarmPolicy(cfg())
    feed(policy, [2.0] * 3, t0=5.0)
    assert policy.level == WARN
    since = policy.status().since
    status, _ = policy.update(1.0, 2.0, model_version=V)  # clock stepped back
    assert status.since == since and status.level == WARN


def test_sample_ids_belong_to_the_episode():
    policy = AlarmPolicy(cfg(max_sample_ids=3))
    feed(policy, [0.1] * 2)
    policy.attach_sample('lonely')
    feed(policy, [0.1])  # an OK frame with no run in progress forgets it
    assert policy.status().sample_ids == ()
    feed(policy, [2.0])
    policy.attach_sample('a')  # collected on the first frame of what becomes an episode
    feed(policy, [2.0] * 3)
    for s in ('b', 'c', 'd'):
        policy.attach_sample(s)
    status = policy.status()
    assert status.level == WARN and status.sample_ids == ('b', 'c', 'd')  # bounded, newest kept
    kv = dict(status.key_values())
    assert kv['sample_ids'] == 'b,c,d' and kv['level'] == 'WARN' and kv['model_version'] == V
    assert kv['task'] == 'unseen' and kv['nearest_known_task'] == 'sunny'
    assert float(kv['threshold']) == 1.0
    feed(policy, [0.1] * 5)
    assert policy.level == OK and policy.status().sample_ids == ()


def test_stale_messages_name_the_topic_and_the_model_problem():
    policy = AlarmPolicy(cfg(stale_after=1.0), source='/dog/camera/color/image_raw')
    status, _ = policy.update(0.0, None, model_version=V)
    assert status.message.startswith('no frames on /dog/camera/color/image_raw yet: check')
    feed(policy, [0.1], t0=1.0)
    status, _ = policy.update(3.5, None, model_version=V)
    assert status.message.startswith('no frames on /dog/camera/color/image_raw for 2.5 s: check')
    status, _ = policy.update(4.0, None, model_version=None, no_model='/m rejected: bad hash')
    assert status.level == STALE and status.message == 'no model loaded: /m rejected: bad hash'


def test_frames_without_a_score_go_stale_naming_why_not_missing_frames():
    """Frames keep arriving but give no score (a camera fault, a model without calibration):
    the STALE message says so instead of claiming the topic is silent."""
    policy = AlarmPolicy(cfg(stale_after=1.0), source='/dog/camera/color/image_raw')
    status, _ = policy.update(0.0, None, model_version=V, no_score='model v1 has no calibration')
    assert status.message == 'no unseen-task verdict yet: model v1 has no calibration'
    feed(policy, [0.1], t0=1.0)
    for t in (1.5, 2.0, 2.5):
        status, _ = policy.update(t, None, model_version=V, no_score='camera fault (dark) on x')
    assert status.level == STALE
    assert status.message == 'no unseen-task verdict for 1.5 s: camera fault (dark) on x'
    feed(policy, [0.1], t0=3.0)  # a scored frame: the reason is forgotten
    status, _ = policy.update(5.0, None, model_version=V)
    assert status.message.startswith('no frames on /dog/camera/color/image_raw for 2.0 s')


def test_task_is_unseen_in_warn_and_error_with_the_nearest_known_task():
    policy = AlarmPolicy(cfg(task_window_frames=5))
    levels, statuses, *_ = feed(policy, [0.1] * 5 + [2.0] * 10, task='curbs')
    for level, status in zip(levels, statuses, strict=True):
        kv = dict(status.key_values())
        if level == OK:
            assert status.task == kv['task'] == 'curbs' and 'nearest_known_task' not in kv
            assert status.message.startswith('known task curbs (score')
        else:
            assert status.task == kv['task'] == 'unseen' and kv['nearest_known_task'] == 'curbs'
    assert levels[-1] == ERROR and 'emergency response' in statuses[-1].message
    assert 'slow down or stop the robot' in statuses[-1].message
    assert 'unseen task suspected (score' in statuses[levels.index(WARN)].message
    # whole in `ros2 topic echo`, which cuts strings at 128 characters
    assert max(len(s.message) for s in statuses) <= 128


def test_reported_task_is_the_window_majority_and_holds_on_ties():
    policy = AlarmPolicy(cfg(task_window_frames=6))
    t = 0.0

    def run(guesses):
        nonlocal t
        tasks = []
        for guess in guesses:
            status, _ = policy.update(t, 0.1, task_guess=guess, model_version=V)
            tasks.append(status.task)
            t += DT
        return tasks

    # a known street whose frames the model places near three tasks in turn: mostly sunny
    flipping = ['sunny', 'curbs', 'sunny', 'overcast', 'sunny', 'curbs'] * 10
    tasks = run(flipping)
    assert set(tasks) == {'sunny'}
    # overcast frames take over: the window held sunny 3, curbs 2, overcast 1; after one more
    # overcast 2 each (a tie: sunny stays), after two overcast leads
    tasks = run(['overcast'] * 6)
    assert tasks == ['sunny'] + ['overcast'] * 5
    # a tie (3 curbs, 3 overcast in the window) keeps the reported task
    assert run(['curbs'] * 3) == ['overcast'] * 3


def test_going_stale_forgets_the_task_guesses():
    policy = AlarmPolicy(cfg(task_window_frames=10, stale_after=1.0))
    feed(policy, [0.1] * 10, task='sunny')
    status, _ = policy.update(5.0, None, model_version=V)
    assert status.level == STALE and status.task == '' and 'task' not in dict(status.key_values())
    status, _ = policy.update(5.1, 0.1, task_guess='overcast', model_version=V)
    assert status.level == OK and status.task == 'overcast'


def test_key_values_are_what_an_admin_acts_on():
    policy = AlarmPolicy(cfg())
    stale, _ = policy.update(1_764_652_506.25, None, model_version=None, no_model='none given')
    assert stale.key_values() == [('level', 'STALE'), ('since', '2025-12-02T05:15:06.250Z')]
    ok, _ = policy.update(1_764_652_507.0, 0.25, task_guess='sunny', model_version=V)
    assert ok.key_values() == [
        ('level', 'OK'),
        ('task', 'sunny'),
        ('score', '0.250'),
        ('threshold', '1.000'),
        ('since', '2025-12-02T05:15:07.000Z'),
        ('model_version', V),
    ]


@pytest.mark.parametrize(
    'kw',
    [
        {'ema_alpha': 0.0},
        {'exit_ratio': 1.5},
        {'warn_enter_frames': 0},
        {'error_enter_frames': 2, 'warn_enter_frames': 3},
        {'error_enter_frames': None, 'error_enter_seconds': None},
        {'error_enter_seconds': -1.0},
        {'stale_after': 0.0},
        {'task_window_frames': 0},
    ],
)
def test_config_rejects_bad_values(kw):
    with pytest.raises(ConfigError):
        AlarmConfig(**kw)
