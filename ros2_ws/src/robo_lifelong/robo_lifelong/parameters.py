"""Node parameters described on the fields of the config dataclasses, without ROS.

A field that is a node parameter carries ``param(...)`` as its ``dataclasses.field`` metadata: its
description, the range of accepted values and whether it may change at run time; its default is
the field's default. A field holding a nested config carries ``group(prefix)``: that config's
parameters are named ``prefix + field name``. ``parameter_specs`` lists a config's parameters
(``nodes/parameters.py`` declares them, ``config/*.yaml`` is checked against them) and
``config_from_parameters`` builds the config from parameter values, so every default,
description and range is written once, on its field.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from robo_lifelong.errors import ConfigError

ParameterValue = bool | int | float | str
Config = TypeVar('Config')

INT64_MAX = 2**63 - 1  # a ROS integer parameter is an int64: the open end of an integer range
_PARAM = 'robo_lifelong.param'
_GROUP = 'robo_lifelong.group'
_VALUE_TYPES = (bool, int, float, str)


class Off(enum.Enum):
    """How a parameter spells ``None`` for an optional field (a ROS parameter cannot be None)."""

    ZERO = 'zero'  # 0 means None ("0 = off")
    NEGATIVE = 'negative'  # any value below 0 means None; None is shown as -1


@dataclass(frozen=True)
class Param:
    """The parameter side of one config field."""

    description: str
    low: int | float | None = None  # accepted range of the parameter value, inclusive
    high: int | float | None = None
    dynamic: bool = False  # may change at run time (ros2 param set); else read at start only
    off: Off | None = None  # the field is optional: which parameter values mean None
    name: str = ''  # parameter name when it is not the group prefix + the field name


def param(
    description: str,
    *,
    low: int | float | None = None,
    high: int | float | None = None,
    dynamic: bool = False,
    off: Off | None = None,
    name: str = '',
) -> dict[str, Param]:
    """``dataclasses.field`` metadata that makes the field a node parameter."""
    return {_PARAM: Param(description, low, high, dynamic, off, name)}


def group(prefix: str) -> dict[str, str]:
    """``dataclasses.field`` metadata of a nested config whose parameters are ``prefix + name``."""
    return {_GROUP: prefix}


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: name, type, default and its ``Param`` description."""

    name: str
    type: type  # bool, int, float or str
    default: ParameterValue
    param: Param
    path: tuple[str, ...]  # field names from the top config down to this field

    @property
    def range(self) -> tuple[int | float, int | float] | None:
        """Inclusive ``(low, high)`` of a number parameter with a bound, the open end filled."""
        p = self.param
        if self.type not in (int, float) or (p.low is None and p.high is None):
            return None
        unbounded = INT64_MAX if self.type is int else math.inf
        low = -unbounded if p.low is None else self.type(p.low)
        high = unbounded if p.high is None else self.type(p.high)
        return low, high

    def to_field(self, value: ParameterValue) -> Any:
        """The field value of a parameter value (``None`` for the ``off`` values)."""
        if self.param.off is Off.ZERO and value == 0:
            return None
        if self.param.off is Off.NEGATIVE and value < 0:
            return None
        return value


def _value_type(hint: Any, where: str) -> type:
    """bool/int/float/str of a field annotation, ``X | None`` included."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        (hint,) = (a for a in args if a is not type(None))
    if hint not in _VALUE_TYPES:
        raise TypeError(f'{where}: a parameter must be a bool, int, float or str, not {hint!r}')
    return hint


def _specs(cls: type, prefix: str, path: tuple[str, ...]) -> Iterator[ParameterSpec]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        where = f'{cls.__name__}.{f.name}'
        if _GROUP in f.metadata:
            yield from _specs(hints[f.name], prefix + f.metadata[_GROUP], (*path, f.name))
        elif _PARAM in f.metadata:
            p: Param = f.metadata[_PARAM]
            kind = _value_type(hints[f.name], where)
            default = f.default
            if default is None:
                if p.off is None:
                    raise TypeError(f'{where}: a None default needs off=Off.ZERO or Off.NEGATIVE')
                default = kind(0 if p.off is Off.ZERO else -1)
            if type(default) is not kind:
                raise TypeError(f'{where}: default {default!r} is not a {kind.__name__}')
            yield ParameterSpec(p.name or prefix + f.name, kind, default, p, (*path, f.name))


def parameter_specs(cls: type) -> tuple[ParameterSpec, ...]:
    """The parameters of config dataclass ``cls`` (and of its ``group`` fields), in field order.

    :raises TypeError: a field of an unsupported type, or two parameters with one name.
    """
    specs = tuple(_specs(cls, '', ()))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise TypeError(f'{cls.__name__}: parameter names repeat: {names!r}')
    return specs


def defaults(cls: type) -> dict[str, ParameterValue]:
    """Parameter name -> default value of config dataclass ``cls``."""
    return {s.name: s.default for s in parameter_specs(cls)}


def config_from_parameters(cls: type[Config], values: Mapping[str, ParameterValue]) -> Config:
    """Build (and so validate) config ``cls`` from parameter values by name; fields that are no
    parameters keep their defaults.

    :raises ConfigError: a missing, mistyped or out-of-range value, or one the config rejects.
    """
    fields: dict[tuple[str, ...], Any] = {}
    for spec in parameter_specs(cls):
        if spec.name not in values:
            raise ConfigError(f'parameter {spec.name} has no value')
        value = values[spec.name]
        # bool is an int to Python, never to ROS; an int for a float parameter is widened
        if type(value) is int and spec.type is float:
            value = float(value)
        if type(value) is not spec.type:
            raise ConfigError(
                f'parameter {spec.name} must be a {spec.type.__name__}, got {value!r}'
            )
        bounds = spec.range
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise ConfigError(
                f'parameter {spec.name} must be in [{bounds[0]}, {bounds[1]}], got {value!r}'
            )
        fields[spec.path] = spec.to_field(value)
    return _build(cls, fields, ())


def _build(cls: type[Config], fields: Mapping[tuple[str, ...], Any], path: tuple) -> Config:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        here = (*path, f.name)
        if _GROUP in f.metadata:
            kwargs[f.name] = _build(hints[f.name], fields, here)
        elif here in fields:
            kwargs[f.name] = fields[here]
    return cls(**kwargs)
