"""image_conversion (and nodes/images.py, the way back): round trips per encoding, padded rows,
big-endian buffers, bad input."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from robo_lifelong.errors import ImageConversionError
from robo_lifelong.io import image_conversion
from robo_lifelong.io.image_conversion import ENCODINGS, depth_to_mm, image_to_numpy
from robo_lifelong.nodes.images import numpy_to_image


@dataclass
class PlainImage:
    """The sensor_msgs/Image fields without ROS, as rosbags or a test would build them."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: Any


@pytest.fixture(autouse=True)
def _no_cv_bridge(monkeypatch: pytest.MonkeyPatch):
    """Tests use the numpy converter even where a ROS cv_bridge is installed."""
    monkeypatch.setitem(sys.modules, 'cv_bridge', None)
    image_conversion._cv_bridge.cache_clear()
    yield
    image_conversion._cv_bridge.cache_clear()


def _random(encoding: str, height: int = 5, width: int = 7, seed: int = 0) -> np.ndarray:
    fmt = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (height, width) + ((fmt.channels,) if fmt.channels > 1 else ())
    if fmt.dtype.kind == 'f':
        return rng.normal(size=shape).astype(fmt.dtype)
    return rng.integers(0, np.iinfo(fmt.dtype).max, size=shape, endpoint=True, dtype=fmt.dtype)


@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
def test_round_trip_every_encoding(encoding: str) -> None:
    pixels = _random(encoding)
    msg = numpy_to_image(pixels, encoding)
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step == 7 * ENCODINGS[encoding].bytes_per_pixel
    assert msg.is_bigendian == (sys.byteorder == 'big')
    back = image_to_numpy(msg)
    assert back.dtype == pixels.dtype and back.shape == pixels.shape
    np.testing.assert_array_equal(back, pixels)


def test_reading_is_a_view_of_the_message_data() -> None:
    msg = numpy_to_image(_random('rgb8'), 'rgb8')
    assert np.shares_memory(image_to_numpy(msg), np.frombuffer(msg.data, np.uint8))


def test_writing_copies_header_and_accepts_single_channel_axis_and_strides() -> None:
    header = Header(stamp=Time(sec=12, nanosec=345), frame_id='cam')
    depth = _random('16UC1', 6, 8)
    msg = numpy_to_image(depth[:, :, None], '16UC1', header=header)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (
        12,
        345,
        'cam',
    )
    np.testing.assert_array_equal(image_to_numpy(msg), depth)
    flipped = _random('bgr8', 4, 6)[:, ::-1]  # non-contiguous input
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(flipped, 'bgr8')), flipped)
    big = depth.astype('>u2')  # foreign byte order is written natively
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(big, 'mono16')), depth)


@pytest.mark.parametrize('encoding', ['rgb8', 'mono8', '16UC1', '32FC1', 'bgra8'])
def test_padded_step(encoding: str) -> None:
    pixels = _random(encoding, 4, 5, seed=1)
    row = pixels.reshape(4, -1).view(np.uint8)
    pad = 6
    padded = np.full((4, row.shape[1] + pad), 0xAB, np.uint8)
    padded[:, : row.shape[1]] = row
    msg = PlainImage(
        4, 5, encoding, int(sys.byteorder == 'big'), padded.shape[1], padded.tobytes()
    )
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)


@pytest.mark.parametrize('encoding, wire', [('16UC1', '>u2'), ('32FC1', '>f4'), ('mono16', '>u2')])
@pytest.mark.parametrize('pad', [0, 3])
def test_big_endian_buffers_are_swapped_to_native(encoding: str, wire: str, pad: int) -> None:
    pixels = _random(encoding, 3, 4, seed=2)
    rows = pixels.astype(wire).reshape(3, -1).view(np.uint8)
    data = np.concatenate([rows, np.zeros((3, pad), np.uint8)], axis=1)
    msg = PlainImage(3, 4, encoding, 1, data.shape[1], bytearray(data.tobytes()))
    back = image_to_numpy(msg)
    assert back.dtype == pixels.dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, pixels)
    # the same bytes read as little-endian give other values: the flag is honoured
    msg.is_bigendian = 0
    assert not np.array_equal(image_to_numpy(msg), pixels)


def _good(**changes: Any) -> PlainImage:
    fields = dict(height=2, width=3, encoding='rgb8', is_bigendian=0, step=9, data=bytes(18))
    fields.update(changes)
    return PlainImage(**fields)


@pytest.mark.parametrize(
    'msg, message',
    [
        (_good(encoding='yuv422'), "'yuv422'"),
        (_good(encoding=''), "''"),
        (_good(data=bytes(17)), '17'),
        (_good(step=10, data=bytes(19)), '19'),
        (_good(height=0, data=b''), 'height=0'),
        (_good(width=0, step=0, data=b''), 'width=0'),
        (_good(step=8, data=bytes(16)), 'step 8'),
        (_good(encoding='16UC1', step=5, data=bytes(10)), 'step 5'),
        (_good(data=[0] * 18), "'list'"),
        (_good(data=np.zeros((6, 6), np.uint8)[:, ::2]), 'contiguous'),
    ],
)
def test_bad_messages_raise(msg: PlainImage, message: str) -> None:
    with pytest.raises(ImageConversionError, match=message.replace('(', r'\(')):
        image_to_numpy(msg)


@pytest.mark.parametrize(
    'pixels, encoding, message',
    [
        (np.zeros((2, 3, 3), np.uint8), 'rgb16', "'rgb16'"),
        (np.zeros((2, 3), np.uint8), 'rgb8', r'\(2, 3\)'),
        (np.zeros((2, 3, 4), np.uint8), 'rgb8', r'\(2, 3, 4\)'),
        (np.zeros((2, 3, 2), np.uint8), 'mono8', r'\(2, 3, 2\)'),
        (np.zeros((2, 3), np.uint16), 'mono8', "'uint16'"),
        (np.zeros((2, 3), np.float64), '32FC1', "'float64'"),
        (np.zeros((2, 3), np.int16), '16UC1', "'int16'"),
        (np.zeros((0, 3, 3), np.uint8), 'rgb8', r'\(0, 3, 3\)'),
        (np.zeros((2, 0), np.uint16), '16UC1', r'\(2, 0\)'),
        (np.zeros(6, np.uint8), 'mono8', r'\(6,\)'),
        ([[0, 1], [2, 3]], 'mono8', "'list'"),
    ],
)
def test_bad_arrays_raise(pixels: Any, encoding: str, message: str) -> None:
    with pytest.raises(ImageConversionError, match=message):
        numpy_to_image(pixels, encoding)


def _fake_module(monkeypatch: pytest.MonkeyPatch, **attrs: Any) -> None:
    monkeypatch.setitem(sys.modules, 'cv_bridge', types.SimpleNamespace(**attrs))
    image_conversion._cv_bridge.cache_clear()


class _RecordingBridge:
    calls: list[str] = []

    def imgmsg_to_cv2(self, msg: Any, desired_encoding: str) -> np.ndarray:
        self.calls.append(desired_encoding)
        return np.zeros((msg.height, msg.width, 3), np.uint8)


class _ROS1Bridge:
    """Like PyPI's cv-bridge: a CvBridge class without the ROS 2 method."""


def test_working_cv_bridge_is_used_after_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_module(monkeypatch, CvBridge=_RecordingBridge, CvBridgeError=RuntimeError)
    _RecordingBridge.calls.clear()
    assert image_to_numpy(_good()).shape == (2, 3, 3)
    assert _RecordingBridge.calls == ['passthrough']
    with pytest.raises(ImageConversionError, match='step 8'):
        image_to_numpy(_good(step=8, data=bytes(16)))
    assert len(_RecordingBridge.calls) == 1


@pytest.mark.parametrize('attrs', [{}, {'CvBridge': _ROS1Bridge}])
def test_broken_cv_bridge_is_refused(monkeypatch: pytest.MonkeyPatch, attrs: dict) -> None:
    _fake_module(monkeypatch, **attrs)
    assert image_conversion._cv_bridge() is None
    pixels = _random('rgb8', 2, 3)
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(pixels, 'rgb8')), pixels)


def test_depth_to_mm() -> None:
    metres = np.array([[1.5, np.nan, -1.0], [0.0, np.inf, 100.0]], np.float32)
    mm, bad = depth_to_mm(metres)
    np.testing.assert_array_equal(mm, [[1500, 0, 0], [0, 0, 65535]])
    assert mm.dtype == np.uint16 and bad == 3
    raw = np.ones((2, 2), np.uint16)
    assert depth_to_mm(raw)[0] is raw
    with pytest.raises(ImageConversionError, match='int32'):
        depth_to_mm(np.ones((2, 2), np.int32))
    with pytest.raises(ImageConversionError, match=r'\(H, W\)'):
        depth_to_mm(np.ones((2, 2, 1), np.uint16))
