"""The core's Python ``logging`` reaches the node's logger and /rosout (nodes/spin.py).

The handler is checked with a recording logger (levels, module prefix, tracebacks), and
``run`` end to end in this process: a node's timer logs through a core module's logger, the
node hears the line on /rosout and stops ``run`` with SIGINT, as a user would. Nothing waits
for time to pass; a 60 s failsafe only ends a run that would otherwise never stop.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading

import pytest
from rcl_interfaces.msg import Log
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

from robo_lifelong.nodes.spin import (
    CORE_LOGGER,
    NodeLogHandler,
    route_core_logging,
    run,
    unroute_core_logging,
)

pytestmark = pytest.mark.ros

CORE_MODULE = f'{CORE_LOGGER}.transfer.uploader'
FAILSAFE_S = 60.0


class Recorder:
    """A ROS logger's interface, recording ``(method, text)``; effective level INFO (20)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def get_effective_level(self) -> int:
        return logging.INFO

    def __getattr__(self, method: str):
        if method not in ('debug', 'info', 'warning', 'error', 'fatal'):
            raise AttributeError(method)
        return lambda text: self.lines.append((method, text))


def test_each_level_reaches_the_ros_logger_named_by_module() -> None:
    recorder = Recorder()
    handler = route_core_logging(recorder)
    core = logging.getLogger(CORE_MODULE)
    try:
        core.debug('below the node logger level: not formatted, not sent')
        core.info('info %d', 1)
        core.warning('warning')
        core.error('error')
        core.critical('critical')
        try:
            raise OSError('disk gone')
        except OSError:
            core.exception('spool failed')
        logging.getLogger('elsewhere').error('not the core: not routed')
    finally:
        unroute_core_logging(handler)
    prefix = f'{CORE_MODULE}: '
    assert recorder.lines[:4] == [
        ('info', prefix + 'info 1'),
        ('warning', prefix + 'warning'),
        ('error', prefix + 'error'),
        ('fatal', prefix + 'critical'),
    ]
    method, text = recorder.lines[4]
    assert method == 'error' and text.startswith(prefix + 'spool failed\nTraceback')
    assert 'OSError: disk gone' in text and len(recorder.lines) == 5
    assert not any(isinstance(h, NodeLogHandler) for h in logging.getLogger(CORE_LOGGER).handlers)


def test_run_puts_core_log_lines_on_rosout(monkeypatch) -> None:
    monkeypatch.setenv('ROS_DOMAIN_ID', str(random.randint(100, 200)))
    heard: list[Log] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def stop() -> None:
        os.kill(os.getpid(), signal.SIGINT)

    def on_log(msg: Log) -> None:
        if 'upload failed' in msg.msg and not heard:
            heard.append(msg)
            stop()

    def make_node() -> Node:
        node = Node('spin_probe')
        rosout = QoSProfile(
            depth=100,
            reliability=QoSReliabilityPolicy.RELIABLE,
            durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
        )
        node.create_subscription(Log, '/rosout', on_log, rosout)
        log = logging.getLogger(CORE_MODULE)
        # again at every tick until heard: the subscription may match after the first line
        node.create_timer(0.05, lambda: log.warning('upload failed: %s', 'endpoint refused'))
        return node

    failsafe = threading.Timer(FAILSAFE_S, stop)
    failsafe.start()
    try:
        assert run(make_node, 'spin_probe', args=[]) == 0
    finally:
        failsafe.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert heard, f'no core log line on /rosout within {FAILSAFE_S} s'
    assert heard[0].name == 'spin_probe'
    assert heard[0].level == Log.WARN
    assert heard[0].msg == f'{CORE_MODULE}: upload failed: endpoint refused'
    core = logging.getLogger(CORE_LOGGER)
    assert core.propagate and not any(isinstance(h, NodeLogHandler) for h in core.handlers)
