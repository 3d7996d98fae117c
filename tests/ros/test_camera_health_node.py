"""The perception node's camera status on /diagnostics: all-black frames on its camera topic (the
issue's 30 black frames) raise "robo_lifelong: camera <topic>", not the unseen alarm, and no
sample is spooled. The node runs in a subprocess; this process publishes the frames and listens.
Every wait is for an event (a status heard), bounded generously; nothing sleeps."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sensor_msgs.msg import Image

from robo_lifelong.models import package as mp
from robo_lifelong.nodes.images import numpy_to_image
from robo_lifelong.nodes.perception_node import ALARM_NAME
from robo_lifelong.nodes.qos import SENSOR_QOS
from robo_lifelong.perception.alarm_policy import AlarmLevel
from robo_lifelong.perception.camera_health import CAMERA_STATUS_PREFIX
from robo_lifelong.transfer.spool import Spool
from tests.ros.diagnostics_listener import DiagnosticsListener
from tests.ros.model_fixture import cached_package
from tests.ros.node_process import NodeProcess, ros_environ

pytestmark = pytest.mark.ros

PERCEPTION = 'robo_lifelong.nodes.perception_node'
TOPIC = '/blackcam/camera/color/image_raw'
CAMERA_STATUS = f'{CAMERA_STATUS_PREFIX} {TOPIC}'
ROBOT = 'blackdog'  # the hardware_id: /diagnostics is shared with any other node on the domain


@pytest.fixture(scope='module')
def package(tmp_path_factory: pytest.TempPathFactory) -> mp.ModelPackage:
    return cached_package(tmp_path_factory.getbasetemp() / 'perception-model')


def test_black_frames_raise_the_camera_status_not_the_unseen_alarm(package, tmp_path) -> None:
    domain = random.randint(100, 200)
    spool_dir = tmp_path / 'spool'
    node = NodeProcess.python_module(
        PERCEPTION,
        [
            '-r', '__ns:=/blackcam',
            '-p', f'model_path:={package.path}',
            '-p', f'spool_dir:={spool_dir}',
            '-p', f'robot_id:={ROBOT}',
            '-p', 'use_depth:=false',
            '-p', 'diagnostics_period_s:=0.2',
            '-p', 'collect_min_score:=0.0',  # any frame would be a sample: none may be one
        ],
        ros_environ(domain),
        tmp_path,
    )  # fmt: skip
    listener = DiagnosticsListener(domain)
    try:
        node.wait_for_output('in use', timeout=120)
        pub = listener.node.create_publisher(Image, TOPIC, SENSOR_QOS)
        black = np.zeros((120, 212, 3), np.uint8)

        def send_and_check() -> bool:
            header = numpy_to_image(black, 'rgb8').header
            header.stamp = listener.node.get_clock().now().to_msg()
            pub.publish(numpy_to_image(black, 'rgb8', header))
            status = listener.last(CAMERA_STATUS)
            return status is not None and status['level'] == bytes([AlarmLevel.ERROR])

        # ERROR needs error_after_s (2 s) of black frames: frames keep coming until it is heard
        assert listener.spin_until(send_and_check, timeout=120), (
            f'no camera ERROR; heard {sorted(listener.statuses)}; node said {node.output[-2000:]}'
        )
        camera = listener.last(CAMERA_STATUS)
        assert camera['hardware_id'] == ROBOT and camera['fault'] == 'dark'
        assert camera['message'].startswith(f'camera fault on {TOPIC}: frame dark')
        assert camera['topic'] == TOPIC and 'dark=' in camera['fault_frames']
        levels = {bytes([level]) for level in (AlarmLevel.WARN, AlarmLevel.ERROR)}
        alarms = [s for s in listener.statuses[ALARM_NAME] if s['hardware_id'] == ROBOT]
        assert alarms and not [a for a in alarms if a['level'] in levels], alarms
        assert alarms[-1]['level'] == bytes([AlarmLevel.STALE])  # no usable frames
        assert node.proc.poll() is None
    finally:
        listener.close()
        node.kill()
    with Spool(spool_dir, 10_000_000, 100) as spool:
        assert spool.list() == []
