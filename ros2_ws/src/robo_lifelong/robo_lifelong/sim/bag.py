"""Record the simulator route as a rosbag2 bag, as ``ros2 bag record`` of the sim camera would.

Frame ``i`` is the route at ``i / rate`` seconds of route time, stamped ``start + i / rate`` (the
sim camera node stamps each frame with its clock as its timer fires every 1/rate seconds), and
logged at its stamp. Colour (rgb8), aligned depth (16UC1) and both camera infos share the stamp;
``sim/task`` is written when the task changes, like the node's latched topic.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from robo_lifelong.errors import ConfigError
from robo_lifelong.io.bags import COLOR_TOPIC, DEPTH_TOPIC, TYPESTORE, header, image, new_bag
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.route import Route, Schedule

# as nodes/sim_camera_node.py publishes them in the root namespace
COLOR_INFO_TOPIC = '/camera/color/camera_info'
DEPTH_INFO_TOPIC = '/camera/aligned_depth_to_color/camera_info'
TASK_TOPIC = '/sim/task'
FRAME_ID = 'camera_color_optical_frame'

_IMAGE = 'sensor_msgs/msg/Image'
_INFO = 'sensor_msgs/msg/CameraInfo'
_STRING = 'std_msgs/msg/String'


@dataclass(frozen=True)
class RecordConfig:
    schedule: Schedule
    seconds: float
    rate_hz: float = 10.0
    seed: int = 0
    storage: str = 'sqlite3'
    start_ns: int | None = None  # stamp of the first frame; None = now

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ConfigError(f'rate_hz must be > 0, got {self.rate_hz!r}')
        if not self.seconds > 0:
            raise ConfigError(f'seconds must be > 0, got {self.seconds!r}')

    @property
    def frames(self) -> int:
        return max(1, round(self.seconds * self.rate_hz))


def camera_info(camera: CameraModel, head: object) -> object:
    """rosbags ``sensor_msgs/CameraInfo`` of the pinhole ``camera`` (plumb_bob, no distortion)."""
    types = TYPESTORE.types
    return types[_INFO](
        header=head,
        height=camera.height,
        width=camera.width,
        distortion_model='plumb_bob',
        d=np.zeros(5),
        k=np.array(camera.k, np.float64),
        r=np.eye(3).reshape(-1),
        p=np.array(camera.p, np.float64),
        binning_x=0,
        binning_y=0,
        roi=types['sensor_msgs/msg/RegionOfInterest'](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )


def record_route(
    out: str | os.PathLike, config: RecordConfig, camera: CameraModel | None = None
) -> int:
    """Write ``config.frames`` frames of the route to a new bag at ``out``; returns the count.
    Nothing is left at ``out`` if it fails."""
    camera = camera or CameraModel()
    route = Route(config.schedule, config.seed, camera)
    start = time.time_ns() if config.start_ns is None else config.start_ns
    period_ns = 1e9 / config.rate_hz
    task = ''
    String = TYPESTORE.types[_STRING]
    with new_bag(out, config.storage) as bag:  # no partial bag if it fails or is interrupted
        for i in tqdm(range(config.frames), desc='record', unit='frame', disable=None):
            frame = route.frame_at(i / config.rate_hz)
            stamp = start + round(i * period_ns)
            head = header(stamp, FRAME_ID)
            if frame.task != task:
                task = frame.task
                bag.write(TASK_TOPIC, _STRING, String(data=task), stamp)
            bag.write(COLOR_TOPIC, _IMAGE, image(frame.rgb, 'rgb8', head), stamp)
            bag.write(DEPTH_TOPIC, _IMAGE, image(frame.depth_mm, '16UC1', head), stamp)
            info = camera_info(camera, head)
            bag.write(COLOR_INFO_TOPIC, _INFO, info, stamp)
            bag.write(DEPTH_INFO_TOPIC, _INFO, info, stamp)
    return config.frames
