"""Fixtures for tests that run real ROS nodes (rclpy from the venv; never skipped if missing)."""

from __future__ import annotations

import pytest

from tests.ros.node_process import ros_environ


@pytest.fixture(scope='module')
def ros_env() -> dict[str, str]:
    """Environment for node subprocesses: Fast DDS SHM profile, venv ament prefix and a random
    ROS_DOMAIN_ID in 100-200 per test module, so modules (and parallel runs) do not cross-talk."""
    return ros_environ()
