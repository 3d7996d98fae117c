"""Test helper run as a subprocess: records the perception outputs and prints one JSON object.

Optionally publishes a ``model/update`` path after ``--update-after`` seconds, or a set of bad
input frames on the camera topics (``--inject-bad``) after the first labels arrive, or a large
frame (``--big-frame H W``) until its labels arrive. Records for ``--seconds`` after the first
message of any output (or until ``--timeout``, or until the large frame's labels arrived).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import Image
from std_msgs.msg import Float32, Header, String
from visualization_msgs.msg import MarkerArray

from robo_lifelong.image_conversion import numpy_to_image
from robo_lifelong.nodes.perception_node import COLOR_TOPIC, DEPTH_TOPIC, RELIABLE_QOS
from robo_lifelong.nodes.qos import LATCHED_QOS, SENSOR_QOS


def _stamp_ns(header: Header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def _header(offset_ns: int = 0) -> Header:
    t = time.time_ns() + offset_ns
    h = Header(frame_id='camera_color_optical_frame')
    h.stamp.sec, h.stamp.nanosec = t // 1_000_000_000, t % 1_000_000_000
    return h


def _paired(rgb: Image) -> tuple[Image, Image]:
    """``rgb`` with a valid depth frame of its stamp, so the node pairs it at once instead of
    waiting for depth while the sim camera's next frame replaces it."""
    depth = numpy_to_image(np.full((120, 212), 1500, np.uint16), '16UC1', rgb.header)
    return rgb, depth


def _wrong_size() -> tuple[Image, Image]:
    msg = numpy_to_image(np.full((120, 212, 3), 90, np.uint8), 'rgb8', _header())
    msg.width, msg.step = 300, 900  # the data no longer fits
    return _paired(msg)


def _with_depth(depth: np.ndarray, encoding: str) -> tuple[Image, Image]:
    h = _header()
    rgb = numpy_to_image(np.full((120, 212, 3), 90, np.uint8), 'rgb8', h)
    return rgb, numpy_to_image(depth, encoding, h)


# case -> builder of (rgb message, depth message or None), stamped when built
BAD_INPUTS = {
    'wrong encoding': lambda: (
        numpy_to_image(np.zeros((120, 212), np.uint16), 'mono16', _header()),
        None,
    ),
    'wrong size': _wrong_size,
    'empty data': lambda: _paired(Image(header=_header(), encoding='rgb8')),
    'nan depth': lambda: _with_depth(np.full((120, 212), np.nan, np.float32), '32FC1'),
    'depth of another size': lambda: _with_depth(np.full((60, 100), 1000, np.uint16), '16UC1'),
    'out of order': lambda: _paired(
        numpy_to_image(np.full((120, 212, 3), 90, np.uint8), 'rgb8', _header(-1_000_000_000))
    ),
}


class Probe(Node):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__('perception_probe', namespace=args.namespace)
        self.args = args
        self.record: dict[str, list] = {
            k: []
            for k in (
                'labels', 'overlay', 'score', 'alarm', 'sample', 'version', 'terrain', 'gait',
                'diagnostics', 'markers', 'injected', 'set',
            )
        }  # fmt: skip
        self.first: float | None = None
        self.started = time.monotonic()
        self.create_subscription(Image, 'segmentation/labels', self._on_labels, 10)
        self.create_subscription(Image, 'segmentation/overlay', self._on_overlay, 10)
        self.create_subscription(Float32, 'unseen/score', self._on_score, 10)
        self.create_subscription(DiagnosticArray, 'alarm', self._on_alarm, LATCHED_QOS)
        self.create_subscription(String, 'unseen/sample', self._on_sample, RELIABLE_QOS)
        self.create_subscription(String, 'model/version', self._on_version, LATCHED_QOS)
        self.create_subscription(String, 'terrain', self._json('terrain'), 10)
        self.create_subscription(String, 'gait', self._json('gait'), 10)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self.create_subscription(MarkerArray, 'markers', self._on_markers, 10)
        self._update_pub = self.create_publisher(String, 'model/update', RELIABLE_QOS)
        self._rgb_pub = self.create_publisher(Image, COLOR_TOPIC, SENSOR_QOS)
        self._depth_pub = self.create_publisher(Image, DEPTH_TOPIC, SENSOR_QOS)
        self.updated = False
        self.injected = False
        self._params = AsyncParameterClient(self, 'perception')
        self._pending_set = None

    def _seen(self) -> float:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        return now

    def _on_labels(self, msg: Image) -> None:
        labels = np.frombuffer(msg.data, np.uint8)
        self.record['labels'].append(
            {
                'arrival': self._seen(),
                'wall_ns': time.time_ns(),
                'stamp_ns': _stamp_ns(msg.header),
                'encoding': msg.encoding,
                'shape': [msg.height, msg.width],
                'max': int(labels.max()) if labels.size else -1,
            }
        )

    def _on_overlay(self, msg: Image) -> None:
        self.record['overlay'].append({'stamp_ns': _stamp_ns(msg.header), 'enc': msg.encoding})

    def _on_score(self, msg: Float32) -> None:
        self.record['score'].append({'arrival': self._seen(), 'score': msg.data})

    def _on_alarm(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            values = {kv.key: kv.value for kv in s.values}
            self.record['alarm'].append(
                {**values, 'arrival': self._seen(), 'level': s.level[0], 'message': s.message}
            )

    def _on_sample(self, msg: String) -> None:
        self.record['sample'].append(json.loads(msg.data))

    def _on_version(self, msg: String) -> None:
        self.record['version'].append({'arrival': self._seen(), 'version': msg.data})

    def _json(self, key: str):
        def callback(msg: String) -> None:
            self.record[key].append(json.loads(msg.data))

        return callback

    def _on_markers(self, msg: MarkerArray) -> None:
        self.record['markers'].append([m.text for m in msg.markers])

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            values = {kv.key: kv.value for kv in s.values}
            self.record['diagnostics'].append(
                {**values, 'name': s.name, 'level': s.level[0], 'message': s.message}
            )

    def _set_parameters(self) -> None:
        """Send ``--set name=json`` once the node's parameter service is up; record results."""
        if self._pending_set is None and self._params.services_are_ready():
            params = [
                Parameter(name, value=json.loads(value))
                for name, value in (item.split('=', 1) for item in self.args.set)
            ]
            self._pending_set = (params, self._params.set_parameters(params))
        elif self._pending_set is not None and self._pending_set[1].done():
            params, future = self._pending_set
            for p, r in zip(params, future.result().results, strict=True):
                self.record['set'].append(
                    {'name': p.name, 'successful': r.successful, 'reason': r.reason}
                )
            self.args.set = []

    def big_frame_labelled(self) -> bool:
        return any(lb['shape'] == list(self.args.big_frame) for lb in self.record['labels'])

    def _publish_big_frame(self, now: float) -> None:
        """A 3840x2160 rgb8 frame every 0.5 s until its labels come back: a 25 MB best-effort
        message needs room in the shared-memory segment to arrive, so one send may be lost."""
        if self.big_frame_labelled():
            return
        height, width = self.args.big_frame
        if self.record['injected'] and now - self.record['injected'][-1]['arrival'] < 0.5:
            return
        y, x = np.mgrid[0:height, 0:width]
        frame = np.stack([x * 255 // width, y * 255 // height, (x // 64 + y // 64) % 2 * 200], 2)
        self._rgb_pub.publish(numpy_to_image(frame.astype(np.uint8), 'rgb8', _header()))
        self.record['injected'].append({'case': 'big frame', 'arrival': now})

    def step(self) -> None:
        now = time.monotonic()
        if self.args.big_frame and self.first is not None:
            self._publish_big_frame(now)
        if self.args.set:
            self._set_parameters()
        if self.args.update and not self.updated and self.first is not None:
            if now - self.first >= self.args.update_after:
                self._update_pub.publish(String(data=self.args.update))
                self.record['injected'].append({'update': self.args.update, 'arrival': now})
                self.updated = True
        if self.args.inject_bad and not self.injected and self.record['labels']:
            self.injected = True
            for case, build in BAD_INPUTS.items():
                for _ in range(2):  # repeated: a frame may lose to a newer camera frame
                    rgb, depth = build()
                    if depth is not None:
                        self._depth_pub.publish(depth)
                    self._rgb_pub.publish(rgb)
                    time.sleep(0.15)
                self.record['injected'].append({'case': case, 'arrival': time.monotonic()})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--seconds', type=float, required=True)
    parser.add_argument('--timeout', type=float, default=30.0)
    parser.add_argument('--update', default='')
    parser.add_argument('--update-after', type=float, default=2.0)
    parser.add_argument('--inject-bad', action='store_true')
    parser.add_argument('--big-frame', type=int, nargs=2, metavar=('HEIGHT', 'WIDTH'))
    parser.add_argument('--namespace', default='/')
    parser.add_argument('--set', action='append', default=[], help='name=json value')
    args = parser.parse_args()
    rclpy.init()
    node = Probe(args)
    try:
        while True:
            rclpy.spin_once(node, timeout_sec=0.02)
            node.step()
            now = time.monotonic()
            if node.first is not None and now - node.first >= args.seconds:
                break
            if args.big_frame and node.big_frame_labelled():
                break
            if node.first is None and now - node.started >= args.timeout:
                break
        print(json.dumps(node.record))
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
