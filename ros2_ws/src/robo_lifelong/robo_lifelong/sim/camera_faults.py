"""Camera faults injected into simulator frames, for the camera-health tests and benchmark.

Each image fault maps a rendered (H, W, 3) uint8 RGB frame to what a faulty camera would deliver.
Optical faults (a cover, a smear) act before the sensor, so the sensor noise of the frame's task
(``Task.noise``) is added again on top of them; the stream faults (frozen, stalled, stamp jump)
are made by the caller from a sequence of frames.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import cv2
import numpy as np

from robo_lifelong.sim.tasks import get_task


class Side(str, Enum):
    LEFT = 'left'
    RIGHT = 'right'
    BOTTOM = 'bottom'
    TOP = 'top'


def _with_noise(image: np.ndarray, task: str, rng: np.random.Generator) -> np.ndarray:
    sigma = 255.0 * get_task(task).noise
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def black(rgb: np.ndarray, task: str, rng: np.random.Generator) -> np.ndarray:
    """A capped lens or dead sensor: dark noise of a few grey levels."""
    return np.clip(np.abs(rng.normal(0.0, 2.0, rgb.shape)), 0, 255).astype(np.uint8)


def saturated(rgb: np.ndarray, task: str, rng: np.random.Generator) -> np.ndarray:
    """Over-exposure (auto-exposure stuck, the sun straight into the lens): gain 8-12, clipped."""
    gain = rng.uniform(8.0, 12.0)
    return np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def smeared(rgb: np.ndarray, task: str, rng: np.random.Generator) -> np.ndarray:
    """A smeared or fogged lens: blur of sigma 2-3 % of the width, then the sensor noise."""
    sigma = rgb.shape[1] * rng.uniform(0.02, 0.03)
    return _with_noise(cv2.GaussianBlur(rgb, (0, 0), sigma), task, rng)


def covered(
    rgb: np.ndarray, task: str, rng: np.random.Generator, side: Side | None = None
) -> np.ndarray:
    """Half the lens covered (a finger, a leaf, mud) from ``side`` (random when None): an evenly
    dark occluder, out of focus (edge blurred over 2 % of the width), then the sensor noise."""
    side = side or list(Side)[int(rng.integers(len(Side)))]
    h, w = rgb.shape[:2]
    mask = np.zeros((h, w), np.float32)
    if side is Side.LEFT:
        mask[:, : w // 2] = 1.0
    elif side is Side.RIGHT:
        mask[:, w // 2 :] = 1.0
    elif side is Side.BOTTOM:
        mask[h // 2 :] = 1.0
    else:
        mask[: h // 2] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), 0.02 * w)[..., None]
    colour = rng.uniform(15.0, 70.0) * np.array([1.0, 0.85, 0.7], np.float32)
    return _with_noise(rgb * (1.0 - mask) + colour * mask, task, rng)


ImageFault = Callable[[np.ndarray, str, np.random.Generator], np.ndarray]
IMAGE_FAULTS: dict[str, ImageFault] = {
    'black': black,
    'saturated': saturated,
    'smeared': smeared,
    'half_covered': covered,
}
