"""Pinhole camera of a robot dog, with RealSense D435i colour-stream-like intrinsics."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from robo_lifelong.errors import ConfigError

# The D435i colour sensor sees about 69 x 42 degrees in its 16:9 modes; 4:3 modes crop the sides,
# so the vertical field of view is the one that holds across resolutions.
VERTICAL_FOV_DEG = 42.5
MAX_WIDTH, MAX_HEIGHT = 1280, 720


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics and mounting of the simulated colour camera (depth is aligned to it).

    Camera frame: x right, y down, z forward (ROS optical frame).
    """

    width: int = 424
    height: int = 240
    mount_height: float = 0.5  # metres above the ground the robot stands on
    pitch_deg: float = 8.0  # downward tilt of the optical axis

    def __post_init__(self) -> None:
        if not (16 <= self.width <= MAX_WIDTH and 16 <= self.height <= MAX_HEIGHT):
            raise ConfigError(
                f'camera size {self.width!r}x{self.height!r} outside '
                f'16x16..{MAX_WIDTH}x{MAX_HEIGHT}'
            )

    @property
    def fy(self) -> float:
        return self.height / (2.0 * math.tan(math.radians(VERTICAL_FOV_DEG) / 2.0))

    @property
    def fx(self) -> float:
        return self.fy  # square pixels

    @property
    def cx(self) -> float:
        return (self.width - 1) / 2.0

    @property
    def cy(self) -> float:
        return (self.height - 1) / 2.0

    @property
    def k(self) -> tuple[float, ...]:
        """Row-major 3x3 intrinsic matrix, as in sensor_msgs/CameraInfo.k."""
        return (self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0)

    @property
    def p(self) -> tuple[float, ...]:
        """Row-major 3x4 projection matrix, as in sensor_msgs/CameraInfo.p."""
        return (self.fx, 0.0, self.cx, 0.0, 0.0, self.fy, self.cy, 0.0, 0.0, 0.0, 1.0, 0.0)

    @cached_property
    def rays(self) -> np.ndarray:
        """(3, H, W) float32 rays in the camera frame with unit z, so a hit at ray parameter t
        lies at depth t (RealSense depth is the z distance, not the range)."""
        u = (np.arange(self.width, dtype=np.float32) - self.cx) / self.fx
        v = (np.arange(self.height, dtype=np.float32) - self.cy) / self.fy
        uu, vv = np.meshgrid(u, v)
        return np.stack([uu, vv, np.ones_like(uu)])
