"""Node parameters from the config dataclasses: the shipped params files hold the dataclass
defaults value by value, and a declared parameter carries its field's description, range and
read-only flag, so rclpy (and ``ros2 param describe``) enforce and show them.

The declaration tests use real rclpy in this process, on a node of their own in a context of their
own (a ROS domain in 100-200 like the subprocess tests); nothing spins, nothing waits.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Iterator

import pytest
import rclpy
import yaml
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter

from robo_lifelong.errors import ConfigError
from robo_lifelong.nodes.bridge_node import BridgeConfig
from robo_lifelong.nodes.observer_node import ObserverConfig
from robo_lifelong.nodes.parameters import declare_config, descriptor, updated_config
from robo_lifelong.nodes.perception_node import PerceptionConfig
from robo_lifelong.nodes.sim_camera_node import SimCameraConfig
from robo_lifelong.parameters import INT64_MAX, defaults, parameter_specs
from tests.ros.node_process import REPO

pytestmark = pytest.mark.ros

CONFIG_DIR = REPO / 'ros2_ws/src/robo_lifelong/config'
PARAMS_FILES = {
    'perception.yaml': ('/**/perception', PerceptionConfig),
    'bridge.yaml': ('/**/bridge', BridgeConfig),
    'sim_camera.yaml': ('/**/sim_camera', SimCameraConfig),
}


@pytest.mark.parametrize('file_name', sorted(PARAMS_FILES))
def test_params_file_holds_every_dataclass_default_value_by_value(file_name: str) -> None:
    key, config = PARAMS_FILES[file_name]
    shipped = yaml.safe_load((CONFIG_DIR / file_name).read_text())[key]['ros__parameters']
    expected = defaults(config)
    assert sorted(shipped) == sorted(expected)
    for name, value in expected.items():
        # type too: rclpy refuses 1 for a double parameter, and True == 1 in Python
        assert (shipped[name], type(shipped[name])) == (value, type(value)), name


@pytest.fixture
def context() -> Iterator[Context]:
    ctx = Context()
    rclpy.init(context=ctx, domain_id=random.randint(100, 200))
    try:
        yield ctx
    finally:
        rclpy.shutdown(context=ctx)


def make_node(context: Context, *overrides: Parameter) -> Node:
    return Node('parameters_test', context=context, parameter_overrides=list(overrides))


def test_declared_parameters_carry_description_range_and_read_only(context: Context) -> None:
    node = make_node(context)
    try:
        config = declare_config(node, PerceptionConfig)
        assert config == PerceptionConfig()
        alpha = node.describe_parameter('overlay_alpha')
        assert alpha.description.startswith('Weight of the label colours')
        assert not alpha.read_only
        (span,) = alpha.floating_point_range
        assert (span.from_value, span.to_value) == (0.0, 1.0)
        threads = node.describe_parameter('threads')
        assert threads.read_only
        (span,) = threads.integer_range
        assert (span.from_value, span.to_value) == (1, INT64_MAX)
        png = node.describe_parameter('png_compression')
        assert [(r.from_value, r.to_value) for r in png.integer_range] == [(0, 9)]
        assert not node.describe_parameter('robot_id').integer_range
        # every spec's descriptor is what the node holds
        for spec in parameter_specs(PerceptionConfig):
            held = node.describe_parameter(spec.name)
            built = descriptor(spec)
            assert held.description == built.description, spec.name
            assert held.read_only == built.read_only, spec.name
    finally:
        node.destroy_node()


def test_rclpy_refuses_values_outside_the_range_and_read_only_changes(context: Context) -> None:
    node = make_node(context)
    try:
        declare_config(node, PerceptionConfig)
        results = node.set_parameters(
            [
                Parameter('overlay_alpha', value=1.5),
                Parameter('png_compression', value=12),
                Parameter('threads', value=4),
                Parameter('alarm_exit_ratio', value=0.9),
            ]
        )
        reasons = [(r.successful, r.reason) for r in results]
        assert not reasons[0][0] and 'overlay_alpha out of range' in reasons[0][1]
        assert not reasons[1][0] and 'png_compression out of range' in reasons[1][1]
        assert not reasons[2][0] and 'read-only' in reasons[2][1]
        assert reasons[3][0]
        assert node.get_parameter('alarm_exit_ratio').value == 0.9
    finally:
        node.destroy_node()


def test_updated_config_validates_changes_through_the_dataclass(context: Context) -> None:
    node = make_node(context, Parameter('alarm_warn_enter_frames', value=4))
    try:
        declare_config(node, PerceptionConfig)
        # in range for rclpy, but fewer than the WARN frames: only the config knows
        with pytest.raises(ConfigError, match=r'error_enter_frames \(3\) must be >= warn'):
            updated_config(
                node, PerceptionConfig, [Parameter('alarm_error_enter_frames', value=3)]
            )
        config = updated_config(
            node,
            PerceptionConfig,
            [
                Parameter('alarm_error_enter_frames', value=0),
                Parameter('alarm_error_enter_seconds', value=2.5),
                Parameter('collect_min_score', value=-0.5),
            ],
        )
        # 0 frames and any negative score: off, as the params file documents
        assert config.pipeline.alarm.error_enter_frames is None
        assert config.pipeline.alarm.error_enter_seconds == 2.5
        assert config.pipeline.collection.min_score is None
        assert config.pipeline.alarm.warn_enter_frames == 4
    finally:
        node.destroy_node()


@pytest.mark.parametrize(
    ('config', 'override', 'message'),
    [
        (SimCameraConfig, Parameter('width', value=5000), 'out of range'),
        (SimCameraConfig, Parameter('rate_hz', value=10), "'rate_hz' must be a float like 15.0"),
        (SimCameraConfig, Parameter('rate_hz', value=0.0), 'rate_hz must be > 0'),
        (BridgeConfig, Parameter('parallel_uploads', value=0), 'out of range'),
        (ObserverConfig, Parameter('rgb_every', value=5), 'out_dir is required'),
    ],
)
def test_bad_start_values_are_a_config_error(
    context: Context, config: type, override: Parameter, message: str
) -> None:
    node = make_node(context, override)
    try:
        with pytest.raises(ConfigError, match=message):
            declare_config(node, config)
    finally:
        node.destroy_node()


def test_the_demo_launch_file_offers_the_sim_cameras_own_defaults() -> None:
    # demo.launch.py cannot import the node module (the launch process may lack OpenCV), so its
    # defaults for the camera's arguments are literals that must stay the dataclass defaults
    tree = ast.parse((REPO / 'launch/demo.launch.py').read_text(encoding='utf-8'))
    arguments = next(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == 'arguments' for t in node.targets)
    )
    offered = {
        key.value: value.elts[0].value
        for key, value in zip(arguments.keys, arguments.values, strict=True)
        if isinstance(value, ast.Tuple) and isinstance(value.elts[0], ast.Constant)
    }
    camera = SimCameraConfig()
    for name in ('rate_hz', 'width', 'height'):
        assert type(getattr(camera, name))(offered[name]) == getattr(camera, name), name
