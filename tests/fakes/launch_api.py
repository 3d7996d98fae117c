"""A recording stand-in of exactly the part of the ROS 2 ``launch`` / ``launch_ros`` API that the
launch files in launch/ use, and the resolution of a launch description with it.

The real libraries come only with a ROS 2 install (no package registry has them), so CI cannot
build a launch description with them. ``install(monkeypatch)`` puts these classes in their
place, under the same module names; ``resolve(path, arguments)`` then loads a launch file and
resolves it as ``ros2 launch <file> name:=value ...`` would, up to starting processes: launch
arguments and their defaults, included files with their arguments, environment variables, and
each Node's name, namespace, parameters (files and dicts, typed as launch_ros types them) and
remappings, and what the registered process-exit handlers do when a node exits.
tests/launch/real_launch.py resolves with the real libraries into the same record, and
tests/launch/test_launch_arguments.py compares both where the real ones are importable.
"""

from __future__ import annotations

import importlib.util
import os
import re
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# A node's exit code in the exit records: 2 is how this project's nodes end when they cannot
# start (nodes/spin.py).
EXIT_CODE = 2


@dataclass
class ResolvedNode:
    package: str
    executable: str
    name: str  # fully qualified: /namespace/name
    namespace: str
    parameters: dict[str, Any]  # the merged result of every parameter file and dict, in order
    remappings: dict[str, str]
    on_exit: list[str] = field(default_factory=list)  # what a process-exit handler returns


@dataclass
class Resolution:
    arguments: dict[str, str]  # declared launch argument -> its default, as --show-args prints
    environment: dict[str, str]  # set by SetEnvironmentVariable
    nodes: dict[str, ResolvedNode]  # by fully qualified name


def node_parameters(path: str, full_name: str) -> dict[str, Any]:
    """The ``ros__parameters`` of every section of the YAML file ``path`` whose node name
    pattern (``/**``, ``/**/name``, ``/ns/name``) matches ``full_name``, in file order."""
    data = yaml.safe_load(Path(path).read_text(encoding='utf-8')) or {}
    out: dict[str, Any] = {}
    for pattern, section in data.items():
        glob = '/' + str(pattern).strip('/')
        regex = re.escape(glob).replace(r'/\*\*', '(/.*)?').replace(r'\*', '[^/]*')
        if re.fullmatch(regex, full_name):
            out.update(section.get('ros__parameters', {}))
    return out


def full_node_name(namespace: str, name: str) -> str:
    return namespace.rstrip('/') + '/' + name


def exit_records(entities: Iterable[Any]) -> list[str]:
    """What a process-exit handler's answer does: ``Shutdown: <reason>`` for a shutdown (an
    EmitEvent of a Shutdown event), the class name otherwise."""
    out = []
    for entity in entities or []:
        event = getattr(entity, 'event', None)
        reason = getattr(event, 'reason', None)
        out.append(f'Shutdown: {reason}' if reason is not None else type(entity).__name__)
    return out


# -- the stand-in --------------------------------------------------------------------------------


class _Context:
    def __init__(self, arguments: dict[str, str]) -> None:
        self.launch_configurations = dict(arguments)


class Substitution:
    def perform(self, context: _Context) -> str:
        raise NotImplementedError


def perform(context: _Context, value: Any) -> str:
    """The text of a string, a substitution or a list of them (concatenated), as launch does."""
    if isinstance(value, str):
        return value
    if isinstance(value, Substitution):
        return value.perform(context)
    if isinstance(value, (list, tuple)):
        return ''.join(perform(context, v) for v in value)
    raise TypeError(f'not a substitution: {value!r}')


class LaunchConfiguration(Substitution):
    def __init__(self, variable_name: str, *, default: Any = None) -> None:
        self.variable_name = variable_name
        self.default = default

    def perform(self, context: _Context) -> str:
        if self.variable_name in context.launch_configurations:
            return context.launch_configurations[self.variable_name]
        if self.default is not None:
            return perform(context, self.default)
        raise LookupError(f"launch configuration '{self.variable_name}' does not exist")


class PathJoinSubstitution(Substitution):
    def __init__(self, substitutions: list[Any]) -> None:
        self.substitutions = substitutions

    def perform(self, context: _Context) -> str:
        return os.path.join(*(perform(context, s) for s in self.substitutions))


class ParameterValue:
    def __init__(self, value: Any, *, value_type: type | None = None) -> None:
        self.value = value
        self.value_type = value_type

    def evaluate(self, context: _Context) -> Any:
        text = perform(context, self.value)
        if self.value_type is str:
            return text
        value = yaml.safe_load(text)
        if self.value_type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if self.value_type is not None and type(value) is not self.value_type:
            raise TypeError(f'{text!r} is not a {self.value_type.__name__}')
        return value


def _untyped(context: _Context, value: Any) -> Any:
    """launch_ros reads an untyped substitution's text as YAML ('' stays a string)."""
    if isinstance(value, ParameterValue):
        return value.evaluate(context)
    if isinstance(value, (bool, int, float)):
        return value
    text = perform(context, value)
    return yaml.safe_load(text) if text else ''


class LaunchDescription:
    def __init__(self, initial_entities: list[Any] | None = None) -> None:
        self.entities = list(initial_entities or [])


class DeclareLaunchArgument:
    def __init__(self, name: str, *, default_value: Any = None, description: str = '') -> None:
        self.name = name
        self.default_value = default_value
        self.description = description


class SetEnvironmentVariable:
    def __init__(self, name: Any, value: Any) -> None:
        self.name = name
        self.value = value


class Shutdown:
    def __init__(self, *, reason: str = 'reason not given') -> None:
        self.event = types.SimpleNamespace(reason=reason)


class OnProcessExit:
    def __init__(
        self, *, target_action: Any = None, on_exit: Callable[[Any, Any], Any] | list
    ) -> None:
        self.target_action = target_action
        self.on_exit = on_exit

    def handle(self, event: Any, context: _Context) -> list:
        if self.target_action is not None and event.action is not self.target_action:
            return []
        return self.on_exit(event, context) if callable(self.on_exit) else self.on_exit


class RegisterEventHandler:
    def __init__(self, event_handler: OnProcessExit) -> None:
        self.event_handler = event_handler


class PythonLaunchDescriptionSource:
    def __init__(self, launch_file_path: str) -> None:
        self.path = launch_file_path

    def get_launch_description(self, _context: _Context) -> LaunchDescription:
        return load_launch_file(self.path)


class IncludeLaunchDescription:
    def __init__(self, launch_description_source: Any, *, launch_arguments: Any = ()) -> None:
        self.source = launch_description_source
        self.launch_arguments = list(launch_arguments)


class Node:
    def __init__(
        self,
        *,
        package: str,
        executable: str,
        name: str,
        namespace: Any = '',
        parameters: list[Any] | None = None,
        remappings: list[tuple[Any, Any]] | None = None,
        arguments: list[Any] | None = None,
        output: str = 'log',
    ) -> None:
        self.package = package
        self.executable = executable
        self.name = name
        self.namespace = namespace
        self.parameters = parameters or []
        self.remappings = remappings or []
        self.arguments = arguments or []


def _module(name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def install(monkeypatch: Any) -> None:
    """Make ``import launch`` / ``launch_ros`` (and their used modules) import the stand-in."""
    modules = [
        _module('launch', LaunchDescription=LaunchDescription),
        _module(
            'launch.actions',
            DeclareLaunchArgument=DeclareLaunchArgument,
            IncludeLaunchDescription=IncludeLaunchDescription,
            RegisterEventHandler=RegisterEventHandler,
            SetEnvironmentVariable=SetEnvironmentVariable,
            Shutdown=Shutdown,
        ),
        _module('launch.event_handlers', OnProcessExit=OnProcessExit),
        _module(
            'launch.launch_description_sources',
            PythonLaunchDescriptionSource=PythonLaunchDescriptionSource,
        ),
        _module(
            'launch.substitutions',
            LaunchConfiguration=LaunchConfiguration,
            PathJoinSubstitution=PathJoinSubstitution,
        ),
        _module('launch_ros'),
        _module('launch_ros.actions', Node=Node),
        _module('launch_ros.parameter_descriptions', ParameterValue=ParameterValue),
    ]
    for module in modules:
        monkeypatch.setitem(__import__('sys').modules, module.__name__, module)


def load_launch_file(path: str | os.PathLike) -> Any:
    """``generate_launch_description()`` of the launch file at ``path``, freshly imported."""
    spec = importlib.util.spec_from_file_location(Path(path).name.replace('.', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def resolve(path: str | os.PathLike, arguments: dict[str, str]) -> Resolution:
    """The launch file at ``path`` resolved with the stand-in (``install`` it first), given
    ``arguments`` as on the ``ros2 launch`` command line."""
    context = _Context(arguments)
    out = Resolution({}, {}, {})
    handlers: list[OnProcessExit] = []
    nodes: list[Node] = []

    def walk(entities: list[Any]) -> None:
        for entity in entities:
            if isinstance(entity, DeclareLaunchArgument):
                default = entity.default_value
                out.arguments[entity.name] = '' if default is None else perform(context, default)
                if entity.name not in context.launch_configurations:
                    if default is None:
                        raise LookupError(f'launch argument {entity.name!r} has no value')
                    context.launch_configurations[entity.name] = out.arguments[entity.name]
            elif isinstance(entity, SetEnvironmentVariable):
                out.environment[perform(context, entity.name)] = perform(context, entity.value)
            elif isinstance(entity, RegisterEventHandler):
                handlers.append(entity.event_handler)
            elif isinstance(entity, IncludeLaunchDescription):
                for name, value in entity.launch_arguments:
                    context.launch_configurations[perform(context, name)] = perform(context, value)
                walk(entity.source.get_launch_description(context).entities)
            elif isinstance(entity, Node):
                resolved = _resolve_node(context, entity)
                out.nodes[resolved.name] = resolved
                nodes.append(entity)
            else:
                raise TypeError(f'the stand-in does not know {type(entity).__name__}')

    walk(load_launch_file(path).entities)
    for node, resolved in zip(nodes, out.nodes.values(), strict=True):
        event = types.SimpleNamespace(
            action=node, process_name=resolved.name, returncode=EXIT_CODE
        )
        for handler in handlers:
            resolved.on_exit += exit_records(handler.handle(event, context))
    return out


def _resolve_node(context: _Context, node: Node) -> ResolvedNode:
    namespace = '/' + perform(context, node.namespace).strip('/')
    name = full_node_name(namespace, node.name)
    parameters: dict[str, Any] = {}
    for item in node.parameters:
        if isinstance(item, dict):
            parameters.update({k: _untyped(context, v) for k, v in item.items()})
        else:
            parameters.update(node_parameters(perform(context, item), name))
    remappings = {perform(context, a): perform(context, b) for a, b in node.remappings}
    return ResolvedNode(node.package, node.executable, name, namespace, parameters, remappings)
