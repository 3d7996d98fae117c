"""The robot runtime on a hand-built ONNX graph: shapes, full-resolution labels from the graph's
label head (no 8x8 blocks), normalisation, unseen scoring, and bad frames or models."""

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
    a region is its strongest colour channel; embedding = global average of the image; labels =
    argmax of the logits resized bilinearly to ``labels_size`` (the package contract's label
    head, written here in the plain (N, K, H, W) layout)."""
    nodes = [
        helper.make_node(
            'AveragePool', ['image'], ['pooled'], kernel_shape=[8, 8], strides=[8, 8]
        ),
        helper.make_node('Conv', ['pooled', 'w'], ['logits']),
        helper.make_node('GlobalAveragePool', ['image'], ['gap']),
        helper.make_node('Flatten', ['gap'], ['embedding']),
        helper.make_node('Shape', ['logits'], ['shape']),
        helper.make_node('Slice', ['shape', 'zero', 'two'], ['nk']),
        helper.make_node('Concat', ['nk', 'labels_size'], ['sizes'], axis=0),
        helper.make_node(
            'Resize',
            ['logits', '', '', 'sizes'],
            ['upsampled'],
            mode='linear',
            coordinate_transformation_mode='half_pixel',
        ),
        helper.make_node('ArgMax', ['upsampled'], ['argmax'], axis=1, keepdims=0),
        helper.make_node('Cast', ['argmax'], ['labels'], to=TensorProto.UINT8),
    ]
    w = helper.make_tensor('w', TensorProto.FLOAT, [K, 3, 1, 1], np.eye(3).ravel().tolist())
    zero = helper.make_tensor('zero', TensorProto.INT64, [1], [0])
    two = helper.make_tensor('two', TensorProto.INT64, [1], [2])
    graph = helper.make_graph(
        nodes,
        'tiny',
        [
            helper.make_tensor_value_info('image', TensorProto.FLOAT, ['N', 3, H, W]),
            helper.make_tensor_value_info('labels_size', TensorProto.INT64, [2]),
        ],
        [
            helper.make_tensor_value_info('logits', TensorProto.FLOAT, ['N', K, 2, 3]),
            helper.make_tensor_value_info('embedding', TensorProto.FLOAT, ['N', 3]),
            helper.make_tensor_value_info('labels', TensorProto.UINT8, ['N', 'h', 'w']),
        ],
        [w, zero, two],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def manifest(unseen: dict | None = None, channels: int = 3) -> dict:
    return {
        'schema_version': mp.SCHEMA_VERSION,
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
        'outputs': {
            'logits': 'logits',
            'embedding': 'embedding',
            'labels': {'name': 'labels', 'size_input': 'labels_size'},
        },
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


def bilinear_argmax(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """argmax over classes of (K, h, w) logits resized bilinearly (half-pixel centres) in numpy."""
    up = np.stack([cv2.resize(c, (width, height), interpolation=cv2.INTER_LINEAR) for c in logits])
    return np.argmax(up, axis=0).astype(np.uint8)


def test_shapes_and_labels_at_the_frame_size(runtime: SegmentationRuntime) -> None:
    rgb = three_stripes(2 * H, 2 * W)
    result = runtime.infer(rgb)
    assert result.logits.shape == (K, H // STRIDE, W // STRIDE)
    assert result.embedding.shape == (3,)
    assert result.labels.shape == (2 * H, 2 * W) and result.labels.dtype == np.uint8
    low = np.argmax(result.logits, axis=0).astype(np.uint8)
    np.testing.assert_array_equal(low, [[0, 1, 2], [0, 1, 2]])
    np.testing.assert_array_equal(result.labels, bilinear_argmax(result.logits, 2 * H, 2 * W))
    assert result.unseen is None  # the package has no calibration


def test_a_diagonal_boundary_is_followed_inside_the_8x8_cells(tmp_path: Path) -> None:
    """Red above a diagonal, blue below: the labels change inside the model's 8x8 output cells
    (no blocks), and at full resolution they sit near the true diagonal."""
    h, w = 8 * H, 8 * W  # 128 x 192: each stride-8 cell of the model covers 64x64 frame pixels
    package = mp.write_package(tmp_path / 'pkg', tiny_onnx(), manifest())
    runtime = SegmentationRuntime(package)
    rows, cols = np.mgrid[0:h, 0:w]
    above = rows * w < cols * h  # the diagonal from top-left to bottom-right
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[above, 0] = 255
    rgb[~above, 2] = 255
    labels = runtime.infer(rgb).labels
    np.testing.assert_array_equal(labels, bilinear_argmax(runtime.infer(rgb).logits, h, w))
    cells = labels.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 64)
    mixed = np.count_nonzero(cells.min(axis=1) != cells.max(axis=1))
    assert mixed >= h // 8  # the boundary crosses at least one 8x8 cell per cell row
    truth = np.where(above, 0, 2)
    # nearest-neighbour upsampling of the 2x3 argmax puts whole 64x64 blocks on one side
    blocks = cv2.resize(
        np.argmax(runtime.infer(rgb).logits, axis=0).astype(np.uint8),
        (w, h),
        interpolation=cv2.INTER_NEAREST,
    )
    assert np.mean(labels != truth) < np.mean(blocks != truth)


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


@pytest.mark.parametrize('size', [(120, 212), (240, 424), (480, 640)])
def test_a_trained_package_labels_equal_the_argmax_of_bilinear_logits(
    tmp_path_factory: pytest.TempPathFactory, size: tuple[int, int]
) -> None:
    """The exported graph's label head (the cloud's ``export.py``) on simulator frames of three
    tasks, at the model's input size and at larger frame sizes: its labels are numpy/OpenCV's
    argmax of the bilinearly upsampled logits wherever the two best classes are not within
    rounding of each other (nearly everywhere)."""
    from robo_lifelong.sim.camera import CameraModel
    from robo_lifelong.sim.world import CampusWorld
    from tests.ros.model_fixture import cached_package

    package = cached_package(tmp_path_factory.getbasetemp() / 'perception-model')
    runtime = SegmentationRuntime(package)
    height, width = size
    world = CampusWorld(seed=5, camera=CameraModel(width, height))
    for i, task in enumerate(('sunny', 'overcast', 'curbs')):
        result = runtime.infer(world.random_frame(task, i).rgb)
        up = np.stack(
            [cv2.resize(c, (width, height), interpolation=cv2.INTER_LINEAR) for c in result.logits]
        )
        top2 = np.sort(up, axis=0)[-2:]
        clear = top2[1] - top2[0] > 1e-4
        assert clear.mean() > 0.99
        assert len(np.unique(result.labels)) >= 2  # boundaries to follow, not one class
        np.testing.assert_array_equal(result.labels[clear], np.argmax(up, axis=0)[clear])


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
