"""Declare a node's parameters from its config dataclass (``robo_lifelong.parameters``).

Each parameter gets its field's default, and a ``ParameterDescriptor`` with the field's
description, range (``integer_range`` / ``floating_point_range``, shown by ``ros2 param
describe`` and enforced by rclpy) and ``read_only`` unless the field is dynamic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from robo_lifelong.errors import ConfigError
from robo_lifelong.parameters import (
    ParameterSpec,
    ParameterValue,
    config_from_parameters,
    parameter_specs,
)

Config = TypeVar('Config')


def descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    """The ROS descriptor of one parameter."""
    d = ParameterDescriptor(description=spec.param.description, read_only=not spec.param.dynamic)
    bounds = spec.range
    if bounds is not None and spec.type is int:
        d.integer_range = [IntegerRange(from_value=bounds[0], to_value=bounds[1], step=0)]
    elif bounds is not None:
        d.floating_point_range = [
            FloatingPointRange(from_value=bounds[0], to_value=bounds[1], step=0.0)
        ]
    return d


def declare_config(node: Node, cls: type[Config]) -> Config:
    """Declare every parameter of config dataclass ``cls`` on ``node`` and build the config from
    the values (defaults, overridden by --params-file and -p).

    :raises ConfigError: a value of the wrong type, out of range or rejected by the config.
    """
    values: dict[str, ParameterValue] = {}
    for spec in parameter_specs(cls):
        try:
            values[spec.name] = node.declare_parameter(
                spec.name, spec.default, descriptor(spec)
            ).value
        except InvalidParameterTypeException as e:  # e.g. rate_hz:=10 for a double
            raise ConfigError(
                f'parameter {spec.name!r} must be a {spec.type.__name__} like {spec.default!r}'
            ) from e
        except InvalidParameterValueException as e:  # outside the descriptor's range
            raise ConfigError(f'parameter {spec.name!r}: {e}') from e
    return config_from_parameters(cls, values)


def updated_config(node: Node, cls: type[Config], changes: Iterable[Parameter]) -> Config:
    """The config the node would have with ``changes`` applied (for a set-parameters callback).

    :raises ConfigError: the changed values are rejected by the config.
    """
    names = [spec.name for spec in parameter_specs(cls)]
    values = {name: node.get_parameter(name).value for name in names}
    values.update({p.name: p.value for p in changes if p.name in values})
    return config_from_parameters(cls, values)
