"""numpy -> ``sensor_msgs/Image`` for the nodes' publishers (the way in, without ROS, is
``robo_lifelong.io.image_conversion.image_to_numpy``)."""

from __future__ import annotations

import array
import sys
from typing import Any

import numpy as np
from sensor_msgs.msg import Image

from robo_lifelong.errors import ImageConversionError
from robo_lifelong.io.image_conversion import PixelFormat, pixel_format

_NATIVE_BIG_ENDIAN = sys.byteorder == 'big'


def numpy_to_image(array_: np.ndarray, encoding: str, header: Any = None) -> Image:
    """A ``sensor_msgs.msg.Image`` holding ``array_`` ((H, W) or (H, W, C) of the encoding's
    dtype, any byte order or strides), with ``header`` (stamp, frame_id) copied in if given.

    ``data`` is filled as an ``array.array('B')`` (one memcpy), which the generated message
    setter stores as is; a list or ndarray is copied element by element, and with field checks
    on (always on Humble) bytes are checked element by element: 100-1000x slower at 480x640 and
    up (bench/bench_image_conversion.py). Raises ImageConversionError.
    """
    fmt = pixel_format(encoding)
    pixels = _checked_pixels(array_, encoding, fmt)
    data = array.array('B')
    data.frombytes(memoryview(pixels).cast('B'))
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(_NATIVE_BIG_ENDIAN)
    msg.step = msg.width * fmt.bytes_per_pixel
    msg.data = data
    return msg


def _checked_pixels(array_: np.ndarray, encoding: str, fmt: PixelFormat) -> np.ndarray:
    """``array_`` as a C-contiguous native-order array after checking it fits ``encoding``."""
    if not isinstance(array_, np.ndarray):
        raise ImageConversionError(f'expected a numpy array, got {type(array_).__name__!r}')
    channel_dims = {(fmt.channels,)} if fmt.channels > 1 else {(), (1,)}
    shape = array_.shape
    if array_.ndim not in (2, 3) or shape[2:] not in channel_dims:
        raise ImageConversionError(
            f'array of shape {shape!r} does not fit encoding {encoding!r} '
            f'({fmt.channels} channel(s))'
        )
    if array_.dtype.newbyteorder('=') != fmt.dtype:
        raise ImageConversionError(
            f'array dtype {str(array_.dtype)!r} does not fit encoding {encoding!r} '
            f'(needs {str(fmt.dtype)!r})'
        )
    if shape[0] == 0 or shape[1] == 0:
        raise ImageConversionError(f'empty image: shape {shape!r}')
    return np.ascontiguousarray(array_, dtype=fmt.dtype)
