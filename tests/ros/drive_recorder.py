"""Test helper run as a subprocess: records a live drive as bags and prints what the node said.

Keeps every camera frame (colour + aligned depth) it hears (``camera heard`` on stderr after the
first), the perception node's labels' stamps, alarm statuses and ``unseen/sample`` events, until
``--after-ok`` seconds after the alarm returned to OK from ERROR (or ``--timeout``). The newest
labels then mark the cut. Samples are spooled in the node's writer thread, so their events come
later: it listens on until the node's status on /diagnostics accounts for them (counted, not
waited for: see ``_cut_samples_announced``), and keeps the events of frames up to the cut. Then
writes the frames the node processed up to the cut (those whose stamp came back on
``segmentation/labels``) as ``OUT/sqlite3`` and ``OUT/mcap`` bags, and prints one JSON object.
Reader queues are deep, so a frame is not lost because this process waited for a core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from robo_lifelong.io.bags import COLOR_TOPIC, DEPTH_TOPIC, BagWriter, header, image, stamp_ns
from robo_lifelong.io.image_conversion import image_to_numpy
from robo_lifelong.nodes.perception_node import NODE_STATUS_NAME
from robo_lifelong.nodes.qos import LATCHED_QOS, RELIABLE_QOS

IMAGE = 'sensor_msgs/msg/Image'
# best effort like the camera (SENSOR_QOS) and reliable like the node's outputs, with seconds
# of reader history
DEEP_SENSOR_QOS = QoSProfile(depth=200, reliability=ReliabilityPolicy.BEST_EFFORT)
DEEP_QOS = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
SAMPLE_COUNTS = ('samples_collected', 'samples_spooled', 'samples_refused')  # node status keys


class Recorder(Node):
    def __init__(self) -> None:
        super().__init__('drive_recorder')
        self.frames: dict[str, dict[int, tuple[np.ndarray, str, str]]] = {'rgb': {}, 'depth': {}}
        self.labels: list[int] = []
        self.alarm: list[dict] = []
        self.samples: list[dict] = []
        self.events = 0  # unseen/sample events heard, those after the cut too
        self.cut_arrival_ns: int | None = None  # when the labels of the cut frame arrived
        self.samples_announced = False
        self.back_to_ok: float | None = None  # when the alarm went from ERROR back to OK
        self.cut: int | None = None  # stamp of the last frame kept
        self.past_cut = False  # labels of a frame after the cut arrived: later alarms are not ours
        rgb, depth = COLOR_TOPIC.lstrip('/'), DEPTH_TOPIC.lstrip('/')
        self.create_subscription(Image, rgb, self._keep('rgb'), DEEP_SENSOR_QOS)
        self.create_subscription(Image, depth, self._keep('depth'), DEEP_SENSOR_QOS)
        self.create_subscription(Image, 'segmentation/labels', self._on_labels, DEEP_QOS)
        self.create_subscription(DiagnosticArray, 'alarm', self._on_alarm, LATCHED_QOS)
        self.create_subscription(String, 'unseen/sample', self._on_sample, RELIABLE_QOS)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, DEEP_QOS)
        self.label_arrivals: dict[int, int] = {}  # stamp -> arrival, time.time_ns()

    def _keep(self, kind: str):
        def callback(msg: Image) -> None:
            if not any(self.frames.values()):
                print('camera heard', file=sys.stderr, flush=True)
            pixels = image_to_numpy(msg).copy()  # the message buffer is not ours to keep
            self.frames[kind][stamp_ns(msg.header)] = (pixels, msg.encoding, msg.header.frame_id)

        return callback

    def _on_labels(self, msg: Image) -> None:
        stamp = stamp_ns(msg.header)
        if self.cut is not None and stamp > self.cut:
            self.past_cut = True
            return
        self.labels.append(stamp)
        self.label_arrivals[stamp] = time.time_ns()

    def _on_alarm(self, msg: DiagnosticArray) -> None:
        if self.past_cut:
            return
        for s in msg.status:
            level = s.level[0]
            was_error = any(a['level'] == 2 for a in self.alarm)
            if level == 0 and was_error and self.back_to_ok is None:
                self.back_to_ok = time.monotonic()
            self.alarm.append({'level': level, 'message': s.message})

    def _on_sample(self, msg: String) -> None:
        event = json.loads(msg.data)
        self.events += 1
        if self.cut is None or event['stamp'] <= self.cut * 1e-9 + 1e-6:
            self.samples.append(event)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            if s.name == NODE_STATUS_NAME and self.cut_arrival_ns is not None:
                values = {kv.key: int(kv.value) for kv in s.values if kv.key in SAMPLE_COUNTS}
                self._cut_samples_announced(stamp_ns(msg.header), values)

    def _cut_samples_announced(self, status_ns: int, values: dict[str, int]) -> None:
        """Whether every sample of the frames up to the cut has been announced, from a node
        status taken at ``status_ns``. The node's processing thread publishes a frame's labels,
        counts the frame, later takes the status's counters and then its stamp: labels that
        arrived before that stamp belong to frames the status counts. If those frames' samples
        are all finished (spooled or refused) and as many events arrived as it spooled, the
        events of the cut's frames (published in order, on one reliable topic) are all here."""
        if status_ns <= self.cut_arrival_ns:
            return
        finished = values['samples_spooled'] + values['samples_refused']
        if finished == values['samples_collected'] and self.events >= values['samples_spooled']:
            self.samples_announced = True

    def write(self, out: Path) -> list[int]:
        """Write the processed frames as bags; returns the processed stamps not recorded."""
        missing = [s for s in self.labels if s not in self.frames['rgb']]
        for storage in ('sqlite3', 'mcap'):
            with BagWriter(out / storage, storage) as bag:
                for stamp in sorted(set(self.labels) - set(missing)):
                    for kind, topic in (('rgb', COLOR_TOPIC), ('depth', DEPTH_TOPIC)):
                        if stamp in self.frames[kind]:
                            pixels, encoding, frame_id = self.frames[kind][stamp]
                            msg = image(pixels, encoding, header(stamp, frame_id))
                            bag.write(topic, IMAGE, msg, stamp)
        return missing


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--out', type=Path, required=True)
    parser.add_argument('--after-ok', type=float, default=1.0)
    parser.add_argument('--grace', type=float, default=60.0, help='bound of the wait for events')
    parser.add_argument('--timeout', type=float, default=90.0)
    args = parser.parse_args()
    rclpy.init()
    node = Recorder()
    started = time.monotonic()
    try:
        while True:
            rclpy.spin_once(node, timeout_sec=0.02)
            now = time.monotonic()
            done = node.back_to_ok is not None and now - node.back_to_ok >= args.after_ok
            if node.cut is None and node.labels and (done or now - started >= args.timeout):
                node.cut, cut_at = node.labels[-1], now
                node.cut_arrival_ns = node.label_arrivals[node.cut]
            if node.cut is not None and (node.samples_announced or now - cut_at >= args.grace):
                break
            if now - started >= args.timeout + args.grace:
                break
        missing = node.write(args.out)
        print(
            json.dumps(
                {
                    'labels': node.labels,
                    'alarm': node.alarm,
                    'samples': node.samples,
                    'missing': missing,
                    'samples_announced': node.samples_announced,
                }
            )
        )
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
