"""The campus world: poses on the street, frames rendered from them."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.layout import CELL, STREET, cells
from robo_lifelong.sim.render import Renderer
from robo_lifelong.sim.tasks import get_task


@dataclass(frozen=True)
class Pose:
    """Robot position on the street (metres, world frame) and heading (radians from +x)."""

    x: float
    y: float
    yaw: float


@dataclass(frozen=True)
class Frame:
    rgb: np.ndarray  # (H, W, 3) uint8 RGB
    depth_mm: np.ndarray  # (H, W) uint16 millimetres, 0 = no return
    labels: np.ndarray  # (H, W) uint8 label-map ids
    task: str
    pose: Pose


def ground_height(x: float, y: float, ramp_here: bool) -> float:
    """Height of the walkable surface at (x, y): road 0, sidewalk raised, ramps in between."""
    s, ay = STREET, abs(y)
    if ay < s.road_half:
        return 0.0
    if ramp_here and ay < s.road_half + s.ramp_width:
        return s.curb_height * (ay - s.road_half) / s.ramp_width
    return s.curb_height


def _task_key(name: str) -> int:
    return zlib.crc32(name.encode())


class CampusWorld:
    """Deterministic procedural campus: same (seed, pose, task, noise_seed), same frame."""

    def __init__(self, seed: int = 0, camera: CameraModel | None = None) -> None:
        self.seed = seed
        self.camera = camera or CameraModel()

    @cached_property
    def renderer(self) -> Renderer:
        return Renderer(self.camera, self.seed)

    def render(self, pose: Pose, task: str, noise_seed: int = 0) -> Frame:
        t = get_task(task)
        ahead = math.cos(pose.yaw) >= 0
        x_min, x_max = (pose.x - 30, pose.x + 90) if ahead else (pose.x - 90, pose.x + 30)
        view = cells(self.seed, t, x_min, x_max)
        here = view[int(pose.x // CELL) - view[0].index]
        local = pose.x - here.x0
        on_ramp = here.ramp and STREET.ramp_start <= local < STREET.ramp_start + STREET.ramp_length
        z = ground_height(pose.x, pose.y, on_ramp) + self.camera.mount_height
        origin = np.array([pose.x, pose.y, z])
        rgb, depth, labels = self.renderer.render(
            origin, self.world_from_camera(pose.yaw), view, t, noise_seed
        )
        return Frame(rgb, depth, labels, task, pose)

    def world_from_camera(self, yaw: float) -> np.ndarray:
        """(3, 3) rotation whose columns are the camera's x (right), y (down), z (forward) axes."""
        pitch = math.radians(self.camera.pitch_deg)
        forward = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        left = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
        up = np.array([0.0, 0.0, 1.0])
        z_axis = math.cos(pitch) * forward - math.sin(pitch) * up
        y_axis = -(math.sin(pitch) * forward + math.cos(pitch) * up)
        return np.stack([-left, y_axis, z_axis], axis=1)

    def random_pose(self, rng: np.random.Generator) -> Pose:
        """A pose a delivery robot plausibly has: on the sidewalk or the road edge, looking
        roughly along the street, sometimes towards the curb."""
        s = STREET
        x = float(rng.uniform(0.0, 5000.0))
        side = 1.0 if rng.random() < 0.5 else -1.0
        if rng.random() < 0.6:
            y = side * rng.uniform(s.road_half + 0.5, s.sidewalk_outer - 0.4)
        else:
            y = side * rng.uniform(0.6, s.road_half - 0.4)
        heading = 0.0 if rng.random() < 0.5 else math.pi
        yaw = heading + float(np.clip(rng.normal(0.0, 0.45), -1.3, 1.3))
        return Pose(x, float(y), yaw)

    def random_frame(self, task: str, index: int) -> Frame:
        """Frame ``index`` of a task's random-pose sequence (deterministic per seed and task)."""
        rng = np.random.default_rng([self.seed, _task_key(task), index])
        return self.render(self.random_pose(rng), task, noise_seed=int(rng.integers(2**31)))
