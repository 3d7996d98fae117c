"""Test helper run as a subprocess: listens to the sim camera topics and prints one JSON object.

Waits up to ``--timeout`` s for the first colour frame, then records for ``--seconds`` more and
until it has ``--min-frames`` colour frames (bounded by ``--timeout`` again). Images are decoded
with robo_lifelong.io.image_conversion, as the perception node would; each carries a digest of its
pixels, so a test can tell which simulator frame it is. The reader queues are deep: while this
process waits for a core, the DDS threads keep what arrives instead of dropping it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from robo_lifelong.io.image_conversion import image_to_numpy
from robo_lifelong.nodes import sim_camera_node as cam
from robo_lifelong.nodes.qos import LATCHED_QOS

# best effort like the camera's publishers (SENSOR_QOS), but a reader history of seconds
DEEP_SENSOR_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)


def digest(pixels) -> str:
    """Digest of an image's pixels (C order), as ``pixel_digest`` in the tests computes it."""
    return hashlib.sha1(pixels.tobytes()).hexdigest()


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class Listener(Node):
    def __init__(self) -> None:
        super().__init__('camera_listener')
        self.record: dict[str, list] = {'rgb': [], 'depth': [], 'color_info': [], 'depth_info': []}
        self.record['task'] = []
        self.create_subscription(Image, cam.COLOR_TOPIC, self._image('rgb'), DEEP_SENSOR_QOS)
        self.create_subscription(Image, cam.DEPTH_TOPIC, self._image('depth'), DEEP_SENSOR_QOS)
        infos = (('color_info', cam.COLOR_INFO_TOPIC), ('depth_info', cam.DEPTH_INFO_TOPIC))
        for key, topic in infos:
            self.create_subscription(CameraInfo, topic, self._info(key), DEEP_SENSOR_QOS)
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
                    'digest': digest(pixels),
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
    parser.add_argument('--min-frames', type=int, default=0)
    args = parser.parse_args()
    rclpy.init()
    node = Listener()
    started = time.monotonic()
    try:
        while True:
            rclpy.spin_once(node, timeout_sec=0.05)
            now, rgb = time.monotonic(), node.record['rgb']
            if not rgb:
                if now - started >= args.timeout:
                    break
                continue
            first = rgb[0]['arrival']
            if now - first >= args.seconds and len(rgb) >= args.min_frames:
                break
            if now - first >= args.seconds + args.timeout:
                break
        node.record['started'] = started
        print(json.dumps(node.record))
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
