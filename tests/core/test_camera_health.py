"""Camera health on simulator frames: every task's drive stays OK (night and snow included), and
the injected camera faults (black, saturated, frozen, half covered, smeared, stalled stream, stamp
jump) raise the camera status, WARN first and ERROR when they last; in the pipeline a fault frame
leaves the unseen alarm as it was and is never collected. Times are given, never waited for."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from robo_lifelong.errors import ConfigError
from robo_lifelong.models.watch import ModelSlot
from robo_lifelong.perception.alarm_policy import AlarmLevel
from robo_lifelong.perception.camera_health import CameraHealth, CameraHealthConfig, Fault
from robo_lifelong.perception.collection import CollectionConfig
from robo_lifelong.perception.pipeline import Pipeline, PipelineConfig
from robo_lifelong.perception.sample_writer import SampleWriter
from robo_lifelong.perception.terrain import Gait
from robo_lifelong.sim import camera_faults
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.route import Route, parse_schedule
from robo_lifelong.sim.tasks import TASKS
from robo_lifelong.sim.world import Frame
from robo_lifelong.transfer.spool import Spool
from tests.core.test_pipeline import ALARM, image, package, slot  # noqa: F401 (fixtures)

CAMERA = CameraModel(212, 120)
RATE = 15.0
T0 = 1_700_000_000.0  # stamps and clock in seconds since the epoch, as a robot has them


@cache
def drive(task: str, n: int = 12) -> tuple[Frame, ...]:
    """``n`` consecutive camera-rate frames of a drive through ``task``."""
    route = Route(parse_schedule(f'{task}:100'), 0, CAMERA)
    return tuple(route.frame_at(i / RATE) for i in range(n))


def feed(health: CameraHealth, frames, start: int = 0) -> list:
    """Check ``frames`` (RGB arrays) at camera rate from frame index ``start``."""
    verdicts = []
    for i, rgb in enumerate(frames, start):
        t = T0 + i / RATE
        verdicts.append(health.check(rgb, t, t))
    return verdicts


@pytest.mark.parametrize('task', sorted(TASKS))
def test_every_task_drive_is_a_healthy_camera(task: str) -> None:
    health = CameraHealth(source='/cam')
    verdicts = feed(health, [f.rgb for f in drive(task)])
    assert [v.fault for v in verdicts] == [None] * len(verdicts)
    status = health.status()
    assert status.level == AlarmLevel.OK and status.fault is None
    assert status.message == 'camera /cam OK'
    assert 'fault_frames' not in dict(status.key_values())  # none: left out


@pytest.mark.parametrize(
    ('fault', 'expected'),
    [
        ('black', {Fault.DARK}),
        ('saturated', {Fault.SATURATED}),
        ('smeared', {Fault.SMEARED}),
        ('half_covered', {Fault.BLOCKED, Fault.SMEARED}),
    ],
)
@pytest.mark.parametrize('task', ['sunny', 'night', 'snow'])
def test_image_faults_raise_warn_then_error_and_recover(task, fault, expected) -> None:
    frames = [f.rgb for f in drive(task)]
    rng = np.random.default_rng(7)
    inject = camera_faults.IMAGE_FAULTS[fault]
    health = CameraHealth(CameraHealthConfig(error_after_s=0.3, ok_frames=3))
    feed(health, frames[:2])
    bad = feed(health, [inject(rgb, task, rng) for rgb in frames[2:8]], start=2)
    # a cover is confirmed over blocked_frames (4) frames: suspect, and held, before
    confirmed = [v for v in bad if v.fault is not None]
    assert len(confirmed) >= len(bad) - 3 and all(v.held for v in bad), bad
    assert {v.fault for v in confirmed} <= expected and all(v.detail for v in confirmed)
    assert bad[-1].fault in expected
    status = health.status()
    # 6 frames at 15 Hz: 0.33 s of fault, past error_after_s
    assert status.level == AlarmLevel.ERROR and status.fault in expected
    assert status.message.startswith('camera fault on camera: ')
    good = feed(health, frames[8:11], start=8)
    assert [v.fault for v in good] == [None] * 3
    assert health.status().level == AlarmLevel.OK


@pytest.mark.parametrize('side', list(camera_faults.Side))
def test_a_cover_from_any_side_is_a_fault(side: camera_faults.Side) -> None:
    rng = np.random.default_rng(3)
    health = CameraHealth()
    covered = [camera_faults.covered(f.rgb, 'sunny', rng, side) for f in drive('sunny', 4)]
    verdicts = feed(health, covered)
    assert all(v.held for v in verdicts), (side, verdicts)
    assert verdicts[-1].fault in (Fault.BLOCKED, Fault.SMEARED), (side, verdicts)
    assert health.status().level == AlarmLevel.WARN


def _flat_view(frame: Frame, seed: int) -> np.ndarray:
    """``frame`` with its left half one even colour plus sensor-like noise: a cover, or a plain
    wall close by (one frame cannot tell them apart)."""
    rgb = frame.rgb.copy()
    noise = np.random.default_rng(seed).normal(0, 2, rgb.shape)
    flat = np.clip(40 + noise, 0, 255).astype(np.uint8)
    rgb[:, : rgb.shape[1] // 2] = flat[:, : rgb.shape[1] // 2]
    return rgb


def test_a_flat_view_is_suspect_until_it_stays_for_blocked_frames() -> None:
    frames = drive('sunny')
    health = CameraHealth(CameraHealthConfig(blocked_frames=3, ok_frames=2))
    feed(health, [f.rgb for f in frames[:2]])
    # a wall going by: two flat frames are held back, the camera stays OK
    passing = feed(health, [_flat_view(f, i) for i, f in enumerate(frames[2:4])], start=2)
    assert [(v.fault, v.suspect) for v in passing] == [(None, Fault.BLOCKED)] * 2
    assert all(v.held and not v.detail for v in passing)
    assert [v.fault for v in feed(health, [frames[4].rgb], start=4)] == [None]
    assert health.status().level == AlarmLevel.OK and health.faults == {}
    # a cover stays: the third flat frame in a row is the fault, dated from the first
    staying = feed(health, [_flat_view(f, i) for i, f in enumerate(frames[5:8], 5)], start=5)
    assert [v.fault for v in staying] == [None, None, Fault.BLOCKED]
    assert 'for 3 frames' in staying[-1].detail
    status = health.status()
    assert status.level == AlarmLevel.WARN and status.fault is Fault.BLOCKED
    assert status.since == T0 + 7 / RATE and 'for 0.1 s' in status.message  # 5 -> 7: 0.13 s
    # once blocked, a flat frame after a healthy one goes on as the fault at once
    feed(health, [frames[8].rgb], start=8)
    assert feed(health, [_flat_view(frames[9], 9)], start=9)[0].fault is Fault.BLOCKED
    assert dict(health.status().key_values())['fault_frames'] == 'blocked=2'


def test_the_issue_s_all_black_frames_are_dark() -> None:
    health = CameraHealth()
    black = np.zeros((CAMERA.height, CAMERA.width, 3), np.uint8)
    verdicts = feed(health, [black] * 30)
    assert {v.fault for v in verdicts} == {Fault.DARK}  # dark is named before frozen
    assert health.status().level == AlarmLevel.WARN  # 29 frame intervals: 1.93 s
    health.check(black, T0 + 32 / RATE, T0 + 32 / RATE)
    assert health.status().level == AlarmLevel.ERROR  # past error_after_s = 2 s
    assert 'dark' in health.status().message


def test_a_resent_frame_is_frozen_and_a_new_exposure_is_not() -> None:
    frames = drive('overcast')
    health = CameraHealth()
    verdicts = feed(health, [frames[0].rgb] * 4)
    assert [v.fault for v in verdicts] == [None, Fault.FROZEN, Fault.FROZEN, Fault.FROZEN]
    assert health.status().level == AlarmLevel.WARN
    # the same pose with new sensor noise: what a robot standing still sees
    still = Route(parse_schedule('overcast:100'), 0, CAMERA).world.render(
        frames[0].pose, 'overcast', noise_seed=99
    )
    assert health.check(still.rgb, T0 + 1.0, T0 + 1.0).fault is None


def test_stamp_jumps_either_way_are_faults() -> None:
    frames = [f.rgb for f in drive('sunny', 4)]
    health = CameraHealth()
    health.check(frames[0], T0, T0)
    ahead = health.check(frames[1], T0 + 5.0, T0 + 0.07)
    assert ahead.fault is Fault.STAMP_JUMP and '+4.93 s' in ahead.detail
    back = health.check(frames[2], T0 - 3.0, T0 + 0.13)
    assert back.fault is Fault.STAMP_JUMP and '-8.06 s' in back.detail
    # steady again from the new time base
    assert health.check(frames[3], T0 - 2.93, T0 + 0.2).fault is None
    assert health.status().level == AlarmLevel.WARN  # recovering: ok_frames not reached


def test_a_stalled_stream_warns_then_errors_and_frames_bring_it_back() -> None:
    frames = [f.rgb for f in drive('sunny', 8)]
    health = CameraHealth(CameraHealthConfig(stall_s=0.5, error_after_s=2.0, ok_frames=3))
    assert health.tick(T0)[0].level == AlarmLevel.STALE  # no frames yet: not a stall
    feed(health, frames[:2])
    last = T0 + 1 / RATE
    status, changed = health.tick(last + 0.4)
    assert status.level == AlarmLevel.OK and not changed
    status, changed = health.tick(last + 0.6)
    assert status.level == AlarmLevel.WARN and changed and status.fault is Fault.STALLED
    assert 'no frame for 0.6 s' in status.message
    status, _ = health.tick(last + 2.5)
    assert status.level == AlarmLevel.ERROR and status.since == last + 2.5
    t = last + 3.0
    for rgb in frames[2:5]:
        assert health.check(rgb, t, t).fault is None
        t += 1 / RATE
    assert health.status().level == AlarmLevel.OK
    assert dict(health.status().key_values())['fault_frames'] == 'stalled=1'


@pytest.mark.parametrize(
    'bad',
    [
        {'saturated_fraction': 0.0},
        {'blocked_fraction': 1.5},
        {'stall_s': 0.0},
        {'error_after_s': -1.0},
        {'dark_level': -1.0},
        {'ok_frames': 0},
        {'blocked_frames': 0},
    ],
)
def test_bad_settings_are_refused_with_the_name(bad: dict) -> None:
    (name,) = bad
    with pytest.raises(ConfigError, match=name):
        CameraHealthConfig(**bad)


@pytest.mark.cloud  # the calibrated package is fitted by robo_lifelong_cloud
def test_fault_frames_hold_the_unseen_alarm_and_are_never_collected(
    slot: ModelSlot,  # noqa: F811 (the fixture)
    tmp_path,
) -> None:
    # every healthy frame is a collection candidate: only the camera check can keep one out
    config = PipelineConfig(
        robot_id='dog1',
        alarm=ALARM,
        collection=CollectionConfig(min_interval_s=0.0, duplicate_distance=0.0, min_score=-1e9),
        camera=CameraHealthConfig(error_after_s=0.3),
    )
    rng = np.random.default_rng(11)
    with Spool(tmp_path / 'spool', 100_000_000, 1000) as spool:
        pipe = Pipeline(config, slot, SampleWriter(spool, 'dog1', threaded=False), '/cam')
        frames = [f.rgb for f in drive('sunny', 12)]
        t = T0
        for rgb in frames[:3]:
            before = pipe.process(image(rgb), None, stamp=t).result
            t += 1 / RATE
        assert before.camera.fault is None and before.collected is not None
        held = before.alarm
        saturated = camera_faults.saturated(frames[4], 'sunny', rng)
        faults = [
            camera_faults.black(frames[3], 'sunny', rng),
            saturated,
            saturated.copy(),  # frozen: the last frame again
            camera_faults.covered(frames[5], 'sunny', rng, camera_faults.Side.LEFT),
            camera_faults.smeared(frames[6], 'sunny', rng),
        ]
        for rgb in faults:  # 5 frames at 15 Hz: 0.33 s, within alarm stale_after
            r = pipe.process(image(rgb), None, stamp=t).result
            t += 1 / RATE
            assert r.camera.held and r.collected is None
            assert (r.alarm.level, r.alarm.score) == (held.level, held.score)
            assert not r.alarm_changed
            assert r.gait.gait == Gait.STOP  # no terrain from a blind camera
            assert r.labels.shape == rgb.shape[:2]  # still labelled and published
        r = pipe.process(image(frames[7]), None, stamp=t + 5.0, t=t).result  # stamp jump
        assert r.camera.fault is Fault.STAMP_JUMP and r.collected is None
        assert r.alarm.score == held.score
        camera = pipe.camera.status()
        assert camera.level == AlarmLevel.ERROR and camera.fault is Fault.STAMP_JUMP
        assert camera.message.startswith('camera fault on /cam: stamp jumped')
        assert all(s.spooled for s in r.samples)
        assert len(spool.list()) == 3  # the healthy frames only


@pytest.mark.cloud  # the calibrated package is fitted by robo_lifelong_cloud
def test_the_pipeline_tick_reports_a_stalled_camera(slot: ModelSlot) -> None:  # noqa: F811
    pipe = Pipeline(PipelineConfig(alarm=ALARM), slot, None, '/cam')
    pipe.process(image(drive('night')[0].rgb), None, stamp=T0)
    status, _, _ = pipe.tick(T0 + 0.8)
    assert status.level != AlarmLevel.STALE  # the alarm's own stale_after is 1 s
    camera = pipe.camera.status()
    assert camera.level == AlarmLevel.WARN and camera.fault is Fault.STALLED
