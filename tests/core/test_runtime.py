"""The robot runtime on a hand-built ONNX graph: shapes, low-res argmax + label upsampling,
normalisation, unseen scoring, and bad frames or models."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from robo_lifelong.errors import ImageConversionError, ModelPackageError
from robo_lifelong.labels import CLASSES
from robo_lifelong.models import package as mp
from robo_lifelong.models.runtime import SegmentationRuntime, preprocess
from robo_lifelong.models.unseen import UnseenResult

onnx = pytest.importorskip('onnx', reason='building the test graph needs the onnx package')
from onnx import TensorProto, helper  # noqa: E402

H, W, STRIDE, K = 16, 24, 8, 3


def tiny_onnx() -> bytes:
    """logits = 1x1 conv (identity) of the 8x8-average-pooled normalised image, so the class of
    a region is its strongest colour channel; embedding = global average of the image."""
    nodes = [
        helper.make_node(
            'AveragePool', ['image'], ['pooled'], kernel_shape=[8, 8], strides=[8, 8]
        ),
        helper.make_node('Conv', ['pooled', 'w'], ['logits']),
        helper.make_node('GlobalAveragePool', ['image'], ['gap']),
        helper.make_node('Flatten', ['gap'], ['embedding']),
    ]
    w = helper.make_tensor('w', TensorProto.FLOAT, [K, 3, 1, 1], np.eye(3).ravel().tolist())
    graph = helper.make_graph(
        nodes,
        'tiny',
        [helper.make_tensor_value_info('image', TensorProto.FLOAT, ['N', 3, H, W])],
        [
            helper.make_tensor_value_info('logits', TensorProto.FLOAT, ['N', K, 2, 3]),
            helper.make_tensor_value_info('embedding', TensorProto.FLOAT, ['N', 3]),
        ],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def manifest(unseen: dict | None = None, channels: int = 3) -> dict:
    return {
        'schema_version': 1,
        'version': 1,
        'parent_version': None,
        'created': '2026-11-27T01:00:00+00:00',
        'classes': [{'id': c.id, 'name': c.name, 'color': list(c.color)} for c in CLASSES[:K]],
        'input': {
            'name': 'image',
            'height': H,
            'width': W,
            'channels': channels,
            'mean': [0.5] * channels,
            'std': [0.5] * channels,
            'depth_scale': 1e-4,
        },
        'outputs': {'logits': 'logits', 'embedding': 'embedding'},
        'output_stride': STRIDE,
        'embedding_dim': 3,
        'known_tasks': ['sunny'],
        'unseen': unseen,
        'training': {'samples_per_task': {'sunny': 1}, 'epochs': 0},
        'metrics': {},
        'weights': None,
    }


@pytest.fixture
def runtime(tmp_path: Path) -> SegmentationRuntime:
    return SegmentationRuntime(mp.write_package(tmp_path / 'pkg', tiny_onnx(), manifest()))


def three_stripes(height: int, width: int) -> np.ndarray:
    """Red | green | blue vertical thirds: classes 0 | 1 | 2 under the tiny model."""
    rgb = np.zeros((height, width, 3), np.uint8)
    for c in range(3):
        rgb[:, c * width // 3 : (c + 1) * width // 3, c] = 255
    return rgb


def test_shapes_and_labels_upsampled_from_low_resolution(runtime: SegmentationRuntime) -> None:
    rgb = three_stripes(2 * H, 2 * W)
    result = runtime.infer(rgb)
    assert result.logits.shape == (K, H // STRIDE, W // STRIDE)
    assert result.embedding.shape == (3,)
    assert result.labels.shape == (2 * H, 2 * W) and result.labels.dtype == np.uint8
    low = np.argmax(result.logits, axis=0).astype(np.uint8)
    np.testing.assert_array_equal(low, [[0, 1, 2], [0, 1, 2]])
    expected = cv2.resize(low, (2 * W, 2 * H), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(result.labels, expected)
    assert result.unseen is None  # the package has no calibration


def test_frame_of_any_size_is_resized_to_the_model_input(runtime: SegmentationRuntime) -> None:
    result = runtime.infer(three_stripes(45, 90))
    assert result.labels.shape == (45, 90)
    np.testing.assert_array_equal(result.labels[:, 0], 0)
    np.testing.assert_array_equal(result.labels[:, -1], 2)


def test_preprocess_normalises_rgb_and_scales_depth() -> None:
    spec = manifest(channels=4)['input']
    rgb = np.full((H, W, 3), 255, np.uint8)
    depth = np.full((H, W), 10_000, np.uint16)  # 10 m -> 1.0
    x = preprocess(rgb, depth, spec)
    assert x.shape == (1, 4, H, W) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :3], 1.0)  # (1 - 0.5) / 0.5
    np.testing.assert_allclose(x[0, 3], 1.0)  # (1.0 - 0.5) / 0.5
    np.testing.assert_allclose(preprocess(rgb, None, spec)[0, 3], -1.0)  # no depth = 0 m


@pytest.mark.parametrize(
    ('rgb', 'depth', 'message'),
    [
        (np.zeros((H, W), np.uint8), None, r'\(H, W, 3\) uint8'),
        (np.zeros((H, W, 3), np.float32), None, r'\(H, W, 3\) uint8'),
        (np.zeros((H, W, 3), np.uint8), np.zeros((H + 1, W), np.uint16), 'depth size'),
    ],
)
def test_bad_frames_are_rejected(rgb: np.ndarray, depth, message: str) -> None:
    with pytest.raises(ImageConversionError, match=message):
        preprocess(rgb, depth, manifest(channels=4)['input'])


@pytest.mark.cloud  # the calibration is fitted by robo_lifelong_cloud
def test_unseen_score_when_the_package_is_calibrated(tmp_path: Path) -> None:
    from robo_lifelong_cloud.calibration import fit_calibration

    rng = np.random.default_rng(0)
    embeddings = rng.normal(0.0, 0.1, (12, 3)).astype(np.float32)
    logits = [rng.normal(0.0, 1.0, (K, 2, 3)).astype(np.float32) for _ in range(12)]
    calibration = fit_calibration(embeddings, ['sunny'] * 6 + ['overcast'] * 6, logits)
    package = mp.write_package(tmp_path / 'pkg', tiny_onnx(), manifest(calibration.to_json()))
    result = SegmentationRuntime(package).infer(three_stripes(H, W))
    assert isinstance(result.unseen, UnseenResult)
    assert result.unseen.anomaly_map.shape == (2, 3)
    assert result.unseen.task_guess in ('sunny', 'overcast')
    assert np.isfinite(result.unseen.score)


def test_model_onnxruntime_cannot_load(tmp_path: Path) -> None:
    package = mp.write_package(tmp_path / 'pkg', b'garbage', manifest())
    with pytest.raises(ModelPackageError, match='onnxruntime cannot load'):
        SegmentationRuntime(package)
