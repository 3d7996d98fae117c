"""Test helper: the perception node with a gate in its model loader, for the hot-swap test.

    python -m tests.ros.gated_perception --ros-args ...

A package directory holding a ``gate`` directory is held half loaded: the watcher thread has
read the package and built the onnxruntime session, then writes ``gate/reached`` and waits for
``gate/open`` before the smoke inference and the swap. The test creates that moment instead of
hoping a load takes long enough to be seen: while the loader waits, frames must go on being
processed by the model in use. Packages without a gate load as they always do.
"""

from __future__ import annotations

import sys
import time

from robo_lifelong.models import watch as model_watch
from robo_lifelong.nodes import perception_node

GATE = 'gate'
GATE_LIMIT_S = 300.0  # a test that never opens the gate must not hang the node's shutdown

_smoke_test = model_watch.smoke_test


def gated_smoke_test(runtime) -> None:
    gate = runtime.package.path / GATE
    if gate.is_dir():
        (gate / 'reached').touch()
        give_up = time.monotonic() + GATE_LIMIT_S
        while not (gate / 'open').exists() and time.monotonic() < give_up:
            time.sleep(0.01)
    _smoke_test(runtime)


def main() -> int:
    # load_model looks smoke_test up at call time, so the watcher thread gets the gated one
    model_watch.smoke_test = gated_smoke_test
    return perception_node.main()


if __name__ == '__main__':
    sys.exit(main())
