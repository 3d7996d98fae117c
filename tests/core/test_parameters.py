"""Node parameters described on config dataclass fields (robo_lifelong.parameters), without ROS."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from robo_lifelong.errors import ConfigError
from robo_lifelong.parameters import (
    INT64_MAX,
    Off,
    ParameterSpec,
    config_from_parameters,
    defaults,
    group,
    param,
    parameter_specs,
)
from robo_lifelong.perception.alarm_policy import AlarmConfig
from robo_lifelong.perception.collection import CollectionConfig
from robo_lifelong.perception.pipeline import PipelineConfig


@dataclass(frozen=True)
class Inner:
    limit: int = field(default=3, metadata=param('a limit', low=1, high=5, dynamic=True))
    timeout_s: float | None = field(default=None, metadata=param('0 = off', off=Off.ZERO))
    floor: float | None = field(default=None, metadata=param('< 0 = off', off=Off.NEGATIVE))
    level: int = field(default=2, metadata=param('shared name', name='level'))
    hidden: int = 7  # not a parameter: keeps its default


@dataclass(frozen=True)
class Outer:
    name: str = field(default='dog', metadata=param('a name'))
    enabled: bool = field(default=True, metadata=param('a switch'))
    inner: Inner = field(default_factory=Inner, metadata=group('inner_'))


def test_specs_follow_the_fields_with_prefixes_and_name_overrides() -> None:
    specs = {s.name: s for s in parameter_specs(Outer)}
    assert list(specs) == [
        'name',
        'enabled',
        'inner_limit',
        'inner_timeout_s',
        'inner_floor',
        'level',
    ]
    limit = specs['inner_limit']
    assert (limit.type, limit.default, limit.range, limit.param.dynamic) == (int, 3, (1, 5), True)
    assert limit.path == ('inner', 'limit')
    # a None default is spelled by its off value, in the field's type
    assert defaults(Outer)['inner_timeout_s'] == 0.0 and defaults(Outer)['inner_floor'] == -1.0
    assert type(defaults(Outer)['inner_timeout_s']) is float
    assert specs['name'].range is None and not specs['name'].param.dynamic


def test_an_open_end_of_a_range_is_the_widest_value_of_the_type() -> None:
    @dataclass(frozen=True)
    class Open:
        count: int = field(default=1, metadata=param('', low=0))
        ratio: float = field(default=1.0, metadata=param('', high=2.0))

    count, ratio = parameter_specs(Open)
    assert count.range == (0, INT64_MAX)
    assert ratio.range == (-math.inf, 2.0)


def test_values_become_the_nested_config_with_off_values_as_none() -> None:
    values = dict(defaults(Outer), inner_limit=5, inner_timeout_s=0.0, inner_floor=-0.5)
    config = config_from_parameters(Outer, values)
    assert config == Outer(inner=Inner(limit=5, timeout_s=None, floor=None))
    config = config_from_parameters(Outer, dict(values, inner_timeout_s=2.5, inner_floor=0.0))
    assert (config.inner.timeout_s, config.inner.floor, config.inner.hidden) == (2.5, 0.0, 7)
    assert config_from_parameters(Outer, defaults(Outer)) == Outer()


@pytest.mark.parametrize(
    ('changes', 'message'),
    [
        ({'inner_limit': 6}, r'inner_limit must be in \[1, 5\], got 6'),
        ({'inner_limit': 2.0}, 'inner_limit must be a int'),
        ({'enabled': 1}, 'enabled must be a bool'),
        ({'name': None}, 'name must be a str'),
    ],
)
def test_bad_values_are_refused_naming_the_parameter(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_parameters(Outer, dict(defaults(Outer), **changes))


def test_a_missing_value_is_refused() -> None:
    values = defaults(Outer)
    del values['level']
    with pytest.raises(ConfigError, match='level has no value'):
        config_from_parameters(Outer, values)


def test_an_int_is_taken_for_a_float_parameter() -> None:
    config = config_from_parameters(Outer, dict(defaults(Outer), inner_timeout_s=3))
    assert config.inner.timeout_s == 3.0 and type(config.inner.timeout_s) is float


def test_definitions_that_cannot_be_parameters_fail_when_listed() -> None:
    @dataclass(frozen=True)
    class NoneWithoutOff:
        value: int | None = field(default=None, metadata=param(''))

    @dataclass(frozen=True)
    class ListField:
        values: tuple = field(default=(), metadata=param(''))

    @dataclass(frozen=True)
    class WrongDefault:
        value: float = field(default=1, metadata=param(''))

    @dataclass(frozen=True)
    class Twice:
        level: int = field(default=1, metadata=param(''))
        inner: Inner = field(default_factory=Inner, metadata=group(''))

    for cls, message in [
        (NoneWithoutOff, 'needs off'),
        (ListField, 'must be a bool, int, float or str'),
        (WrongDefault, 'is not a float'),
        (Twice, 'names repeat'),
    ]:
        with pytest.raises(TypeError, match=message):
            parameter_specs(cls)


def _outside(spec: ParameterSpec) -> list[int | float]:
    """Values just beyond each finite end of the parameter's range."""
    low, high = spec.range
    step = 1 if spec.type is int else 1e-6
    return [v for v in (low - step, high + step) if math.isfinite(v) and abs(v) <= INT64_MAX]


def _with(config, path: tuple[str, ...], value):
    """``config`` with the field at ``path`` replaced, built by the dataclasses themselves."""
    head, *rest = path
    inner = value if not rest else _with(getattr(config, head), tuple(rest), value)
    fields = {f: getattr(config, f) for f in config.__dataclass_fields__}
    return type(config)(**dict(fields, **{head: inner}))


def test_the_pipeline_configs_reject_what_their_parameter_ranges_exclude() -> None:
    # rclpy enforces the declared ranges; the dataclasses must agree, or the core (replay, the
    # offline CLI) would accept settings the node refuses
    ranged = [s for s in parameter_specs(PipelineConfig) if s.range is not None]
    assert len(ranged) >= 10
    for spec in ranged:
        for value in _outside(spec):
            with pytest.raises(ConfigError):
                _with(PipelineConfig(), spec.path, spec.to_field(value))


def test_the_perception_parameters_keep_their_names_and_defaults() -> None:
    # names the README and config/perception.yaml document; the values are the field defaults
    values = defaults(PipelineConfig)
    assert values['alarm_error_enter_frames'] == AlarmConfig.error_enter_frames == 8
    assert values['alarm_error_enter_seconds'] == 0.0  # None: off
    assert values['collect_min_score'] == -1.0  # None: the calibration decides
    assert values['png_compression'] == CollectionConfig.png_compression == 1
    assert {'robot_id', 'max_pixels', 'reorder_window_s', 'collect'} <= set(values)
    assert not any(name.startswith(('alarm_max_sample', 'collect_history')) for name in values)
