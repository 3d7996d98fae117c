"""observer: records what the robot says on its topics, for the demo's timeline and report.

Writes ``<out_dir>/timeline.jsonl``, one JSON object per message (``t``: wall-clock seconds of
arrival, ``topic``, and the message's content) for ``alarm``, ``unseen/score``,
``unseen/sample``, ``model/version``, ``model/update``, ``sim/task`` and ``bridge/status``.
Segmentation results are kept as files named by stamp in nanoseconds, so they can be scored
against the simulator's ground truth afterwards: ``labels/<stamp>.png`` for every frame, and
``rgb/<stamp>.png`` + ``depth/<stamp>.png`` for every ``rgb_every``-th camera frame (example
pictures). Every line is flushed, so a reader sees the timeline while the robot drives.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Float32, String

from robo_lifelong.errors import ConfigError
from robo_lifelong.io.image_conversion import image_to_numpy
from robo_lifelong.nodes.parameters import declare_config
from robo_lifelong.nodes.qos import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS
from robo_lifelong.nodes.spin import run
from robo_lifelong.parameters import param

TIMELINE = 'timeline.jsonl'
_PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]


@dataclass(frozen=True)
class ObserverConfig:
    """The node's settings, each field a ROS parameter of that name, all read at start."""

    out_dir: str = field(
        default='', metadata=param('Directory of timeline.jsonl and the images (required).')
    )
    rgb_every: int = field(
        default=15, metadata=param('Keep every rgb_every-th camera frame (with its depth).', low=1)
    )

    def __post_init__(self) -> None:
        if not self.out_dir:
            raise ConfigError('parameter out_dir is required')
        if self.rgb_every < 1:
            raise ConfigError(f'rgb_every must be >= 1, got {self.rgb_every!r}')


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class ObserverNode(Node):
    def __init__(self) -> None:
        super().__init__('observer')
        config = declare_config(self, ObserverConfig)
        self.rgb_every = config.rgb_every
        self.out = Path(config.out_dir)
        for sub in ('labels', 'rgb', 'depth'):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = (self.out / TIMELINE).open('a', encoding='utf-8')
        self._lock = threading.Lock()
        self._rgb_seen = 0
        self._kept_stamps: set[int] = set()
        self.create_subscription(DiagnosticArray, 'alarm', self._on_alarm, LATCHED_QOS)
        self.create_subscription(Float32, 'unseen/score', self._on_score, 10)
        self.create_subscription(
            String, 'unseen/sample', self._json('unseen/sample'), RELIABLE_QOS
        )
        self.create_subscription(String, 'model/version', self._text('model/version'), LATCHED_QOS)
        self.create_subscription(String, 'model/update', self._text('model/update'), LATCHED_QOS)
        self.create_subscription(String, 'sim/task', self._text('sim/task'), LATCHED_QOS)
        self.create_subscription(String, 'bridge/status', self._json('bridge/status'), 10)
        self.create_subscription(Image, 'segmentation/labels', self._on_labels, 10)
        self.create_subscription(Image, 'camera/color/image_raw', self._on_rgb, SENSOR_QOS)
        self.create_subscription(
            Image, 'camera/aligned_depth_to_color/image_raw', self._on_depth, SENSOR_QOS
        )
        self.get_logger().info(f'recording the robot topics to {self.out}')

    def _write(self, topic: str, **fields) -> None:
        line = json.dumps({'t': time.time(), 'topic': topic, **fields}, sort_keys=True)
        with self._lock:
            self._file.write(line + '\n')
            self._file.flush()

    def _text(self, topic: str):
        return lambda msg: self._write(topic, data=msg.data)

    def _json(self, topic: str):
        def callback(msg: String) -> None:
            try:
                data = json.loads(msg.data)
            except json.JSONDecodeError:
                data = msg.data  # kept verbatim: the timeline records what was said
            self._write(topic, data=data)

        return callback

    def _on_score(self, msg: Float32) -> None:
        self._write('unseen/score', score=float(msg.data))

    def _on_alarm(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            self._write(
                'alarm',
                stamp_ns=_stamp_ns(msg),
                # a ROS `byte` field arrives as bytes of length 1
                level=ord(status.level) if isinstance(status.level, bytes) else int(status.level),
                message=status.message,
                values=values,
            )

    def _on_labels(self, msg: Image) -> None:
        stamp = _stamp_ns(msg)
        cv2.imwrite(str(self.out / 'labels' / f'{stamp}.png'), image_to_numpy(msg), _PNG_FAST)
        self._write('segmentation/labels', stamp_ns=stamp)

    def _on_rgb(self, msg: Image) -> None:
        self._rgb_seen += 1
        if (self._rgb_seen - 1) % self.rgb_every:
            return
        stamp = _stamp_ns(msg)
        rgb = np.asarray(image_to_numpy(msg))
        if msg.encoding == 'rgb8':
            rgb = rgb[:, :, ::-1]  # OpenCV writes BGR
        cv2.imwrite(str(self.out / 'rgb' / f'{stamp}.png'), rgb, _PNG_FAST)
        self._kept_stamps.add(stamp)

    def _on_depth(self, msg: Image) -> None:
        stamp = _stamp_ns(msg)
        if stamp in self._kept_stamps:
            self._kept_stamps.discard(stamp)
            cv2.imwrite(str(self.out / 'depth' / f'{stamp}.png'), image_to_numpy(msg), _PNG_FAST)

    def destroy_node(self) -> None:
        with self._lock:
            self._file.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run(ObserverNode, 'observer', args)


if __name__ == '__main__':
    sys.exit(main())
