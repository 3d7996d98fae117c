"""Every launch argument of robot.launch.py and demo.launch.py reaches the node it names.

Each launch file is resolved in-process as ``ros2 launch FILE name:=value`` would (tests/fakes/
launch_api.py: arguments, defaults, includes, each Node's parameters and remappings), once per
argument with that argument set to a value of its own, and the nodes' parameters or remappings
are checked for it. With the real ``launch`` / ``launch_ros`` importable (a ROS 2 install, or
/tmp-built tools on PYTHONPATH) the real libraries resolve (tests/launch/real_launch.py);
elsewhere the stand-in does, and ``test_the_stand_in_resolves_as_the_real_libraries`` checks it
against the real ones wherever they are.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

from robo_lifelong.io.dds import LEGACY_PROFILES_ENV, PROFILE_NAME, PROFILES_ENV
from tests.fakes import launch_api

REPO = Path(__file__).resolve().parents[2]
PACKAGE_SOURCE = REPO / 'ros2_ws' / 'src' / 'robo_lifelong'
ROBOT, DEMO = REPO / 'launch' / 'robot.launch.py', REPO / 'launch' / 'demo.launch.py'
NS = '/robo_lifelong'
PERCEPTION, BRIDGE, CAMERA = f'{NS}/perception', f'{NS}/bridge', f'{NS}/sim_camera'
RGB_IN, DEPTH_IN = 'camera/color/image_raw', 'camera/aligned_depth_to_color/image_raw'
REAL = all(importlib.util.find_spec(m) is not None for m in ('launch', 'launch_ros'))

Resolve = Callable[[Path, dict], launch_api.Resolution]


@pytest.fixture(autouse=True)
def installed_package(tmp_path, monkeypatch):
    """An ament prefix whose share/robo_lifelong is this checkout's package source, so the
    launch files find their config/ and launch/ files here; no Fast DDS profile exported."""
    prefix = tmp_path / 'prefix'
    index = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    (index / 'robo_lifelong').touch()
    (prefix / 'share' / 'robo_lifelong').symlink_to(PACKAGE_SOURCE)
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(prefix))
    monkeypatch.delenv(PROFILES_ENV, raising=False)
    monkeypatch.delenv(LEGACY_PROFILES_ENV, raising=False)


def _fake_resolve(monkeypatch) -> Resolve:
    launch_api.install(monkeypatch)
    return launch_api.resolve


@pytest.fixture
def resolve(monkeypatch) -> Resolve:
    if REAL:
        from tests.launch.real_launch import resolve as real

        return real
    return _fake_resolve(monkeypatch)


def _params_file(tmp_path: Path, node: str, key: str, value: float) -> str:
    path = tmp_path / f'{node}.yaml'
    path.write_text(f'/**/{node}:\n  ros__parameters:\n    {key}: {value}\n', encoding='utf-8')
    return str(path)


def robot_checks(tmp_path: Path) -> dict[str, tuple[str, Callable[[launch_api.Resolution], None]]]:
    """Launch argument -> (a value to give it, the check that the nodes got it)."""

    def param(node: str, key: str, value: object) -> Callable:
        def check(r: launch_api.Resolution) -> None:
            assert r.nodes[node].parameters[key] == value, (node, key)

        return check

    def both(key: str, value: object) -> Callable:
        def check(r: launch_api.Resolution) -> None:
            for node in (PERCEPTION, BRIDGE):
                param(node, key, value)(r)

        return check

    def remap(node: str, source: str, value: str) -> Callable:
        def check(r: launch_api.Resolution) -> None:
            assert r.nodes[node].remappings[source] == value

        return check

    def data_dir(r: launch_api.Resolution) -> None:
        both('spool_dir', '/data/dog/spool')(r)
        param(PERCEPTION, 'model_watch_dir', '/data/dog/models')(r)
        param(BRIDGE, 'models_dir', '/data/dog/models')(r)

    def profile(r: launch_api.Resolution) -> None:
        assert r.environment[PROFILES_ENV] == '/etc/dds/my.xml'

    def namespace(r: launch_api.Resolution) -> None:
        assert {n.namespace for n in r.nodes.values()} == {'/dog7'}

    return {
        'namespace': ('dog7', namespace),
        'perception_params': (
            _params_file(tmp_path, 'perception', 'model_poll_s', 7.5),
            param(PERCEPTION, 'model_poll_s', 7.5),
        ),
        'bridge_params': (
            _params_file(tmp_path, 'bridge', 'upload_poll_s', 7.5),
            param(BRIDGE, 'upload_poll_s', 7.5),
        ),
        'data_dir': ('/data/dog', data_dir),
        'model_path': ('/models/m1', param(PERCEPTION, 'model_path', '/models/m1')),
        'use_sim_time': ('true', both('use_sim_time', True)),
        # digits stay a string id (launch_ros would read an untyped '7' as an int)
        'robot_id': ('7', both('robot_id', '7')),
        'storage_url': ('s3://bucket/x', param(BRIDGE, 'storage_url', 's3://bucket/x')),
        'rgb_topic': ('/other/rgb', remap(PERCEPTION, RGB_IN, '/other/rgb')),
        'depth_topic': ('/other/depth', remap(PERCEPTION, DEPTH_IN, '/other/depth')),
        'fastdds_profile': ('/etc/dds/my.xml', profile),
    }


def demo_checks(tmp_path: Path) -> dict[str, tuple[str, Callable]]:
    checks = robot_checks(tmp_path)

    def camera(key: str, value: object) -> Callable:
        def check(r: launch_api.Resolution) -> None:
            assert r.nodes[CAMERA].parameters[key] == value, key

        return check

    def topic(source: str, value: str) -> Callable:
        def check(r: launch_api.Resolution) -> None:
            # the camera publishes where perception listens
            assert r.nodes[CAMERA].remappings[source] == value
            assert r.nodes[PERCEPTION].remappings[source] == value

        return check

    checks.update(
        {
            'schedule': ('snow:5', camera('schedule', 'snow:5')),
            'rate_hz': ('7', camera('rate_hz', 7.0)),
            'width': ('320', camera('width', 320)),
            'height': ('200', camera('height', 200)),
            'ground_truth_dir': ('/gt', camera('ground_truth_dir', '/gt')),
            'rgb_topic': ('/other/rgb', topic(RGB_IN, '/other/rgb')),
            'depth_topic': ('/other/depth', topic(DEPTH_IN, '/other/depth')),
        }
    )
    return checks


CASES = [(ROBOT, robot_checks), (DEMO, demo_checks)]
CASE_IDS = ['robot', 'demo']


@pytest.mark.parametrize(('launch_file', 'checks'), CASES, ids=CASE_IDS)
def test_every_argument_reaches_the_node_it_names(resolve, tmp_path, launch_file, checks):
    table = checks(tmp_path)
    default = resolve(launch_file, {})
    assert set(default.arguments) == set(table), 'each declared argument needs a check here'
    for name, (value, check) in table.items():
        with pytest.raises(AssertionError):
            check(default)  # the check tells the argument's value from the default
        check(resolve(launch_file, {name: value}))


def test_by_default_perception_reads_the_camera_each_launch_starts_with(resolve):
    robot = resolve(ROBOT, {})
    assert robot.nodes[PERCEPTION].remappings == {
        RGB_IN: '/camera/camera/color/image_raw',
        DEPTH_IN: '/camera/camera/aligned_depth_to_color/image_raw',
    }
    demo = resolve(DEMO, {})
    same = {RGB_IN: RGB_IN, DEPTH_IN: DEPTH_IN}
    assert demo.nodes[PERCEPTION].remappings == demo.nodes[CAMERA].remappings == same
    assert set(demo.nodes) == {PERCEPTION, BRIDGE, CAMERA}


def test_an_empty_value_is_given_as_yaml_quotes_as_launch_ros_reads_it(resolve):
    resolved = resolve(ROBOT, {'storage_url': "''", 'model_path': "''"})
    assert resolved.nodes[BRIDGE].parameters['storage_url'] == ''
    assert resolved.nodes[PERCEPTION].parameters['model_path'] == ''


def test_perception_starts_on_the_shipped_base_model_by_default(resolve):
    from robo_lifelong.models import package as mp

    for launch_file in (ROBOT, DEMO):
        path = Path(resolve(launch_file, {}).nodes[PERCEPTION].parameters['model_path'])
        assert path.resolve() == PACKAGE_SOURCE / 'models' / 'base'
        assert set(mp.load_package(path).known_tasks) == {'curbs', 'overcast', 'sunny'}


def test_show_args_prints_the_profile_path(resolve, monkeypatch):
    default = resolve(ROBOT, {}).arguments['fastdds_profile']
    assert Path(default).resolve() == PACKAGE_SOURCE / 'config' / PROFILE_NAME
    monkeypatch.setenv(LEGACY_PROFILES_ENV, '/legacy.xml')
    assert resolve(ROBOT, {}).arguments['fastdds_profile'] == '/legacy.xml'
    monkeypatch.setenv(PROFILES_ENV, '/mine.xml')  # the Fast DDS 3 name wins
    resolved = resolve(ROBOT, {})
    assert resolved.arguments['fastdds_profile'] == resolved.environment[PROFILES_ENV]
    assert resolved.environment[PROFILES_ENV] == '/mine.xml'


@pytest.mark.parametrize('launch_file', [ROBOT, DEMO], ids=CASE_IDS)
def test_a_node_that_exits_stops_the_launch_naming_it(resolve, launch_file):
    for name, node in resolve(launch_file, {}).nodes.items():
        assert node.on_exit == [
            f'Shutdown: {name} exited with code {launch_api.EXIT_CODE}; stopping the launch'
        ]


ARGUMENT_SETS = [{}, {'namespace': 'dog7', 'robot_id': '7', 'use_sim_time': 'true'}]


@pytest.mark.skipif(
    not REAL,
    reason='the real launch/launch_ros are not importable (a ROS 2 install, or the tools '
    'built at /tmp/rostools: PYTHONPATH=$ROSTOOLS_SITE)',
)
@pytest.mark.parametrize('launch_file', [ROBOT, DEMO], ids=CASE_IDS)
@pytest.mark.parametrize('arguments', ARGUMENT_SETS, ids=['defaults', 'set'])
def test_the_stand_in_resolves_as_the_real_libraries(tmp_path, launch_file, arguments):
    from tests.launch.real_launch import resolve as real

    table = demo_checks(tmp_path)
    given = dict(arguments, **{k: v for k, (v, _) in table.items() if k in ('rgb_topic',)})
    expected = real(launch_file, given)
    with pytest.MonkeyPatch.context() as patch:
        assert _fake_resolve(patch)(launch_file, given) == expected
