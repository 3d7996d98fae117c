"""The one main() shape every node shares: init, spin, clean shutdown on SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from robo_lifelong.errors import RoboLifelongError

_WAKE_S = 0.1  # how often spinning returns to Python, so a pending signal is acted on


def run(make_node: Callable[[], Node], name: str, args: list[str] | None = None) -> int:
    """Spin the node ``make_node`` builds until SIGINT/SIGTERM; 2 if it cannot start.

    rclpy's own signal handler would shut the context down before ``destroy_node`` runs, so the
    node could no longer log its closing summary or flush its spool. Instead both signals only set
    a flag (also when a shell started us with SIGINT ignored) that the spin loop checks each time
    it wakes up, which it does regularly even while no message arrives. A raised
    KeyboardInterrupt was seen to be lost when the signal landed inside an extension module's
    import, leaving the node running after SIGINT.
    """
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _sig, _frame: stop.set())
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = make_node()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not stop.is_set():
            executor.spin_once(timeout_sec=_WAKE_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RoboLifelongError as e:
        rclpy.logging.get_logger(name).fatal(f'cannot start: {e}')
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
