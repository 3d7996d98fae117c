"""The one main() shape every node shares: init, spin, clean shutdown on Ctrl-C or SIGINT."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from ..errors import RoboLifelongError


def run(make_node: Callable[[], Node], name: str, args: list[str] | None = None) -> int:
    """Spin the node ``make_node`` builds until interrupted; 2 if it cannot start.

    rclpy's own signal handler would shut the context down before ``destroy_node`` runs, so the
    node could no longer log its closing summary; here Ctrl-C arrives as KeyboardInterrupt.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
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
