"""An in-process node recording /diagnostics (per status name), bridge/status and model/update,
for tests that run nodes in subprocesses on a ROS domain of their own."""

from __future__ import annotations

import time
from collections import defaultdict

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String

from robo_lifelong.nodes.bridge_node import MODEL_UPDATE_TOPIC, STATUS_TOPIC
from robo_lifelong.nodes.qos import LATCHED_QOS


class DiagnosticsListener:
    def __init__(self, domain_id: int) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('diagnostics_test_listener', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        # status name -> its values with 'level', 'message' and 'hardware_id', in arrival order
        self.statuses: defaultdict[str, list[dict]] = defaultdict(list)
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
            values = {kv.key: kv.value for kv in status.values}
            self.statuses[status.name].append(
                dict(
                    values,
                    level=status.level,
                    message=status.message,
                    hardware_id=status.hardware_id,
                )
            )

    def last(self, name: str) -> dict | None:
        received = self.statuses.get(name)
        return received[-1] if received else None

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
