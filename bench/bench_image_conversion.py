"""sensor_msgs/Image building and reading: the fast path of image_conversion vs naive ways.

rclpy's generated ``Image.data`` setter stores an ``array.array('B')`` as is; anything else is
copied element by element, and with field checks on (always on Humble; ``check_fields=True`` /
``ROS_PYTHON_CHECK_FIELDS=1`` on later distros) every element is also type- and range-checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image

from robo_lifelong.io.image_conversion import image_to_numpy
from robo_lifelong.nodes.images import numpy_to_image

SIZES = ((480, 640), (720, 1280))
TARGET_BUILD_MS_720x1280 = 5.0  # fast path, well under a 30 Hz frame period


def _ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm up
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return round(best * 1000, 3)


def _naive(pixels: np.ndarray, data: Callable[[np.ndarray], object], check: bool) -> Image:
    msg = Image(check_fields=check)
    msg.height, msg.width = pixels.shape[:2]
    msg.encoding, msg.step = 'rgb8', pixels.shape[1] * 3
    msg.data = data(pixels)
    return msg


def run(quick: bool = False) -> dict:
    repeats = 3 if quick else 10
    sizes = SIZES[:1] if quick else SIZES
    result: dict = {'unit': 'ms per message, best of repeats', 'sizes': {}}
    for h, w in sizes:
        pixels = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
        msg = numpy_to_image(pixels, 'rgb8')
        times = {
            'build_fast': _ms(lambda p=pixels: numpy_to_image(p, 'rgb8'), repeats),
            'build_bytes': _ms(lambda p=pixels: _naive(p, np.ndarray.tobytes, False), repeats),
            'build_ndarray': _ms(lambda p=pixels: _naive(p, np.ravel, False), 1),
            'build_list': _ms(lambda p=pixels: _naive(p, lambda a: a.ravel().tolist(), False), 1),
            # Humble's setter (checks always on) given bytes, as cv_bridge there does
            'build_bytes_checked': _ms(lambda p=pixels: _naive(p, np.ndarray.tobytes, True), 1),
            'to_numpy': _ms(lambda m=msg: image_to_numpy(m), repeats),
            'to_numpy_copy': _ms(lambda m=msg: image_to_numpy(m).copy(), repeats),
            'serialize': _ms(lambda m=msg: serialize_message(m), repeats),
        }
        times['speedup_vs_checked_bytes'] = round(
            times['build_bytes_checked'] / times['build_fast'], 1
        )
        result['sizes'][f'{h}x{w}'] = times
    largest = result['sizes'][f'{sizes[-1][0]}x{sizes[-1][1]}']['build_fast']
    result['target_build_ms_720x1280'] = TARGET_BUILD_MS_720x1280
    result['target_met'] = largest <= TARGET_BUILD_MS_720x1280
    return result
