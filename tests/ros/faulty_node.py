"""Run a node with one function patched to raise, for tests of what an unexpected exception in a
real node's thread does::

    python tests/ros/faulty_node.py NODE_MODULE TARGET EXCEPTION TIMES --ros-args ...

TARGET is ``module:Class.attribute`` (or ``module:function``); the patched function raises
``EXCEPTION('injected by the test')`` (RuntimeError, or SystemExit, which ends a thread) on its
first TIMES calls (-1: every call), then does what it did before.
"""

from __future__ import annotations

import importlib
import sys
import threading

EXCEPTIONS = {'RuntimeError': RuntimeError, 'SystemExit': SystemExit}


def patch(target: str, error: type[BaseException], times: int) -> None:
    module_name, _, path = target.partition(':')
    owner = importlib.import_module(module_name)
    *parents, name = path.split('.')
    for parent in parents:
        owner = getattr(owner, parent)
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


def main() -> int:
    node_module, target, error, times, *ros_args = sys.argv[1:]
    patch(target, EXCEPTIONS[error], int(times))
    sys.argv = [sys.argv[0], *ros_args]  # rclpy reads the ROS arguments from sys.argv
    return importlib.import_module(node_module).main()


if __name__ == '__main__':
    sys.exit(main())
