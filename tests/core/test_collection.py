"""Sample collection: candidate filter, rate limit, near-duplicate rejection, sample packing."""

import cv2
import numpy as np
import pytest

from robo_lifelong.errors import ConfigError, ImageConversionError
from robo_lifelong.models.unseen import UnseenResult
from robo_lifelong.perception.collection import (
    CollectionConfig,
    Collector,
    Reason,
    anomaly_to_png8,
    image_signature,
    make_sample,
)
from robo_lifelong.transfer.spool import Spool, make_sample_id

H, W = 60, 80


def scene(seed, noise_seed=None, gain=1.0):
    """A random blocky scene; the same seed gives the same layout, noise_seed adds sensor noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(6, 8, 3)).astype(np.float32)
    img = cv2.resize(small, (W, H), interpolation=cv2.INTER_NEAREST) * gain
    if noise_seed is not None:
        img += np.random.default_rng(noise_seed).normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def result(score=2.0, unseen=True, anomaly=None):
    amap = np.linspace(-1, 3, 12, dtype=np.float32).reshape(3, 4) if anomaly is None else anomaly
    return UnseenResult(
        score=score,
        task_guess='sunny',
        anomaly_map=amap,
        is_unseen=unseen,
        image_evidence=1.5,
        pixel_evidence=0.5,
        object_evidence=0.75,
    )


def test_only_unseen_frames_are_candidates():
    col = Collector(CollectionConfig(min_interval_s=0.0))
    d = col.consider(0.0, scene(1), result(0.3, unseen=False))
    assert not d.collect and d.reason is Reason.NOT_UNSEEN
    assert col.consider(0.1, scene(1), result()).collect


def test_min_score_overrides_the_unseen_flag():
    col = Collector(CollectionConfig(min_interval_s=0.0, min_score=0.5))
    assert col.consider(0.0, scene(1), result(0.6, unseen=False)).collect
    assert col.consider(1.0, scene(2), result(0.4, unseen=True)).reason is Reason.NOT_UNSEEN


def test_rate_limit():
    col = Collector(CollectionConfig(min_interval_s=1.0))
    decisions = [col.consider(t, scene(int(t * 10)), result()) for t in np.arange(0, 3.05, 0.1)]
    collected = [
        round(t, 1) for t, d in zip(np.arange(0, 3.05, 0.1), decisions, strict=True) if d.collect
    ]
    assert collected == [0.0, 1.0, 2.0, 3.0]
    assert {d.reason for d in decisions if not d.collect} == {Reason.RATE_LIMITED}


def test_clock_jumping_back_does_not_block_collection():
    col = Collector(CollectionConfig(min_interval_s=1.0))
    assert col.consider(100.0, scene(1), result()).collect
    assert col.consider(5.0, scene(2), result()).collect  # replay restarted


def test_near_identical_frames_rejected_different_accepted():
    col = Collector(CollectionConfig(min_interval_s=0.0))
    assert col.consider(0.0, scene(1, noise_seed=0), result()).collect
    d = col.consider(1.0, scene(1, noise_seed=1), result())  # same view, new sensor noise
    assert not d.collect and d.reason is Reason.DUPLICATE and d.distance < 0.1
    d = col.consider(2.0, scene(1, noise_seed=2, gain=0.6), result())  # darker, same view
    assert d.reason is Reason.DUPLICATE
    d = col.consider(3.0, scene(2, noise_seed=3), result())
    assert d.collect and d.distance > 0.1


def test_duplicate_check_spans_the_history_and_forgets_beyond_it():
    col = Collector(CollectionConfig(min_interval_s=0.0, history=3))
    for k in range(4):
        assert col.consider(k, scene(k), result()).collect
    assert col.consider(5, scene(2), result()).reason is Reason.DUPLICATE  # in the last 3
    assert col.consider(6, scene(0), result()).collect  # fell out of the history


def test_signature_is_normalised_and_rejects_bad_input():
    sig = image_signature(scene(3))
    assert sig.shape == (256,) and abs(float(sig.mean())) < 1e-5
    assert float(sig.std()) == pytest.approx(1.0, abs=1e-4)
    flat = image_signature(np.full((H, W, 3), 128, np.uint8))
    assert np.all(flat == 0)
    with pytest.raises(ImageConversionError):
        image_signature(np.zeros((H, W), np.uint8))
    with pytest.raises(ImageConversionError):
        image_signature(np.zeros((H, W, 3), np.float32))


def test_make_sample_files_decode_and_meta_is_complete(tmp_path):
    rgb = scene(5)
    depth = (np.arange(H * W, dtype=np.uint32).reshape(H, W) * 13 % 65536).astype(np.uint16)
    res = result()
    files, meta = make_sample(
        rgb, depth, res, stamp=1790000000.25, threshold=1.0, model_version='v3', robot_id='dog-1'
    )
    assert set(files) == {'rgb.png', 'depth.png', 'anomaly.png'}
    back = cv2.imdecode(np.frombuffer(files['rgb.png'], np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(cv2.cvtColor(back, cv2.COLOR_BGR2RGB), rgb)
    d = cv2.imdecode(np.frombuffer(files['depth.png'], np.uint8), cv2.IMREAD_UNCHANGED)
    assert d.dtype == np.uint16 and np.array_equal(d, depth)
    a = cv2.imdecode(np.frombuffer(files['anomaly.png'], np.uint8), cv2.IMREAD_UNCHANGED)
    assert a.dtype == np.uint8 and a.shape == (3, 4)
    decoded = meta['anomaly']['min'] + a / 255.0 * (
        meta['anomaly']['max'] - meta['anomaly']['min']
    )
    assert np.allclose(decoded, res.anomaly_map, atol=4.0 / 255)
    assert meta == {
        'stamp': 1790000000.25,
        'robot_id': 'dog-1',
        'model_version': 'v3',
        'score': 2.0,
        'threshold': 1.0,
        'is_unseen': True,
        'task_guess': 'sunny',
        'image_evidence': 1.5,
        'pixel_evidence': 0.5,
        'object_evidence': 0.75,
        'width': W,
        'height': H,
        'depth_unit': 'mm',
        'anomaly': {'width': 4, 'height': 3, 'min': -1.0, 'max': 3.0},
    }
    # and it goes into the spool as is
    sp = Spool(tmp_path, 10**9, 10)
    sid = make_sample_id('dog-1', meta['stamp'])
    sp.put(sid, files, meta)
    stored = sp.get(sid).meta()
    assert stored['score'] == 2.0 and set(stored['files']) == set(files)


def test_make_sample_without_depth_and_bad_depth():
    files, meta = make_sample(
        scene(1), None, result(), stamp=0.0, threshold=1.0, model_version='v', robot_id='r'
    )
    assert 'depth.png' not in files and meta['depth_unit'] is None
    with pytest.raises(ImageConversionError, match='depth'):
        make_sample(
            scene(1),
            np.zeros((H, W), np.float32),
            result(),
            stamp=0.0,
            threshold=1.0,
            model_version='v',
            robot_id='r',
        )
    with pytest.raises(ImageConversionError, match='depth'):
        make_sample(
            scene(1),
            np.zeros((H // 2, W), np.uint16),
            result(),
            stamp=0.0,
            threshold=1.0,
            model_version='v',
            robot_id='r',
        )


def test_anomaly_png_handles_constant_and_non_finite_maps():
    img, lo, hi = anomaly_to_png8(np.full((2, 2), 0.7, np.float32))
    assert np.all(img == 0) and lo == hi == pytest.approx(0.7)
    img, lo, hi = anomaly_to_png8(np.array([[np.nan, 0.0], [1.0, np.inf]], np.float32))
    assert (lo, hi) == (0.0, 1.0) and img.tolist() == [[0, 0], [255, 0]]


@pytest.mark.parametrize(
    'kw',
    [
        {'min_interval_s': -1},
        {'history': 0},
        {'duplicate_distance': -0.1},
        {'png_compression': 10},
    ],
)
def test_config_rejects_bad_values(kw):
    with pytest.raises(ConfigError):
        CollectionConfig(**kw)
