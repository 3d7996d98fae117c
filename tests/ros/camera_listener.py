"""Test helper run as a subprocess: listens to the sim camera topics and prints one JSON object.

Waits up to ``--timeout`` s for the first colour frame, then records for ``--seconds`` more.
Images are decoded with robo_lifelong.image_conversion, as the perception node would.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import rclpy
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from robo_lifelong.image_conversion import image_to_numpy
from robo_lifelong.nodes import sim_camera_node as cam
from robo_lifelong.nodes.qos import LATCHED_QOS, SENSOR_QOS


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class Listener(Node):
    def __init__(self) -> None:
        super().__init__('camera_listener')
        self.record: dict[str, list] = {'rgb': [], 'depth': [], 'color_info': [], 'depth_info': []}
        self.record['task'] = []
        self.create_subscription(Image, cam.COLOR_TOPIC, self._image('rgb'), SENSOR_QOS)
        self.create_subscription(Image, cam.DEPTH_TOPIC, self._image('depth'), SENSOR_QOS)
        infos = (('color_info', cam.COLOR_INFO_TOPIC), ('depth_info', cam.DEPTH_INFO_TOPIC))
        for key, topic in infos:
            self.create_subscription(CameraInfo, topic, self._info(key), SENSOR_QOS)
        self.create_subscription(String, cam.TASK_TOPIC, self._on_task, LATCHED_QOS)

    def _image(self, key: str):
        def callback(msg: Image) -> None:
            pixels = image_to_numpy(msg)
            self.record[key].append(
                {
                    'stamp_ns': _stamp_ns(msg),
                    'arrival': time.monotonic(),
                    'frame_id': msg.header.frame_id,
                    'encoding': msg.encoding,
                    'shape': list(pixels.shape),
                    'dtype': str(pixels.dtype),
                    'max': float(pixels.max()),
                }
            )

        return callback

    def _info(self, key: str):
        def callback(msg: CameraInfo) -> None:
            self.record[key].append(
                {
                    'stamp_ns': _stamp_ns(msg),
                    'frame_id': msg.header.frame_id,
                    'width': msg.width,
                    'height': msg.height,
                    'distortion_model': msg.distortion_model,
                    'd': list(msg.d),
                    'k': list(msg.k),
                    'r': list(msg.r),
                    'p': list(msg.p),
                }
            )

        return callback

    def _on_task(self, msg: String) -> None:
        self.record['task'].append({'data': msg.data, 'arrival': time.monotonic()})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--seconds', type=float, required=True)
    parser.add_argument('--timeout', type=float, default=20.0)
    args = parser.parse_args()
    rclpy.init()
    node = Listener()
    started = time.monotonic()
    try:
        deadline = started + args.timeout
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
            if node.record['rgb'] and deadline - started == args.timeout:
                deadline = node.record['rgb'][0]['arrival'] + args.seconds
        node.record['started'] = started
        print(json.dumps(node.record))
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
