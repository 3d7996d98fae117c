"""sensor_msgs/Image <-> numpy, without needing ROS to read; depth images to millimetres.

``image_to_numpy`` works on any object with the Image fields (``height``, ``width``, ``encoding``,
``is_bigendian``, ``step``, ``data``), e.g. ROS 2 Python messages or rosbags-deserialised ones.
It uses the real ``cv_bridge`` when a working one is importable (ROS installs on robots) and
otherwise the converter below; both see the same validation, so bad input raises the same
``ImageConversionError`` everywhere. The way back, numpy -> ``sensor_msgs/Image``, builds a ROS
message and so lives with the nodes (``nodes/images.py``).
"""

from __future__ import annotations

import functools
import importlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from robo_lifelong.errors import ImageConversionError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PixelFormat:
    dtype: np.dtype  # one channel, native byte order
    channels: int

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


ENCODINGS: dict[str, PixelFormat] = {
    'rgb8': PixelFormat(np.dtype(np.uint8), 3),
    'bgr8': PixelFormat(np.dtype(np.uint8), 3),
    'rgba8': PixelFormat(np.dtype(np.uint8), 4),
    'bgra8': PixelFormat(np.dtype(np.uint8), 4),
    'mono8': PixelFormat(np.dtype(np.uint8), 1),
    'mono16': PixelFormat(np.dtype(np.uint16), 1),
    '16UC1': PixelFormat(np.dtype(np.uint16), 1),
    '32FC1': PixelFormat(np.dtype(np.float32), 1),
}


class ImageLike(Protocol):
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: Any  # any buffer: array.array('B'), bytes, bytearray, memoryview, uint8 ndarray


@dataclass(frozen=True)
class _Bridge:
    bridge: Any
    error: type[Exception]


@functools.cache
def _cv_bridge() -> _Bridge | None:
    """The ROS 2 cv_bridge if a usable one is installed; PyPI's ``cv-bridge`` is a ROS 1 port
    that imports but lacks ``CvBridge.imgmsg_to_cv2`` (or fails on import), so it is refused."""
    try:
        module = importlib.import_module('cv_bridge')
        bridge = module.CvBridge()
    except (ImportError, AttributeError, TypeError) as e:
        log.debug('no usable cv_bridge (%s); using the numpy converter', e)
        return None
    if not callable(getattr(bridge, 'imgmsg_to_cv2', None)):
        log.debug('cv_bridge %r has no CvBridge.imgmsg_to_cv2; using the numpy converter', module)
        return None
    return _Bridge(bridge, getattr(module, 'CvBridgeError', ImageConversionError))


def pixel_format(encoding: str) -> PixelFormat:
    """The dtype and channel count of ``encoding``; ImageConversionError if unsupported."""
    try:
        return ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise ImageConversionError(
            f'unsupported encoding {encoding!r}; supported: {", ".join(ENCODINGS)}'
        ) from None


def _buffer(msg: ImageLike) -> memoryview:
    try:
        view = memoryview(msg.data)
        return view if view.format == 'B' and view.ndim == 1 else view.cast('B')
    except TypeError as e:  # not a buffer, or a non-contiguous one
        raise ImageConversionError(
            f'image data of type {type(msg.data).__name__!r} is not a contiguous byte buffer'
        ) from e


def _check_layout(msg: ImageLike, fmt: PixelFormat, nbytes: int) -> None:
    height, width, step = msg.height, msg.width, msg.step
    if height <= 0 or width <= 0:
        raise ImageConversionError(f'empty image: height={height!r} width={width!r}')
    row = width * fmt.bytes_per_pixel
    if step < row:
        raise ImageConversionError(
            f'step {step!r} < width {width!r} * {fmt.bytes_per_pixel} bytes per pixel '
            f'for encoding {msg.encoding!r}'
        )
    if nbytes < step * height:
        raise ImageConversionError(
            f'image data has {nbytes!r} bytes, expected step {step!r} * height {height!r} = '
            f'{step * height} for a {width}x{height} {msg.encoding!r} image'
        )


def image_to_numpy(msg: ImageLike) -> np.ndarray:
    """Pixels of ``msg`` as (H, W) or (H, W, C) in the encoding's dtype and native byte order.

    A view of ``msg.data`` where possible (rows padded by ``step`` stay strided); a copy only for
    byte-swapped (big-endian 16UC1/mono16/32FC1) data. Raises ImageConversionError.
    """
    fmt = pixel_format(msg.encoding)
    data = _buffer(msg)
    _check_layout(msg, fmt, data.nbytes)
    bridged = _cv_bridge()
    if bridged is not None:
        try:
            return bridged.bridge.imgmsg_to_cv2(msg, desired_encoding='passthrough')
        except bridged.error as e:
            raise ImageConversionError(
                f'cv_bridge cannot convert {msg.encoding!r} image: {e}'
            ) from e
    order = '>' if msg.is_bigendian else '<'
    wire = fmt.dtype.newbyteorder(order) if fmt.dtype.itemsize > 1 else fmt.dtype
    shape: tuple[int, ...] = (msg.height, msg.width)
    strides: tuple[int, ...] = (msg.step, fmt.bytes_per_pixel)
    if fmt.channels > 1:
        shape += (fmt.channels,)
        strides += (fmt.dtype.itemsize,)
    pixels = np.ndarray(shape, dtype=wire, buffer=data, strides=strides)
    if wire.isnative:
        return pixels
    return pixels.astype(fmt.dtype)  # swaps bytes, keeping values


MAX_DEPTH_MM = 65535  # the farthest range a 16UC1 depth image holds


def depth_to_mm(depth: np.ndarray) -> tuple[np.ndarray, int]:
    """(H, W) uint16 mm (``16UC1``) or float32 metres (``32FC1``) -> (H, W) uint16 mm (0 = no
    return) and the number of non-finite or negative float values that became 0. A uint16 input
    is returned as is. Raises ImageConversionError for another shape or dtype."""
    if depth.ndim != 2:
        raise ImageConversionError(f'depth must be (H, W), got {depth.shape!r}')
    if depth.dtype == np.uint16:
        return depth, 0
    if depth.dtype != np.float32:
        raise ImageConversionError(f'depth dtype {depth.dtype} is not uint16 or float32')
    valid = np.isfinite(depth) & (depth > 0.0)
    mm = np.where(valid, np.rint(depth * 1000.0), 0.0)
    bad = int(depth.size - np.count_nonzero(valid | (depth == 0.0)))
    return np.clip(mm, 0, MAX_DEPTH_MM).astype(np.uint16), bad
