"""Simulated RealSense-like camera: the campus route as RGB, aligned depth and camera info.

Route time advances by exactly 1/rate per published frame, so a run is deterministic for
(schedule, seed, size) however slow the renderer is. Optionally keeps each frame's ground-truth
labels on disk by stamp (``sim.ground_truth``) for the annotation step; they are never published.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String

from robo_lifelong.errors import ConfigError, RoboLifelongError
from robo_lifelong.nodes.images import numpy_to_image
from robo_lifelong.nodes.parameters import declare_config
from robo_lifelong.nodes.qos import LATCHED_QOS, SENSOR_QOS
from robo_lifelong.nodes.spin import run
from robo_lifelong.parameters import param
from robo_lifelong.sim.camera import MAX_HEIGHT, MAX_WIDTH, CameraModel
from robo_lifelong.sim.ground_truth import DEFAULT_MAX_FRAMES, GroundTruthStore
from robo_lifelong.sim.route import Route, parse_schedule
from robo_lifelong.sim.world import Frame

COLOR_TOPIC = 'camera/color/image_raw'
DEPTH_TOPIC = 'camera/aligned_depth_to_color/image_raw'
COLOR_INFO_TOPIC = 'camera/color/camera_info'
DEPTH_INFO_TOPIC = 'camera/aligned_depth_to_color/camera_info'
TASK_TOPIC = 'sim/task'
SLOW_WARNING_PERIOD_S = 5.0


@dataclass(frozen=True)
class SimCameraConfig:
    """The node's settings, each field a ROS parameter of that name, all read at start."""

    rate_hz: float = field(
        default=15.0,
        metadata=param('Frames per second; route time advances 1/rate_hz per frame.', low=0.0),
    )
    width: int = field(
        default=424, metadata=param('Image width in pixels.', low=16, high=MAX_WIDTH)
    )
    height: int = field(
        default=240, metadata=param('Image height in pixels.', low=16, high=MAX_HEIGHT)
    )
    schedule: str = field(
        default='sunny:20,night:10,sunny:20',
        metadata=param("Repeating task schedule 'task:seconds,...' in route time."),
    )
    seed: int = field(default=0, metadata=param('Campus layout and sensor-noise seed.'))
    # aligned depth shares the colour frame
    frame_id: str = field(
        default='camera_color_optical_frame',
        metadata=param('frame_id of the colour and aligned depth images.'),
    )
    ground_truth_dir: str = field(
        default='',
        metadata=param('Directory for per-frame ground-truth labels by stamp; empty = off.'),
    )
    ground_truth_max_frames: int = field(
        default=DEFAULT_MAX_FRAMES,
        metadata=param('Newest ground-truth frames kept on disk.', low=1),
    )

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ConfigError(f'rate_hz must be > 0, got {self.rate_hz!r}')


def camera_info(camera: CameraModel, header: Header) -> CameraInfo:
    """CameraInfo of the pinhole ``camera`` (plumb_bob, no distortion)."""
    return CameraInfo(
        header=header,
        width=camera.width,
        height=camera.height,
        distortion_model='plumb_bob',
        d=[0.0] * 5,
        k=list(camera.k),
        r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p=list(camera.p),
    )


class SimCameraNode(Node):
    def __init__(self) -> None:
        super().__init__('sim_camera')
        self.config = declare_config(self, SimCameraConfig)
        cfg = self.config
        self.camera = CameraModel(cfg.width, cfg.height)
        self.route = Route(parse_schedule(cfg.schedule), cfg.seed, self.camera)
        self.ground_truth = (
            GroundTruthStore(cfg.ground_truth_dir, cfg.ground_truth_max_frames)
            if cfg.ground_truth_dir
            else None
        )
        self.frames = 0
        self._task = ''
        self._color_pub = self.create_publisher(Image, COLOR_TOPIC, SENSOR_QOS)
        self._depth_pub = self.create_publisher(Image, DEPTH_TOPIC, SENSOR_QOS)
        self._color_info_pub = self.create_publisher(CameraInfo, COLOR_INFO_TOPIC, SENSOR_QOS)
        self._depth_info_pub = self.create_publisher(CameraInfo, DEPTH_INFO_TOPIC, SENSOR_QOS)
        self._task_pub = self.create_publisher(String, TASK_TOPIC, LATCHED_QOS)
        self._publish_task(self.route.task_at(0.0))
        self._timer = self.create_timer(1.0 / cfg.rate_hz, self._on_timer)
        self.get_logger().info(
            f'{cfg.width}x{cfg.height} at {cfg.rate_hz} Hz, schedule {cfg.schedule!r}, '
            f'seed {cfg.seed}, ground truth {cfg.ground_truth_dir or "off"}'
        )

    def _publish_task(self, task: str) -> None:
        if task != self._task:
            self._task = task
            self._task_pub.publish(String(data=task))

    def _on_timer(self) -> None:
        started = time.monotonic()
        now = self.get_clock().now()
        frame = self.route.frame_at(self.frames / self.config.rate_hz)
        self.frames += 1
        if self.ground_truth is not None:  # before publishing: a listener may look it up at once
            self._keep_ground_truth(now.nanoseconds, frame.labels, frame.task)
        self._publish(frame, Header(stamp=now.to_msg(), frame_id=self.config.frame_id))
        elapsed_ms = (time.monotonic() - started) * 1000
        period_ms = 1000 / self.config.rate_hz
        if elapsed_ms > period_ms and self.frames > 1:  # the first frame fills render caches
            self.get_logger().warning(
                f'frame took {elapsed_ms:.0f} ms, more than the {period_ms:.0f} ms period: '
                f'publishing below {self.config.rate_hz} Hz',
                throttle_duration_sec=SLOW_WARNING_PERIOD_S,
            )

    def _publish(self, frame: Frame, header: Header) -> None:
        info = camera_info(self.camera, header)
        self._color_pub.publish(numpy_to_image(frame.rgb, 'rgb8', header))
        self._depth_pub.publish(numpy_to_image(frame.depth_mm, '16UC1', header))
        self._color_info_pub.publish(info)
        self._depth_info_pub.publish(info)
        self._publish_task(frame.task)

    def _keep_ground_truth(self, stamp_ns: int, labels: np.ndarray, task: str) -> None:
        try:
            self.ground_truth.put(stamp_ns, labels, task)
        except RoboLifelongError as e:  # e.g. disk full: the camera keeps publishing
            self.get_logger().error(
                f'cannot keep ground truth: {e}', throttle_duration_sec=SLOW_WARNING_PERIOD_S
            )


def main(args: list[str] | None = None) -> int:
    return run(SimCameraNode, 'sim_camera', args)


if __name__ == '__main__':
    sys.exit(main())
