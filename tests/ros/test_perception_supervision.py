"""perception node in a subprocess: its processing thread survives an unexpected exception, which
/diagnostics counts and reports, and a processing thread that is gone is an ERROR naming it (the
executor publishes it, since that thread is the one that normally does)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from robo_lifelong.nodes.perception_node import NODE_STATUS_NAME
from tests.ros.diagnostics_listener import DiagnosticsListener

pytestmark = pytest.mark.ros

DOMAIN_ID = random.Random(os.getpid() + 18).randint(100, 149)  # this module's private domain
FAULTY_NODE = Path(__file__).with_name('faulty_node.py')
PERCEPTION = 'robo_lifelong.nodes.perception_node'
# runs on the processing thread, frames or not
TICK = 'robo_lifelong.perception.pipeline:Pipeline.tick'
ERROR, STALE = b'\x02', b'\x03'


@pytest.fixture
def listener():
    lis = DiagnosticsListener(DOMAIN_ID)
    yield lis
    lis.close()


def start(tmp_path: Path, error: str, times: int) -> subprocess.Popen:
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), PYTHONUNBUFFERED='1')
    env.setdefault('AMENT_PREFIX_PATH', sys.prefix)
    cmd = [
        sys.executable, str(FAULTY_NODE), PERCEPTION, TICK, error, str(times),
        '--ros-args', '-p', f'spool_dir:={tmp_path / "spool"}', '-p', 'diagnostics_period_s:=0.2',
    ]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.stdout.read().decode(errors='replace')


def test_processing_thread_counts_an_unexpected_exception_and_carries_on(tmp_path, listener):
    proc = start(tmp_path, 'RuntimeError', 2)
    try:
        assert listener.spin_until(
            lambda: (
                (listener.last(NODE_STATUS_NAME) or {}).get('perception.total_failures') == '2'
            ),
            60,
        ), listener.last(NODE_STATUS_NAME)
        received = len(listener.statuses[NODE_STATUS_NAME])
        # still ticking: diagnostics keep coming from the thread that raised
        assert listener.spin_until(
            lambda: len(listener.statuses[NODE_STATUS_NAME]) >= received + 3, 60
        )
        last = listener.last(NODE_STATUS_NAME)
        assert last['perception.alive'] == 'True' and last['perception.failures'] == '0'
        assert last['perception.last_error'] == 'RuntimeError: injected by the test'
        assert last['level'] == STALE and last['message'].startswith('no model loaded')
        assert last['sample-writer.alive'] == 'True' and last['model-watch.alive'] == 'True'
    finally:
        log = stop(proc)
    assert proc.returncode == 0, log
    assert 'Traceback' in log and 'RuntimeError: injected by the test' in log


def test_a_dead_processing_thread_is_a_diagnostics_error_naming_it(tmp_path, listener):
    # SystemExit is no Exception: it ends the thread it is raised in, as a supervisor bug might
    proc = start(tmp_path, 'SystemExit', -1)
    try:
        assert listener.spin_until(
            lambda: (listener.last(NODE_STATUS_NAME) or {}).get('level') == ERROR, 60
        ), listener.last(NODE_STATUS_NAME)
        last = listener.last(NODE_STATUS_NAME)
        assert last['message'] == 'thread perception is not running'
        assert last['perception.alive'] == 'False'
        assert proc.poll() is None
    finally:
        log = stop(proc)
    assert proc.returncode == 0, log
