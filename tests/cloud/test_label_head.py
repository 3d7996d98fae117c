"""The exported graph's label head (``label_head.py``) on its own: its labels are the argmax of
the bilinearly resized logits at sizes above, equal to and below the logits', on both of its
paths (two candidate classes, and every class where a third one competes), and a tie goes to the
lowest class id as ArgMax's does. On a trained model's frames: ``tests/core/test_runtime.py``."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from robo_lifelong_cloud.label_head import add_label_head

K, H0, W0 = 6, 6, 10  # classes, logit rows and columns
PATHS = 'label_head/three_survive'  # (N, h, W) bool: the band columns given every class


@pytest.fixture(scope='module')
def head() -> ort.InferenceSession:
    graph = helper.make_graph(
        [],
        'head',
        [
            helper.make_tensor_value_info('logits', TensorProto.FLOAT, ['n', K, H0, W0]),
            helper.make_tensor_value_info('size', TensorProto.INT64, [2]),
        ],
        [
            helper.make_tensor_value_info('labels', TensorProto.UINT8, ['n', 'H', 'W']),
            helper.make_tensor_value_info(PATHS, TensorProto.BOOL, ['n', H0, 'W']),
        ],
    )
    add_label_head(graph, 'logits', 'size', 'labels')
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])


def bilinear(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """(K, h, w) logits resized bilinearly (half-pixel centres) by OpenCV: (K, H, W)."""
    return np.stack(
        [cv2.resize(c, (width, height), interpolation=cv2.INTER_LINEAR) for c in logits]
    )


def smooth_logits(rng: np.random.Generator, batch: int) -> np.ndarray:
    """Logits of a few regions: mostly two classes meet, in places three."""
    rows, cols = np.mgrid[0:H0, 0:W0]
    centres = rng.uniform((0, 0), (H0, W0), (K, 2))
    distance = np.hypot(
        rows[None] - centres[:, 0, None, None], cols[None] - centres[:, 1, None, None]
    )
    logits = -distance[None] + rng.normal(0, 0.3, (batch, K, H0, W0))
    return logits.astype(np.float32)


@pytest.mark.parametrize('size', [(48, 80), (6, 10), (50, 70), (4, 7), (1, 1), (13, 200)])
@pytest.mark.parametrize('kind', ['smooth', 'noise'])
def test_labels_are_the_argmax_of_the_bilinear_logits(head, size, kind) -> None:
    rng = np.random.default_rng(len(kind) * 100 + size[0])
    logits = (
        smooth_logits(rng, 2)
        if kind == 'smooth'
        else rng.normal(0, 2, (2, K, H0, W0)).astype(np.float32)
    )
    labels, three = head.run(['labels', PATHS], {'logits': logits, 'size': np.array(size)})
    assert labels.shape == (2, *size) and labels.dtype == np.uint8
    if size[0] >= 2 * H0:  # bands hold output rows: both paths are taken
        assert three.any() and not three.all()
    for b in range(2):
        up = bilinear(logits[b], *size)
        top2 = np.sort(up, axis=0)[-2:]
        clear = top2[1] - top2[0] > 1e-4  # no rounding can flip these pixels' argmax
        assert clear.mean() > 0.98
        np.testing.assert_array_equal(labels[b][clear], np.argmax(up, axis=0)[clear])


def test_a_tie_goes_to_the_lowest_class_id(head) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1, (1, K, H0, W0)).astype(np.float32)
    logits[0, :, 1:5, 1:5] = 0.25  # every class equal
    logits[0, 2, :, 6:] = logits[0, 4, :, 6:] = 9.0  # classes 2 and 4 equal, above the rest
    labels = head.run(['labels'], {'logits': logits, 'size': np.array([48, 80])})[0][0]
    assert set(np.unique(labels[16:24, 16:24])) == {0}
    assert set(np.unique(labels[:, 56:])) == {2}


def test_a_tie_between_the_two_candidates_goes_to_the_lower_id(head) -> None:
    """Class 4 leads logit row 2 by 1, class 2 leads row 3 by 3: a quarter of the way down
    (output row 5 at twice the size) they are exactly equal, and the lower id takes the pixel."""
    logits = np.full((1, K, H0, W0), -10.0, np.float32)
    logits[0, 2, 2], logits[0, 4, 2] = 8.0, 9.0
    logits[0, 2, 3], logits[0, 4, 3] = 9.0, 6.0
    labels, three = head.run(['labels', PATHS], {'logits': logits, 'size': np.array([12, 20])})
    assert not three[0, 2].any()  # decided by the two candidates, not by every class
    assert set(np.unique(labels[0, 4])) == {4}  # a = 0.75 past row 1 -> row 2: class 4
    assert set(np.unique(labels[0, 5])) == {2}  # a = 0.25 past row 2: the tie
    assert set(np.unique(labels[0, 6])) == {2}
