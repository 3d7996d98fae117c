"""The one main() shape every node shares: init, spin, clean shutdown on SIGINT or SIGTERM, and
the core's Python ``logging`` routed to the node's logger (so to /rosout)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from robo_lifelong.errors import RoboLifelongError

_WAKE_S = 0.1  # how often spinning returns to Python, so a pending signal is acted on
CORE_LOGGER = 'robo_lifelong'  # every core module logs to a child: logging.getLogger(__name__)


class NodeLogHandler(logging.Handler):
    """Hands each ``logging`` record to a ROS logger (``logger``, replaceable) at the same level,
    prefixed with the module that logged it. Records are passed on one for one: what the core
    throttles (``FailureLog``: a line per interval) stays throttled, nothing is throttled twice.
    """

    def __init__(self, logger: Any) -> None:
        super().__init__()
        self.logger = logger
        self.setFormatter(logging.Formatter('%(name)s: %(message)s'))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            level = record.levelno
            if level >= logging.CRITICAL:
                self.logger.fatal(text)
            elif level >= logging.ERROR:
                self.logger.error(text)
            elif level >= logging.WARNING:
                self.logger.warning(text)
            elif level >= logging.INFO:
                self.logger.info(text)
            else:
                self.logger.debug(text)
        except Exception:  # a log line must never end the thread that wrote it
            self.handleError(record)


def route_core_logging(logger: Any) -> NodeLogHandler:
    """Send the core's ``logging`` (the ``robo_lifelong`` logger tree) to the ROS ``logger`` only,
    at that logger's level (rclpy's severities are Python's numbers); undo with
    ``unroute_core_logging``. The one place nodes install it is ``run``."""
    handler = NodeLogHandler(logger)
    core = logging.getLogger(CORE_LOGGER)
    core.addHandler(handler)
    core.setLevel(int(logger.get_effective_level()) or logging.INFO)
    core.propagate = False  # a root handler would print each line a second time
    return handler


def unroute_core_logging(handler: NodeLogHandler) -> None:
    core = logging.getLogger(CORE_LOGGER)
    core.removeHandler(handler)
    core.setLevel(logging.NOTSET)
    core.propagate = True


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
    # until the node exists (and after it is gone) the core logs to a logger of the node's name
    routed = route_core_logging(rclpy.logging.get_logger(name))
    node = None
    try:
        node = make_node()
        routed.logger = node.get_logger()
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
            node.destroy_node()  # may still log: the bridge's last uploads, a spool flush
        routed.logger = rclpy.logging.get_logger(name)
        rclpy.try_shutdown()
        unroute_core_logging(routed)
    return 0
