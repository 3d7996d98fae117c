"""Terrain skill on crafted label maps, and the gait advice state machine."""

import json

import numpy as np
import pytest

from robo_lifelong.errors import ConfigError, ImageConversionError
from robo_lifelong.perception.terrain import (
    Gait,
    GaitAdvisor,
    GaitConfig,
    Ground,
    Motion,
    Ramp,
    TerrainAnalyzer,
    TerrainConfig,
    TerrainResult,
)

ROAD, SIDEWALK, BUILDING, TERRAIN, CURB, RAMP = 0, 1, 2, 9, 19, 21
SIZES = [(1024, 2048), (480, 640), (240, 424)]


def ground(h, w, current, future, background=BUILDING):
    """Rows >= 0.8 H hold ``current``, rows in [0.66 H, 0.8 H) hold ``future``."""
    labels = np.full((h, w), background, np.uint8)
    labels[int(0.66 * h) :] = future
    labels[int(0.8 * h) :] = current
    return labels


@pytest.mark.parametrize('h,w', SIZES)
def test_curb_ahead_and_ground_classes(h, w):
    ta = TerrainAnalyzer()
    r = ta.analyze(ground(h, w, SIDEWALK, CURB))
    assert (r.current, r.future, r.ramp) == (Ground.SIDEWALK, Ground.CURB, Ramp.NO_RAMP)
    r = ta.analyze(ground(h, w, ROAD, SIDEWALK))
    assert (r.current, r.future) == (Ground.ROAD, Ground.SIDEWALK)
    r = ta.analyze(ground(h, w, TERRAIN, ROAD))
    assert (r.current, r.future) == (Ground.OTHER, Ground.ROAD)
    # the sky and buildings above the regions do not count
    r = ta.analyze(ground(h, w, SIDEWALK, SIDEWALK, background=CURB))
    assert (r.current, r.future) == (Ground.SIDEWALK, Ground.SIDEWALK)


def test_curb_share_threshold_beats_the_majority():
    rng = np.random.default_rng(0)
    h, w = 480, 640
    labels = ground(h, w, ROAD, ROAD)
    bottom = labels[int(0.8 * h) :]
    u = rng.random(bottom.shape)
    bottom[u < 0.35] = SIDEWALK
    bottom[u < 0.25] = CURB  # 25 % curb, 10 % sidewalk, 65 % road
    r = TerrainAnalyzer().analyze(labels)
    assert r.current == Ground.CURB and r.future == Ground.ROAD
    assert r.current_mix['road'] == pytest.approx(0.65, abs=0.02)
    assert r.current_mix['curb'] == pytest.approx(0.25, abs=0.02)
    assert list(r.current_mix)[0] == 'road'  # most frequent first
    bottom[u < 0.25] = SIDEWALK
    bottom[u < 0.15] = CURB  # 15 % curb: below the 20 % share
    assert TerrainAnalyzer().analyze(labels).current == Ground.ROAD


def test_sidewalk_majority():
    labels = ground(240, 424, SIDEWALK, SIDEWALK)
    labels[-20:, :100] = ROAD
    r = TerrainAnalyzer().analyze(labels)
    assert r.current == Ground.SIDEWALK and 0.0 < r.current_mix['road'] < 0.5


def ramp_map(h, w, x0, x1, y0=0.66, y1=1.0, density=1.0, seed=0):
    labels = ground(h, w, SIDEWALK, SIDEWALK)
    region = labels[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)]
    rng = np.random.default_rng(seed)
    region[rng.random(region.shape) < density] = RAMP
    return labels


@pytest.mark.parametrize('h,w', SIZES)
def test_ramp_locations(h, w):
    ta = TerrainAnalyzer()
    assert ta.analyze(ramp_map(h, w, 0.25, 0.75)).ramp == Ramp.SMALL_TRAPEZOID
    assert ta.analyze(ramp_map(h, w, 0.0, 0.3)).ramp == Ramp.BOTTOM_LEFT
    assert ta.analyze(ramp_map(h, w, 0.0, 0.35, y1=0.79)).ramp == Ramp.UPPER_LEFT
    assert ta.analyze(ramp_map(h, w, 0.0, 0.33, density=0.3)).ramp == Ramp.CENTER_LEFT
    assert ta.analyze(ramp_map(h, w, 0.7, 1.0)).ramp == Ramp.BOTTOM_RIGHT
    assert ta.analyze(ramp_map(h, w, 0.65, 1.0, y1=0.79)).ramp == Ramp.UPPER_RIGHT
    assert ta.analyze(ramp_map(h, w, 0.67, 1.0, density=0.3)).ramp == Ramp.CENTER_RIGHT
    assert ta.analyze(ground(h, w, SIDEWALK, SIDEWALK)).ramp == Ramp.NO_RAMP
    # too sparse everywhere: no test passes
    assert ta.analyze(ramp_map(h, w, 0.0, 1.0, density=0.1)).ramp == Ramp.NO_RAMP


def test_ramp_order_and_switch():
    h, w = 480, 640
    both = ramp_map(h, w, 0.0, 0.75)  # covers the small trapezoid and the left side
    assert TerrainAnalyzer().analyze(both).ramp == Ramp.SMALL_TRAPEZOID
    off = TerrainAnalyzer(TerrainConfig(ramp_detection=False))
    assert off.analyze(both).ramp == Ramp.NO_RAMP


def test_dense_centre_ramp_counts_via_the_union():
    # 80 % of the small trapezoid: neither part above 0.9, the union above 0.7
    labels = ramp_map(480, 640, 0.2, 0.8, density=0.8)
    assert TerrainAnalyzer().analyze(labels).ramp == Ramp.SMALL_TRAPEZOID


def test_masks_are_cached_per_size_and_bounded():
    ta = TerrainAnalyzer(TerrainConfig(cached_sizes=2))
    for h, w in [(100, 200), (120, 160), (100, 200), (60, 80)]:
        ta.analyze(ground(h, w, ROAD, ROAD))
    assert list(ta._masks) == [(100, 200), (60, 80)]


def test_tiny_and_bad_label_maps():
    r = TerrainAnalyzer().analyze(np.zeros((2, 2), np.uint8))
    assert r.current in tuple(Ground) and r.ramp == Ramp.NO_RAMP
    with pytest.raises(ImageConversionError):
        TerrainAnalyzer().analyze(np.zeros((10, 10), np.int32))
    with pytest.raises(ImageConversionError):
        TerrainAnalyzer().analyze(np.zeros((10, 10, 3), np.uint8))


def test_to_json_uses_sedna_keys():
    r = TerrainAnalyzer().analyze(ground(240, 424, ROAD, CURB))
    d = json.loads(json.dumps(r.to_json()))
    assert d['curr'] == 'road' and d['future'] == 'curb' and d['ramp'] == 'no_ramp'
    assert d['current_mix'] == {'road': 1.0}
    # the row the two regions share belongs to the future one
    assert list(d['future_mix']) == ['curb', 'road'] and d['future_mix']['curb'] > 0.9


# ---------------------------------------------------------------------------------------------
# Gait

DT = 0.125  # an exact binary fraction keeps the danger arithmetic exact


def terrain(current, future, ramp=Ramp.NO_RAMP):
    return TerrainResult(current, future, ramp, {}, {})


CLEAR = terrain(Ground.SIDEWALK, Ground.SIDEWALK)
CURB_AHEAD = terrain(Ground.SIDEWALK, Ground.CURB)
EDGE = terrain(Ground.ROAD, Ground.SIDEWALK)


def run(advisor, items, t0=0.0, unseen=False):
    out = []
    t = t0
    for item in items:
        out.append(advisor.update(t, item, unseen=unseen))
        t += DT
    return out, t


def test_clear_ground_trots():
    adv = GaitAdvisor()
    out, _ = run(adv, [CLEAR] * 20)
    assert {a.gait for a, _ in out} == {Gait.TROT} and adv.danger == 0.0
    assert {a.motion for a, _ in out} == {Motion.FORWARD}


@pytest.mark.parametrize('risk', [CURB_AHEAD, EDGE, terrain(Ground.CURB, Ground.CURB)])
def test_danger_accumulates_to_up_stair(risk):
    adv = GaitAdvisor(GaitConfig(up_stair_hold_s=0.0))
    out, t = run(adv, [risk] * 12)
    gaits = [a.gait for a, _ in out]
    # frame i has danger i * DT; up-stair once it exceeds 1
    assert gaits.index(Gait.UP_STAIR) == 9 and gaits[:9] == [Gait.TROT] * 9
    assert [changed for _, changed in out].count(True) == 1
    assert out[-1][0].danger == pytest.approx(11 * DT)
    # clear ground: the danger falls twice as fast, trot once it reaches 0
    out, _ = run(adv, [CLEAR] * 8, t0=t)
    gaits = [a.gait for a, _ in out]
    assert gaits[:5] == [Gait.UP_STAIR] * 5 and gaits[5] == Gait.TROT  # 1.375 - 5 * 0.25 < 0 -> 0


def test_danger_is_capped_and_gaps_credit_one_step():
    adv = GaitAdvisor(GaitConfig(max_danger=2.0, max_step_s=0.5))
    run(adv, [CURB_AHEAD] * 40)
    assert adv.danger == 2.0
    adv2 = GaitAdvisor(GaitConfig(max_step_s=0.5))
    adv2.update(0.0, CURB_AHEAD, unseen=False)
    advice, _ = adv2.update(10.0, CURB_AHEAD, unseen=False)
    assert advice.danger == 0.5


def test_up_stair_is_held_after_switching():
    adv = GaitAdvisor(GaitConfig(up_stair_hold_s=7.0))
    out, t = run(adv, [CURB_AHEAD] * 10)  # up-stair at frame 9, t = 1.125
    assert out[-1][0].gait == Gait.UP_STAIR
    out, _ = run(adv, [CLEAR] * 60, t0=t)  # 1.25 .. 8.625
    times = [t + i * DT for i in range(60)]
    first_trot = next(tt for (a, _), tt in zip(out, times, strict=True) if a.gait == Gait.TROT)
    assert first_trot == pytest.approx(9 * DT + 7.0)  # danger is 0 long before; the hold ends


def test_unseen_stops_then_resumes():
    adv = GaitAdvisor()
    run(adv, [CLEAR] * 3)
    advice, changed = adv.update(1.0, CLEAR, unseen=True)
    assert advice.gait == Gait.STOP and advice.motion == Motion.HALT and changed
    assert 'unseen' in advice.reason
    advice, changed = adv.update(1.1, None, unseen=False)
    assert advice.gait == Gait.STOP and not changed
    advice, changed = adv.update(1.2, CLEAR, unseen=False)  # danger 0: trot again at once
    assert advice.gait == Gait.TROT and changed


def test_stop_holds_while_the_danger_is_undecided():
    adv = GaitAdvisor()
    run(adv, [CURB_AHEAD] * 4)  # danger 0.375
    adv.update(0.5, CURB_AHEAD, unseen=True)
    advice, _ = adv.update(0.625, CLEAR, unseen=False)  # 0.375 - 0.25
    assert advice.gait == Gait.STOP and advice.motion == Motion.HALT
    advice, _ = adv.update(0.75, CLEAR, unseen=False)
    assert advice.gait == Gait.TROT and advice.motion == Motion.FORWARD


@pytest.mark.parametrize(
    'ramp,motion',
    [
        (Ramp.SMALL_TRAPEZOID, Motion.FORWARD),
        (Ramp.UPPER_LEFT, Motion.TURN_LEFT),
        (Ramp.CENTER_LEFT, Motion.TURN_LEFT),
        (Ramp.BOTTOM_LEFT, Motion.BACK_UP_TURN_LEFT),
        (Ramp.UPPER_RIGHT, Motion.TURN_RIGHT),
        (Ramp.CENTER_RIGHT, Motion.TURN_RIGHT),
        (Ramp.BOTTOM_RIGHT, Motion.BACK_UP_TURN_RIGHT),
    ],
)
def test_ramp_motion(ramp, motion):
    advice, _ = GaitAdvisor().update(0.0, terrain(Ground.SIDEWALK, Ground.SIDEWALK, ramp), False)
    assert advice.motion == motion
    assert advice.to_json() == {
        'gait': 'trot',
        'motion': motion.value,
        'danger': 0.0,
        'reason': 'current sidewalk, future sidewalk',
    }


@pytest.mark.parametrize(
    'cls,kw',
    [
        (TerrainConfig, {'curb_share': 1.5}),
        (TerrainConfig, {'side_ratios': (0.4, 2.0)}),
        (TerrainConfig, {'cached_sizes': 0}),
        (GaitConfig, {'up_stair_above': 20.0}),
        (GaitConfig, {'decay': 0.0}),
    ],
)
def test_configs_reject_bad_values(cls, kw):
    with pytest.raises(ConfigError):
        cls(**kw)
