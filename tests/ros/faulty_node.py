"""Run a node with one function patched to raise, for tests of what an unexpected exception in a
real node's thread does, or to wait at a gate the test opens::

    python tests/ros/faulty_node.py NODE_MODULE TARGET EXCEPTION TIMES --ros-args ...

TARGET is ``module:Class.attribute`` (or ``module:function``); the patched function raises
``EXCEPTION('injected by the test')`` (RuntimeError, or SystemExit, which ends a thread) on its
first TIMES calls (-1: every call), then does what it did before. EXCEPTION ``gate:PATH`` raises
nothing: the first TIMES calls (-1: every call) wait until the file PATH exists, so a test holds
the thread at that point for as it needs, instead of hoping it is slow enough. EXCEPTION
``SIGKILL`` kills the whole process (kill -9, nothing cleaned up) at the first call, as a power
cut at exactly that point would.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

EXCEPTIONS = {'RuntimeError': RuntimeError, 'SystemExit': SystemExit}
GATE_LIMIT_S = 300.0  # a test that never opens the gate must not hang the node forever


def _owner(target: str):
    module_name, _, path = target.partition(':')
    owner = importlib.import_module(module_name)
    *parents, name = path.split('.')
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name


def gate(target: str, path: Path, times: int) -> None:
    owner, name = _owner(target)
    original = getattr(owner, name)
    remaining = [times]
    lock = threading.Lock()

    def gated(*args, **kwargs):
        with lock:
            wait = remaining[0] != 0
            if wait and remaining[0] > 0:
                remaining[0] -= 1
        give_up = time.monotonic() + GATE_LIMIT_S
        while wait and not path.exists() and time.monotonic() < give_up:
            time.sleep(0.01)
        return original(*args, **kwargs)

    setattr(owner, name, gated)


def patch(target: str, error: type[BaseException], times: int) -> None:
    owner, name = _owner(target)
    original = getattr(owner, name)
    remaining = [times]
    lock = threading.Lock()

    def patched(*args, **kwargs):
        with lock:
            fire = remaining[0] != 0
            if fire and remaining[0] > 0:
                remaining[0] -= 1
        if fire:
            raise error('injected by the test')
        return original(*args, **kwargs)

    setattr(owner, name, patched)


def kill_at(target: str) -> None:
    owner, name = _owner(target)

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(owner, name, killed)


def main() -> int:
    node_module, target, error, times, *ros_args = sys.argv[1:]
    if error == 'SIGKILL':
        kill_at(target)
    elif error.startswith('gate:'):
        gate(target, Path(error.removeprefix('gate:')), int(times))
    else:
        patch(target, EXCEPTIONS[error], int(times))
    sys.argv = [sys.argv[0], *ros_args]  # rclpy reads the ROS arguments from sys.argv
    return importlib.import_module(node_module).main()


if __name__ == '__main__':
    sys.exit(main())
