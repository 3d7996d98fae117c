"""The per-frame core without ROS, on a hand-built ONNX model (tests/core/test_runtime.py) whose
unseen calibration is fitted on reddish "known" frames, so bluish frames are clearly unseen."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from robo_lifelong.models import package as mp
from robo_lifelong.models.runtime import SegmentationRuntime
from robo_lifelong.models.unseen import UnseenResult
from robo_lifelong.models.watch import ModelSlot, load_model
from robo_lifelong.perception.alarm_policy import AlarmConfig, AlarmLevel
from robo_lifelong.perception.collection import CollectionConfig
from robo_lifelong.perception.frame_input import Issue
from robo_lifelong.perception.pipeline import Pipeline, PipelineConfig
from robo_lifelong.perception.sample_writer import SampleRequest, SampleWriter
from robo_lifelong.perception.terrain import Gait
from robo_lifelong.transfer.spool import Spool
from tests.core.test_image_conversion import PlainImage
from tests.core.test_runtime import manifest, tiny_onnx

H, W = 48, 64
ALARM = AlarmConfig(
    ema_alpha=1.0, warn_enter_frames=2, error_enter_frames=4, exit_frames=3, stale_after=1.0
)
CONFIG = PipelineConfig(
    robot_id='dog1',
    max_pixels=200 * 200,
    alarm=ALARM,
    collection=CollectionConfig(min_interval_s=0.5, duplicate_distance=0.0),
)


def frame(rng: np.random.Generator, colour: tuple[int, int, int]) -> np.ndarray:
    base = np.array(colour, np.float32)
    noise = rng.normal(0.0, 25.0, (H, W, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def known(rng: np.random.Generator) -> np.ndarray:
    return frame(rng, (200, 60, 60))


def unseen(rng: np.random.Generator) -> np.ndarray:
    return frame(rng, (40, 60, 220))


def image(pixels: np.ndarray, encoding: str = 'rgb8') -> PlainImage:
    """A message of ``pixels`` (native byte order, rows unpadded), as a camera sends it."""
    h, w = pixels.shape[:2]
    return PlainImage(h, w, encoding, 0, pixels.nbytes // h, pixels.tobytes())


@pytest.fixture(scope='module')
def package(tmp_path_factory: pytest.TempPathFactory) -> mp.ModelPackage:
    # the calibration is fitted by the cloud's code: the tests using this fixture are marked cloud
    from robo_lifelong_cloud.calibration import fit_calibration

    root = tmp_path_factory.mktemp('pipeline')
    plain = SegmentationRuntime(mp.write_package(root / 'plain', tiny_onnx(), manifest()))
    rng = np.random.default_rng(0)
    outs = [plain.infer(known(rng)) for _ in range(40)]
    calibration = fit_calibration(
        np.stack([o.embedding for o in outs]),
        ['sunny'] * 20 + ['overcast'] * 20,
        [o.logits for o in outs],
    )
    body = dict(manifest(calibration.to_json()), known_tasks=['sunny', 'overcast'])
    return mp.write_package(root / 'calibrated', tiny_onnx(), body)


@pytest.fixture
def slot(package: mp.ModelPackage) -> ModelSlot:
    s = ModelSlot()
    s.swap(load_model(package.path, threads=1))
    return s


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / 'spool', max_bytes=10_000_000, max_samples=100)


@pytest.mark.cloud  # the calibrated package is fitted by robo_lifelong_cloud
def test_known_frame_gives_labels_scores_terrain_and_gait(slot: ModelSlot) -> None:
    pipe = Pipeline(CONFIG, slot)
    rng = np.random.default_rng(1)
    r = pipe.process(image(known(rng)), None, stamp=1000.0).result
    assert r is not None
    assert r.labels.shape == (H, W) and r.labels.dtype == np.uint8
    assert r.model_version == slot.current().version
    assert r.unseen is not None and not r.unseen.is_unseen
    assert r.unseen.task_guess in ('sunny', 'overcast')
    assert r.threshold == 1.0
    assert r.alarm.level == AlarmLevel.OK and r.alarm.model_version == r.model_version
    assert r.terrain.to_json()['curr'] in ('road', 'sidewalk', 'curb', 'other')
    assert r.gait.gait != Gait.STOP
    assert r.collected is None and 0.0 < r.model_s <= r.infer_s <= r.total_s


@pytest.mark.cloud  # the calibrated package is fitted by robo_lifelong_cloud
def test_unseen_episode_warn_error_ok_with_collected_samples(
    slot: ModelSlot, spool: Spool
) -> None:
    writer = SampleWriter(spool, 'dog1', threaded=False)
    pipe = Pipeline(CONFIG, slot, writer)
    rng = np.random.default_rng(2)
    t, levels, collected, events = 1000.0, [], [], []
    depth = image(np.full((H, W), 1500, np.uint16), '16UC1')
    for pixels in [known(rng) for _ in range(3)] + [unseen(rng) for _ in range(8)]:
        r = pipe.process(image(pixels), depth, stamp=t).result
        levels.append(r.alarm.level)
        collected += [r.collected] if r.collected else []
        events += [s.event() for s in r.samples if s.spooled]
        t += 0.2
    assert levels[:3] == [AlarmLevel.OK] * 3
    assert AlarmLevel.WARN in levels and levels[-1] == AlarmLevel.ERROR
    assert levels.index(AlarmLevel.WARN) < levels.index(AlarmLevel.ERROR)
    assert r.gait.gait == Gait.STOP  # unseen scene: stop
    # rate limit 0.5 s at 5 Hz: every third unseen frame at most
    assert 2 <= len(collected) <= 3
    assert [e['id'] for e in events] == collected
    assert set(r.alarm.sample_ids) == set(collected)
    entry = spool.get(collected[0])
    meta = entry.meta()
    assert meta['robot_id'] == 'dog1' and meta['model_version'] == r.model_version
    assert meta['is_unseen'] and meta['score'] > 1.0 and meta['depth_unit'] == 'mm'
    assert set(entry.files()) == {'rgb.png', 'depth.png', 'anomaly.png'}
    for _ in range(6):
        r = pipe.process(image(known(rng)), None, stamp=t).result
        t += 0.2
    assert r.alarm.level == AlarmLevel.OK and r.alarm.sample_ids == ()


@pytest.mark.cloud  # the calibrated package is fitted by robo_lifelong_cloud
def test_spool_full_is_reported_and_not_attached(slot: ModelSlot, tmp_path: Path) -> None:
    tiny = Spool(tmp_path / 'small', max_bytes=100, max_samples=100)
    pipe = Pipeline(CONFIG, slot, SampleWriter(tiny, 'dog1', threaded=False))
    rng = np.random.default_rng(3)
    r = pipe.process(image(unseen(rng)), None, stamp=5.0).result
    assert r.collected is not None
    (outcome,) = r.samples
    assert outcome.full and not outcome.spooled and 'full' in outcome.error
    assert r.alarm.sample_ids == () and tiny.list() == []


def test_busy_writer_refuses_with_an_outcome(spool: Spool) -> None:
    writer = SampleWriter(spool, 'dog1', max_queue=1)
    try:
        rng = np.random.default_rng(4)
        verdict = UnseenResult(2.0, 'sunny', np.zeros((2, 3), np.float32), True)
        requests = [
            SampleRequest(f'dog1-x-{i}', unseen(rng), None, verdict, 1.0, 1.0, 'v1')
            for i in range(30)
        ]
        for req in requests:
            writer.submit(req)
        writer.close()
        outcomes = writer.drain()
        assert len(outcomes) == 30
        refused = [o for o in outcomes if not o.spooled]
        assert refused and all('busy' in o.error for o in refused)
        assert len(spool.list()) == 30 - len(refused)
    finally:
        writer.close()


def test_no_model_gives_no_result_and_a_stale_alarm() -> None:
    pipe = Pipeline(CONFIG, ModelSlot())
    outcome = pipe.process(image(np.zeros((H, W, 3), np.uint8)), None, stamp=1.0)
    assert outcome.result is None and outcome.issues == () and not outcome.rejected
    status, _, _ = pipe.tick(2.0)
    assert status.level == AlarmLevel.STALE and 'no model' in status.message


def test_a_model_without_calibration_is_stale_naming_it_not_the_camera(tmp_path: Path) -> None:
    slot = ModelSlot()
    slot.swap(load_model(mp.write_package(tmp_path / 'plain', tiny_onnx(), manifest()).path))
    pipe = Pipeline(CONFIG, slot, source='/cam/rgb')
    r = pipe.process(image(known(np.random.default_rng(2))), None, stamp=10.0).result
    assert r is not None and r.unseen is None and r.alarm.level == AlarmLevel.STALE
    assert r.alarm.message.startswith('no unseen-task verdict yet: model v1-')
    assert 'has no unseen calibration' in r.alarm.message and '/cam/rgb' not in r.alarm.message


@pytest.mark.cloud  # the calibrated package is fitted by robo_lifelong_cloud
def test_alarm_goes_stale_without_frames_and_recovers(slot: ModelSlot) -> None:
    pipe = Pipeline(CONFIG, slot)
    rng = np.random.default_rng(5)
    assert pipe.process(image(known(rng)), None, stamp=10.0).result.alarm.level == AlarmLevel.OK
    status, changed, _ = pipe.tick(12.0)
    assert status.level == AlarmLevel.STALE and changed
    assert pipe.process(image(known(rng)), None, stamp=12.5).result.alarm.level == AlarmLevel.OK


@pytest.mark.cloud  # the calibrated package is fitted by robo_lifelong_cloud
def test_any_frame_up_to_the_memory_bound_is_labelled_at_its_own_resolution(slot) -> None:
    assert PipelineConfig().max_pixels == 7680 * 4320  # 8K UHD by default
    pipe = Pipeline(PipelineConfig(robot_id='dog1', alarm=ALARM), slot)
    big = np.repeat(np.repeat(known(np.random.default_rng(2)), 60, axis=0), 60, axis=1)
    r = pipe.process(image(big[:2160, :3840]), None, stamp=1.0).result  # 4K, 45x the model input
    assert r is not None and r.labels.shape == (2160, 3840)
    assert not r.unseen.is_unseen  # resized by area: the frame still looks like itself
    # the bound is checked on the fields, before the data is read: none is needed here
    too_big = PlainImage(4321, 7680, 'rgb8', 0, 7680 * 3, b'')
    (issue,) = pipe.process(too_big, None, stamp=2.0).issues
    assert issue.kind == Issue.SIZE and 'max_pixels=33177600' in issue.message


@pytest.mark.cloud  # the calibrated package is fitted by robo_lifelong_cloud
def test_out_of_order_stamps_are_skipped_but_a_clock_reset_is_followed(slot) -> None:
    pipe = Pipeline(CONFIG, slot)
    rng = np.random.default_rng(6)
    pipe.process(image(known(rng)), None, stamp=100.0)
    for stamp in (100.0, 99.5):
        outcome = pipe.process(image(known(rng)), None, stamp=stamp)
        assert outcome.result is None and [i.kind for i in outcome.issues] == [Issue.ORDER]
    beyond_the_window = pipe.process(image(known(rng)), None, stamp=50.0)
    assert beyond_the_window.result is not None


@pytest.mark.cloud  # the calibrated package is fitted by robo_lifelong_cloud
def test_swap_takes_effect_at_the_next_frame(slot: ModelSlot, package, tmp_path: Path) -> None:
    pipe = Pipeline(CONFIG, slot)
    rng = np.random.default_rng(8)
    first = pipe.process(image(known(rng)), None, stamp=1.0).result.model_version
    v2 = mp.write_package(tmp_path / 'v2', tiny_onnx(), dict(package.manifest, version=2))
    slot.swap(load_model(v2.path, threads=1))
    second = pipe.process(image(known(rng)), None, stamp=2.0).result.model_version
    assert first != second and second.startswith('v2-')


@pytest.mark.cloud  # the calibrated package is fitted by robo_lifelong_cloud
def test_reconfigure_applies_new_alarm_settings(slot: ModelSlot) -> None:
    pipe = Pipeline(CONFIG, slot)
    stricter = AlarmConfig(warn_enter_frames=1, error_enter_frames=1, exit_frames=3)
    pipe.reconfigure(PipelineConfig(alarm=stricter))
    r = pipe.process(image(unseen(np.random.default_rng(9))), None, stamp=time.time()).result
    assert r.alarm.level == AlarmLevel.ERROR
