"""recorder: records the camera stream with the simulator's ground truth into a Sedna dataset.

Subscribes to the RGB and aligned depth topics, pairs them by stamp, looks up the labels the sim
camera stored for that stamp (the perception side never reads them) and appends the sample to a
Sedna txt dataset. Used by the demo; on a real robot there is no ground truth to record.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import Image

from ..dataset import DatasetWriter
from ..errors import RoboLifelongError
from ..frame_sync import FrameSync, Pair
from ..image_conversion import image_to_numpy
from ..sim.ground_truth import GroundTruthStore
from .qos import SENSOR_QOS
from .spin import run

GROUND_TRUTH_WAIT_NS = 2_000_000_000  # the sim camera stores labels just before publishing


@dataclass(frozen=True)
class RecorderConfig:
    out_dir: str
    ground_truth_dir: str
    every_n: int


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__('recorder')
        self.config = RecorderConfig(
            out_dir=self._param('out_dir', 'dataset', 'Sedna dataset directory (appended to)'),
            ground_truth_dir=self._param(
                'ground_truth_dir', '', 'the sim camera ground_truth_dir to read labels from'
            ),
            every_n=self._param('every_n', 1, 'record every n-th paired frame'),
        )
        if not self.config.ground_truth_dir:
            raise RoboLifelongError('parameter ground_truth_dir is required')
        self.truth = GroundTruthStore(self.config.ground_truth_dir)
        self.writer = DatasetWriter(self.config.out_dir)
        self.sync: FrameSync[Image, Image] = FrameSync(max_wait_s=0.1)
        self.pending: list[Pair[Image, Image]] = []
        self.paired = 0
        self.recorded = 0
        self.missing_truth = 0
        self.create_subscription(Image, 'camera/color/image_raw', self._on_rgb, SENSOR_QOS)
        self.create_subscription(
            Image, 'camera/aligned_depth_to_color/image_raw', self._on_depth, SENSOR_QOS
        )
        self.create_timer(0.05, self._flush)

    def _param(self, name: str, default, description: str):
        descriptor = ParameterDescriptor(description=description)
        return self.declare_parameter(name, default, descriptor).value

    def _on_rgb(self, msg: Image) -> None:
        self._offer(self.sync.add_rgb(_stamp_ns(msg), msg, self.get_clock().now().nanoseconds))

    def _on_depth(self, msg: Image) -> None:
        self._offer(self.sync.add_depth(_stamp_ns(msg), msg))

    def _offer(self, pair: Pair[Image, Image] | None) -> None:
        if pair is None:
            return
        self.paired += 1
        if self.paired % self.config.every_n == 0:
            self.pending.append(pair)

    def _flush(self) -> None:
        now = self.get_clock().now().nanoseconds
        self._offer(self.sync.expire(now))
        waiting = []
        for pair in self.pending:
            found = self.truth.nearest(pair.stamp_ns, tolerance_ns=1_000_000)
            if found is not None:
                self._record(pair, found[1], found[2])
            elif now - pair.stamp_ns < GROUND_TRUTH_WAIT_NS:
                waiting.append(pair)
            else:
                self.missing_truth += 1
                self.get_logger().warning(
                    f'no ground truth for stamp {pair.stamp_ns}; frame not recorded',
                    throttle_duration_sec=5.0,
                )
        self.pending = waiting

    def _record(self, pair: Pair[Image, Image], labels, task: str) -> None:
        try:
            rgb = image_to_numpy(pair.rgb)
            depth = image_to_numpy(pair.depth) if pair.depth is not None else None
            self.writer.write(rgb, depth, labels, task)
        except RoboLifelongError as e:
            self.get_logger().error(
                f'frame {pair.stamp_ns} not recorded: {e}', throttle_duration_sec=5.0
            )
            return
        self.recorded += 1
        if self.recorded % 25 == 0:
            self.get_logger().info(f'recorded {self.recorded} samples ({task})')

    def destroy_node(self) -> None:
        self.writer.close()
        self.get_logger().info(
            f'recorded {self.recorded} samples to {self.config.out_dir} '
            f'({self.paired} frames paired, {self.missing_truth} without ground truth, '
            f'{self.sync.dropped} dropped)'
        )
        super().destroy_node()


def _stamp_ns(msg: Image) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def main(args: list[str] | None = None) -> int:
    return run(RecorderNode, 'recorder', args)


if __name__ == '__main__':
    sys.exit(main())
