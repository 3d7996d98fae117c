"""bridge node in a subprocess (real rclpy): drains a spool to local and S3 storage while
/diagnostics shows the backlog falling to zero, and announces a new model package once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String

from robo_lifelong import model_package as mp
from robo_lifelong.nodes.bridge_node import MODEL_UPDATE_TOPIC, STATUS_TOPIC
from robo_lifelong.nodes.qos import LATCHED_QOS
from robo_lifelong.spool import Spool
from robo_lifelong.storage import open_storage
from tests.core.test_model_package import ONNX, manifest
from tests.core.test_uploader import check_uploaded, fill

pytestmark = pytest.mark.ros

DOMAIN_ID = random.Random(os.getpid()).randint(150, 200)  # this module's private domain


class Listener:
    """An in-process node recording /diagnostics, bridge/status and model/update."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        self.node = rclpy.create_node('bridge_test_listener', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.diagnostics: list[dict] = []
        self.status: list[str] = []
        self.updates: list[str] = []
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self.node.create_subscription(
            String, STATUS_TOPIC, lambda m: self.status.append(m.data), 10
        )
        self.node.create_subscription(
            String, MODEL_UPDATE_TOPIC, lambda m: self.updates.append(m.data), LATCHED_QOS
        )

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == 'bridge: uploads':
                values = {kv.key: kv.value for kv in status.values}
                self.diagnostics.append(
                    dict(
                        values,
                        level=status.level,
                        message=status.message,
                        hardware_id=status.hardware_id,
                    )
                )

    def spin_until(self, condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
            if condition():
                return True
        return False

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def listener():
    lis = Listener()
    yield lis
    lis.close()


def start_bridge(params: dict, env_extra: dict | None = None) -> subprocess.Popen:
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), PYTHONUNBUFFERED='1', **(env_extra or {}))
    env.setdefault('AMENT_PREFIX_PATH', sys.prefix)
    args = sum((['-p', f'{k}:={v}'] for k, v in params.items()), [])
    cmd = [sys.executable, '-m', 'robo_lifelong.nodes.bridge_node', '--ros-args', *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop_bridge(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.stdout.read().decode(errors='replace')


def test_bridge_drains_spool_and_announces_model_once(tmp_path: Path, listener: Listener):
    robot = f'dog-{os.getpid()}'
    spool = Spool(tmp_path / 'spool', 10**12, 1000)
    pointer = tmp_path / 'deploy' / 'index.pkl'
    proc = start_bridge(
        {
            'spool_dir': tmp_path / 'spool',
            'storage_url': tmp_path / 'store',
            'robot_id': robot,
            'model_url': pointer,
            'models_dir': tmp_path / 'models',
            'upload_poll_s': 0.2,
            'model_poll_s': 0.2,
            'status_period_s': 0.2,
            'bandwidth_limit_bytes_per_s': 4000,  # ~3 samples/s: the backlog is seen falling
        }
    )
    try:
        assert listener.spin_until(lambda: listener.diagnostics, 20), 'no diagnostics'
        ids = fill(spool, 8, robot=robot, size=1000)
        assert listener.spin_until(lambda: int(listener.diagnostics[-1]['backlog_count']) >= 4, 10)
        assert listener.spin_until(
            lambda: (
                listener.diagnostics[-1]['backlog_count'] == '0'
                and listener.diagnostics[-1]['uploaded'] == '8'
            ),
            30,
        ), listener.diagnostics[-1]
        assert listener.diagnostics[-1]['level'] == b'\x00'  # OK
        check_uploaded(open_storage(str(tmp_path / 'store')), ids)

        # bridge/status is a separate message of the same period: it may arrive a beat later
        def status_drained() -> bool:
            if not listener.status:
                return False
            status = json.loads(listener.status[-1])
            return status['backlog']['count'] == 0 and status['uploads']['uploaded'] == 8

        assert listener.spin_until(status_drained, 5), listener.status[-1:]

        package = mp.write_package(tmp_path / 'pkg', ONNX, manifest(version=4))
        mp.write_pointer(str(pointer), mp.DeployPointer.for_package(package, str(package.path)))
        assert listener.spin_until(lambda: listener.updates, 15), 'no model/update'
        listener.spin_until(lambda: False, 1.5)  # several more polls: no second announcement
        assert listener.updates == [str(tmp_path / 'models' / package.content_hash)]
        assert mp.load_package(listener.updates[0]).content_hash == package.content_hash
    finally:
        log = stop_bridge(proc)
    assert proc.returncode == 0, log
    assert 'uploaded 8 samples' in log


@pytest.mark.s3
def test_bridge_uploads_to_s3_and_warns_while_unreachable(
    tmp_path, listener, s3_server, s3_bucket
):
    robot = f'dog-s3-{os.getpid()}'
    spool = Spool(tmp_path / 'spool', 10**12, 1000)
    ids = fill(spool, 5, robot=robot)
    params = {
        'spool_dir': tmp_path / 'spool',
        'storage_url': f'{s3_bucket}/fleet',
        'robot_id': robot,
        'status_period_s': 0.2,
        'backoff_max_s': 0.5,
    }
    dead = dict(s3_server.env, S3_ENDPOINT_URL='http://127.0.0.1:9')  # nothing listens there
    proc = start_bridge(params, dead)
    try:
        assert listener.spin_until(
            lambda: listener.diagnostics and listener.diagnostics[-1]['level'] == b'\x01', 30
        ), 'no WARN while S3 is unreachable'
        assert listener.diagnostics[-1]['backlog_count'] == '5'
    finally:
        log = stop_bridge(proc)
    text = log + ''.join(listener.status) + json.dumps(listener.diagnostics, default=str)
    assert s3_server.secret_key not in text and s3_server.access_key not in text

    listener.diagnostics.clear()
    proc = start_bridge(params, s3_server.env)
    try:
        assert listener.spin_until(
            lambda: listener.diagnostics and listener.diagnostics[-1]['backlog_count'] == '0', 30
        )
    finally:
        log = stop_bridge(proc)
    assert proc.returncode == 0, log
    check_uploaded(open_storage(f'{s3_bucket}/fleet', environ=s3_server.env), ids)
