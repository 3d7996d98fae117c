"""Resolve a launch file with the real ROS 2 ``launch`` / ``launch_ros`` libraries into the record
tests/fakes/launch_api.py makes with its stand-in, without starting any process.

As ``ros2 launch`` does up to starting processes: the command line's arguments become launch
configurations, each entity is visited in a LaunchContext (declared defaults, included files
with their arguments), a Node's substitutions are performed as when it is executed (its name,
namespace, parameter files, parameter dicts written to temporary files, remappings), and each
registered process-exit handler is given a ``ProcessExited`` event of each node.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from launch import LaunchContext
from launch.actions import DeclareLaunchArgument, RegisterEventHandler, SetEnvironmentVariable
from launch.events.process import ProcessExited
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import TextSubstitution
from launch.utilities import perform_substitutions
from launch_ros.actions import Node

from tests.fakes.launch_api import (
    EXIT_CODE,
    Resolution,
    ResolvedNode,
    exit_records,
    node_parameters,
)


def resolve(path: str | os.PathLike, arguments: dict[str, str]) -> Resolution:
    context = LaunchContext()
    context.launch_configurations.update(arguments)
    out = Resolution({}, {}, {})
    handlers: list[Any] = []
    nodes: list[Node] = []

    def walk(entities: list[Any]) -> None:
        for entity in entities:
            if isinstance(entity, Node):
                resolved = _resolve_node(context, entity)
                out.nodes[resolved.name] = resolved
                nodes.append(entity)
                continue
            if isinstance(entity, RegisterEventHandler):
                handlers.append(entity.event_handler)
                continue
            if isinstance(entity, DeclareLaunchArgument):
                default = entity.default_value
                out.arguments[entity.name] = (
                    '' if default is None else perform_substitutions(context, default)
                )
            if isinstance(entity, SetEnvironmentVariable):
                name = perform_substitutions(context, entity.name)
                out.environment[name] = perform_substitutions(context, entity.value)
                continue
            # declared defaults, included files, the launch configurations they set
            walk(_entities(entity.visit(context)))

    description = PythonLaunchDescriptionSource(str(path)).get_launch_description(context)
    walk(description.entities)
    for node, resolved in zip(nodes, out.nodes.values(), strict=True):
        event = ProcessExited(
            action=node, name=resolved.name, cmd=[], cwd=None, env=None, pid=0,
            returncode=EXIT_CODE,
        )  # fmt: skip
        for handler in handlers:
            if handler.matches(event):
                resolved.on_exit += exit_records(handler.handle(event, context))
    return out


def _entities(visited: Any) -> list[Any]:
    """What a visit returned, with included LaunchDescriptions opened up."""
    out = []
    for entity in visited or []:
        out += entity.entities if hasattr(entity, 'entities') else [entity]
    return out


def _resolve_node(context: LaunchContext, node: Node) -> ResolvedNode:
    node._perform_substitutions(context)  # what Node.execute does before starting the process
    # The parameters are in the command line it built: '--params-file PATH' (dicts too, written
    # to a temporary file) and '-p name:=value'. Only plain text is read: the executable and the
    # ROS arguments are placeholders until the process starts.
    words = [
        perform_substitutions(context, part)
        if all(isinstance(s, TextSubstitution) for s in part)
        else None
        for part in node.cmd
    ]
    parameters: dict[str, Any] = {}
    for flag, value in zip(words, words[1:], strict=False):
        if flag == '--params-file':
            parameters.update(node_parameters(value, node.node_name))
        elif flag == '-p':
            key, _, text = value.partition(':=')
            parameters[key] = yaml.safe_load(text)
    return ResolvedNode(
        node.node_package,
        node.node_executable,
        node.node_name,
        node.expanded_node_namespace,
        parameters,
        dict(node.expanded_remapping_rules or []),
    )
