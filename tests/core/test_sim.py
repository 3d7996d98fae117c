"""Campus simulator: determinism, label validity, geometry, task statistics."""

import math

import numpy as np
import pytest

from robo_lifelong.errors import ConfigError
from robo_lifelong.labels import NUM_CLASSES, class_id
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.layout import STREET
from robo_lifelong.sim.route import Route, parse_schedule
from robo_lifelong.sim.tasks import KNOWN_TASKS, TASKS, UNSEEN_TASKS
from robo_lifelong.sim.world import CampusWorld, Pose

SMALL = CameraModel(212, 120)


@pytest.fixture(scope='module')
def world():
    return CampusWorld(seed=3, camera=SMALL)


@pytest.fixture(scope='module')
def frames(world):
    return {task: [world.random_frame(task, i) for i in range(12)] for task in TASKS}


def test_tasks_cover_known_and_unseen():
    assert len(KNOWN_TASKS) >= 3 and len(UNSEEN_TASKS) >= 3
    assert set(KNOWN_TASKS).isdisjoint(UNSEEN_TASKS)


def test_same_seed_same_frame_other_seed_other_frame(world):
    a = world.random_frame('sunny', 5)
    b = CampusWorld(seed=3, camera=SMALL).random_frame('sunny', 5)
    c = CampusWorld(seed=4, camera=SMALL).random_frame('sunny', 5)
    for name in ('rgb', 'depth_mm', 'labels'):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.labels, c.labels)


def test_frame_shapes_dtypes_and_label_ids(frames):
    for task, fs in frames.items():
        for f in fs:
            assert f.task == task
            assert f.rgb.shape == (SMALL.height, SMALL.width, 3) and f.rgb.dtype == np.uint8
            assert f.depth_mm.shape == f.labels.shape == (SMALL.height, SMALL.width)
            assert f.depth_mm.dtype == np.uint16 and f.labels.dtype == np.uint8
            assert f.labels.max() < NUM_CLASSES


def test_sky_has_no_depth_and_the_ground_does(frames):
    f = frames['sunny'][0]
    sky = f.labels == class_id('sky')
    assert sky.any() and (f.depth_mm[sky] == 0).all()
    road = f.labels == class_id('road')
    assert (f.depth_mm[road] > 0).mean() > 0.5


def test_road_depth_matches_the_ground_plane():
    """On a flat road, z-depth of row v is h / (sin p + cos p * (v - cy) / fy)."""
    cam = CameraModel(424, 240)
    world = CampusWorld(seed=1, camera=cam)
    f = world.render(Pose(x=5.0, y=-1.0, yaw=0.0), 'overcast', noise_seed=0)
    p = math.radians(cam.pitch_deg)
    rows = np.arange(cam.height, dtype=np.float64)[:, None] * np.ones((1, cam.width))
    expected = cam.mount_height / (math.sin(p) + math.cos(p) * (rows - cam.cy) / cam.fy)
    road = (f.labels == class_id('road')) & (f.depth_mm > 0) & (expected < 10) & (expected > 0)
    assert road.sum() > 2000
    rel = np.abs(f.depth_mm[road] / 1000.0 - expected[road]) / expected[road]
    assert np.median(rel) < 0.02
    # and ground depth grows towards the horizon, row by row
    medians = [np.median(f.depth_mm[v][road[v]]) for v in range(cam.height) if road[v].sum() > 20]
    assert len(medians) > 50 and all(np.diff(medians) <= 5)  # mm; rows go down the image


def test_tasks_differ_in_colour_statistics(frames):
    stats = {
        t: np.concatenate(
            [
                np.mean([f.rgb.reshape(-1, 3).mean(0) for f in fs], 0),
                np.mean([f.rgb.reshape(-1, 3).std(0) for f in fs], 0),
            ]
        )
        for t, fs in frames.items()
    }
    names = list(stats)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.abs(stats[a] - stats[b]).max() > 4.0, (a, b, stats[a], stats[b])


def _share_with(fs, name):
    return np.mean([(f.labels == class_id(name)).any() for f in fs])


def test_curbs_task_has_more_ramps_and_stairs(world):
    curbs = [world.random_frame('curbs', i) for i in range(30)]
    sunny = [world.random_frame('sunny', i) for i in range(30)]
    assert _share_with(curbs, 'ramp') > _share_with(sunny, 'ramp')
    assert _share_with(curbs, 'stairs') > _share_with(sunny, 'stairs')
    assert _share_with(curbs, 'curb') > 0.8


def test_new_classes_only_in_the_construction_task(frames):
    new = [class_id('barrier'), class_id('traffic_cone')]
    for task, fs in frames.items():
        seen = any(np.isin(f.labels, new).any() for f in fs)
        assert seen == (task == 'construction'), task


def test_camera_intrinsics_like_a_d435i():
    hd = CameraModel(1280, 720)
    assert hd.fx == pytest.approx(910, rel=0.05)
    assert hd.k[2] == pytest.approx(639.5) and len(hd.p) == 12
    with pytest.raises(ConfigError):
        CameraModel(4096, 2160)


def test_schedule_parsing_and_route_switching():
    schedule = parse_schedule('sunny:2, night:1,sunny:2')
    assert schedule == (('sunny', 2.0), ('night', 1.0), ('sunny', 2.0))
    route = Route(schedule, seed=0, camera=SMALL)
    assert [route.task_at(t) for t in (0.5, 2.5, 4.0, 5.5)] == ['sunny', 'night', 'sunny', 'sunny']
    a, b = route.frame_at(2.5), route.frame_at(2.5)
    assert a.task == 'night' and np.array_equal(a.rgb, b.rgb)
    for bad in ('', 'sunny', 'rain:3', 'sunny:-1', 'sunny:x'):
        with pytest.raises(ConfigError):
            parse_schedule(bad)


def test_route_stays_near_the_sidewalk():
    route = Route(parse_schedule('sunny:60'), camera=SMALL)
    ys = [route.pose_at(t).y for t in np.linspace(0, 60, 121)]
    assert min(ys) > STREET.road_half - 0.5 and max(ys) < STREET.sidewalk_outer
