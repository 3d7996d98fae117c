"""Model delivery on a running robot: bridge and perception in subprocesses (real rclpy).

The deploy pointer names v1, then v2, then v1 again (what ``robo-lifelong-job rollback --to 1``
writes; tests/cloud/controller/test_controller_cli.py runs the command itself): perception swaps
each time, through the one channel (the bridge's ``models_dir/current.json``). After a restart of
both nodes the robot still runs v1, although v2 has the higher version and is still installed.

Every wait ends on an event (a node's log line, bridge polls counted on bridge/status), bounded
generously; nothing is judged by how long it took.
"""

from __future__ import annotations

import json
import os
import random
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from robo_lifelong.models import package as mp
from robo_lifelong.models.installed import read_installed
from robo_lifelong.models.watch import model_version
from robo_lifelong.transfer import model_store
from tests.ros.diagnostics_listener import DiagnosticsListener
from tests.ros.model_fixture import cached_package, with_version
from tests.ros.node_process import NodeProcess, ros_environ

pytestmark = pytest.mark.ros

DOMAIN_ID = random.Random(os.getpid() + 7).randint(100, 200)
BRIDGE = 'robo_lifelong.nodes.bridge_node'
PERCEPTION = 'robo_lifelong.nodes.perception_node'
TIMEOUT_S = 120.0  # only a broken node takes this long


@pytest.fixture(scope='module')
def package(tmp_path_factory: pytest.TempPathFactory) -> mp.ModelPackage:
    return cached_package(tmp_path_factory.getbasetemp() / 'perception-model')


@pytest.fixture
def listener():
    lis = DiagnosticsListener(DOMAIN_ID)
    yield lis
    lis.close()


class Robot:
    """Bridge and perception sharing ``<root>/models``, the way robot.launch.py starts them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pointer = root / 'deploy' / 'index.pkl'
        self.models = root / 'models'
        self.env = ros_environ(DOMAIN_ID)
        self.starts = 0
        self.bridge: NodeProcess | None = None
        self.perception: NodeProcess | None = None

    def deploy(self, package: mp.ModelPackage) -> None:
        model_store.write_pointer(
            str(self.pointer), mp.DeployPointer.for_package(package, str(package.path))
        )

    def start(self) -> None:
        self.starts += 1
        logs = self.root / f'run{self.starts}'  # a restart's logs apart from the first run's
        common = ['-p', f'spool_dir:={self.root / "spool"}', '-p', 'robot_id:=delivery']
        self.bridge = NodeProcess.python_module(
            BRIDGE,
            [
                *common,
                '-p', f'storage_url:={self.root / "store"}',
                '-p', f'model_url:={self.pointer}',
                '-p', f'models_dir:={self.models}',
                '-p', 'model_poll_s:=0.2',
                '-p', 'status_period_s:=0.2',
            ],
            self.env,
            logs,
        )  # fmt: skip
        self.perception = NodeProcess.python_module(
            PERCEPTION,
            [
                *common,
                '-p', f'model_watch_dir:={self.models}',
                '-p', 'model_poll_s:=0.2',
                '-p', 'use_depth:=false',
            ],
            self.env,
            logs,
        )  # fmt: skip

    def stop(self) -> None:
        for node in (self.perception, self.bridge):
            code, _ = node.interrupt(timeout=60)
            assert code == 0, node.output

    def kill(self) -> None:
        for node in (self.perception, self.bridge):
            if node is not None:
                node.kill()

    def wait_in_use(self, package: mp.ModelPackage, times: int = 1) -> None:
        """Until perception logged ``times`` swaps to ``package`` since it started."""
        text = f'model {model_version(package)} in use'
        deadline = time.monotonic() + TIMEOUT_S
        while self.perception.output.count(text) < times:
            if self.perception.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f'never {text!r}:\n{self.perception.output}')
            time.sleep(0.05)


def bridge_polls(listener: DiagnosticsListener, since: datetime) -> int:
    """Deploy-pointer polls after ``since`` that bridge/status has shown (each has its own
    last_check)."""
    checks = {json.loads(s)['models']['last_check'] for s in listener.status}
    return sum(1 for c in checks if c and datetime.fromisoformat(c) > since)


def test_rollback_is_followed_and_survives_a_restart_of_every_node(
    tmp_path: Path, package: mp.ModelPackage, listener: DiagnosticsListener
) -> None:
    v1 = with_version(package, tmp_path / 'v1', 1)
    v2 = with_version(package, tmp_path / 'v2', 2)
    robot = Robot(tmp_path)
    robot.deploy(v1)
    robot.start()
    try:
        robot.wait_in_use(v1)
        robot.deploy(v2)
        robot.wait_in_use(v2)
        robot.deploy(v1)  # the rollback
        robot.wait_in_use(v1, times=2)
        assert read_installed(robot.models).content_hash == v1.content_hash
        robot.stop()

        restarted = datetime.now(timezone.utc)
        robot.start()
        robot.wait_in_use(v1)
        # started with a record: no warning about a missing model while the record's loads
        assert 'no model loaded' not in robot.perception.output
        # the restarted bridge polled the pointer three times: nothing changed, v1 stays
        assert listener.spin_until(lambda: bridge_polls(listener, restarted) >= 3, TIMEOUT_S)
        assert model_version(v2) not in robot.perception.output
        assert read_installed(robot.models).content_hash == v1.content_hash
        assert (robot.models / v2.content_hash / mp.MANIFEST_FILE).is_file()  # still there
        robot.stop()
    finally:
        robot.kill()
