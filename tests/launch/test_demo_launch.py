"""launch_testing: demo.launch.py (sim camera + perception + bridge) on real topics.

Needs launch_testing (a ROS 2 install; no package registry has it) and the package installed
in an ament prefix (the launch file finds its nodes there); skipped under pytest elsewhere.
From the repository root, with ``ROSTOOLS_SITE`` the site-packages directory that holds
launch_testing (``source /tmp/rostools/env.sh`` sets it for the tools built there)::

    make test-model                                  # the test model package, once (torch)
    (cd ros2_ws && ../.venv/bin/colcon build)        # the nodes run with .venv's Python
    source ros2_ws/install/local_setup.bash
    ROBO_LIFELONG_TEST_MODEL_CACHE=$PWD/.cache/test-model PYTHONPATH=$PWD:$ROSTOOLS_SITE \
        .venv/bin/python -m launch_testing.launch_test tests/launch/test_demo_launch.py

.venv's Python, not the tools' own: the test imports this project's modules and their
dependencies (jsonschema, onnxruntime, ...). Everything asserted here is also covered without
launch_testing by tests/ros/ (nodes started as subprocesses on real topics).
"""

import os
import tempfile
import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip(
    'launch_testing',
    reason='launch_testing is not installed (it comes with a ROS 2 install, not from PyPI); '
    'tests/ros/ covers the same behaviour with nodes in subprocesses',
)

import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.qos import QoSProfile, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from robo_lifelong.nodes.qos import LATCHED_QOS  # noqa: E402
from tests.ros.model_fixture import cached_package  # noqa: E402

NS = '/robo_lifelong'
WORK = Path(tempfile.mkdtemp(prefix='robo_lifelong_launch_'))
# bound of every wait: they end on what is heard, and only a broken launch takes this long
BOUND_S = 180.0


@pytest.mark.launch_test
def generate_test_description():
    package = cached_package(WORK / 'model')
    demo = os.path.join(get_package_share_directory('robo_lifelong'), 'launch', 'demo.launch.py')
    args = {
        'schedule': 'sunny:8,snow:20,sunny:30',
        'rate_hz': '10.0',
        'width': '212',
        'height': '120',
        'model_path': str(package.path),
        'data_dir': str(WORK / 'data'),
        'storage_url': str(WORK / 'storage'),
        'ground_truth_dir': str(WORK / 'ground_truth'),
    }
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(demo), launch_arguments=args.items()
    )
    return LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestDemoTopics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node('launch_test_probe')
        cls.labels, cls.alarms, cls.bridge = [], [], []
        cls.node.create_subscription(
            Image, f'{NS}/segmentation/labels', cls.labels.append, qos_profile_sensor_data
        )
        cls.node.create_subscription(
            DiagnosticArray, f'{NS}/alarm', cls.alarms.append, LATCHED_QOS
        )
        cls.node.create_subscription(
            DiagnosticArray, '/diagnostics', cls._on_diagnostics, QoSProfile(depth=50)
        )

    @classmethod
    def _on_diagnostics(cls, msg):
        cls.bridge += [s for s in msg.status if 'bridge' in s.name]

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def _spin_until(self, done, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not done():
            rclpy.spin_once(self.node, timeout_sec=0.1)
        return done()

    def test_labels_are_published_with_the_input_size(self):
        self.assertTrue(self._spin_until(lambda: len(self.labels) >= 5, BOUND_S))
        msg = self.labels[-1]
        self.assertEqual((msg.encoding, msg.width, msg.height), ('mono8', 212, 120))

    def test_alarm_escalates_on_the_unseen_task(self):
        def reached_error():
            return any(
                _level(s) == _level_value(DiagnosticStatus.ERROR)
                for a in self.alarms
                for s in a.status
            )

        self.assertTrue(self._spin_until(reached_error, BOUND_S))

    def test_bridge_reports_diagnostics(self):
        def upload_status():
            return [s for s in self.bridge if any('backlog' in kv.key for kv in s.values)]

        self.assertTrue(self._spin_until(lambda: bool(upload_status()), BOUND_S))


def _level_value(level) -> int:
    """diagnostic_msgs levels are a `byte` field: bytes of length 1 in rclpy."""
    return level[0] if isinstance(level, bytes) else int(level)


def _level(status) -> int:
    return _level_value(status.level)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_nodes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
