"""The perception node in a subprocess, fed by the sim camera and heard by another process.

One small real model package is trained per session (tests/ros/model_fixture.py: known tasks
sunny and overcast). That tiny model does not recognise the simulator's night as unseen (its
night frames score like sunny ones), but snow scores far above the threshold, so the route here
is sunny -> snow -> sunny.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import yaml

from robo_lifelong import model_package as mp
from robo_lifelong.alarm_policy import AlarmLevel
from robo_lifelong.errors import ConfigError
from robo_lifelong.model_watch import model_version
from robo_lifelong.nodes.perception_node import (
    ALARM_NAME,
    NODE_STATUS_NAME,
    PARAMETERS,
    PerceptionConfig,
)
from robo_lifelong.spool import Spool
from tests.ros.model_fixture import cached_package, with_version
from tests.ros.node_process import REPO, NodeProcess, ros_environ, run_json_script

pytestmark = pytest.mark.ros

PERCEPTION = 'robo_lifelong.nodes.perception_node'
CAMERA = 'robo_lifelong.nodes.sim_camera_node'
PROBE = Path(__file__).with_name('perception_probe.py')
PARAMS_FILE = REPO / 'ros2_ws/src/robo_lifelong/config/perception.yaml'
SCHEDULE = 'sunny:7,snow:7,sunny:9'  # seconds of route time at 10 Hz
ROUTE_S = 23.0
OK, WARN, ERROR, STALE = (int(level) for level in AlarmLevel)
NODE_STATUS = NODE_STATUS_NAME


@pytest.fixture(scope='module')
def env() -> dict[str, str]:
    return ros_environ(random.randint(100, 200))


@pytest.fixture(scope='module')
def package(tmp_path_factory: pytest.TempPathFactory) -> mp.ModelPackage:
    return cached_package(tmp_path_factory.getbasetemp() / 'perception-model')


def probe(env: dict, seconds: float, *extra: str, timeout: float = 40.0) -> dict:
    return run_json_script(PROBE, env, seconds, timeout, *extra)


def levels_in_order(alarms: list[dict]) -> list[int]:
    """The alarm levels with repeats collapsed."""
    out: list[int] = []
    for a in alarms:
        if not out or out[-1] != a['level']:
            out.append(a['level'])
    return out


@pytest.fixture(scope='module')
def live(env, package, tmp_path_factory):
    """Sim camera + perception running for the whole module; yields (perception, spool dir)."""
    tmp = tmp_path_factory.mktemp('perception')
    spool_dir = tmp / 'spool'
    camera = NodeProcess.python_module(
        CAMERA,
        ['-p', 'rate_hz:=10.0', '-p', f'schedule:={SCHEDULE}', '-p', 'width:=424'],
        env,
        tmp,
    )
    node = NodeProcess.python_module(
        PERCEPTION,
        [
            '--params-file', str(PARAMS_FILE),
            '-p', f'model_path:={package.path}',
            '-p', f'spool_dir:={spool_dir}',
            '-p', 'robot_id:=dog7',
            '-p', 'alarm_warn_enter_frames:=2',
            '-p', 'alarm_error_enter_frames:=5',
            '-p', 'alarm_exit_frames:=5',
            '-p', 'collect_min_interval_s:=0.5',
        ],
        env,
        tmp,
    )  # fmt: skip
    try:
        node.wait_for_output('in use', timeout=60)
        yield node, spool_dir
        code, _ = node.interrupt()
        assert code == 0, node.output
    finally:
        node.kill()
        camera.kill()


@pytest.fixture(scope='module')
def route_record(env, live) -> dict:
    """What a subscriber hears over one pass of the route (camera route time starts at 0 when
    the camera starts, so the probe covers the unseen stretch and the return)."""
    return probe(env, ROUTE_S)


def test_params_file_lists_every_parameter() -> None:
    params = yaml.safe_load(PARAMS_FILE.read_text())['/**/perception']['ros__parameters']
    assert set(params) == set(PARAMETERS)
    for name, value in params.items():
        assert type(value) is type(PARAMETERS[name][0]), name


def test_labels_keep_the_input_stamp_and_come_with_scores(route_record: dict) -> None:
    labels = route_record['labels']
    assert len(labels) >= 0.7 * 10 * ROUTE_S
    assert all(lb['encoding'] == 'mono8' and lb['shape'] == [240, 424] for lb in labels)
    assert max(lb['max'] for lb in labels) > 0
    # the stamp is the camera's (taken before rendering), so it precedes the labels' arrival
    lags = [(lb['wall_ns'] - lb['stamp_ns']) * 1e-9 for lb in labels]
    assert all(0.0 < lag < 2.0 for lag in lags)
    assert len({lb['stamp_ns'] for lb in labels}) == len(labels)
    assert len(route_record['score']) >= 0.9 * len(labels)
    assert {o['enc'] for o in route_record['overlay']} == {'rgb8'}
    assert route_record['terrain'][-1]['curr'] in ('road', 'sidewalk', 'curb', 'other')
    assert {'gait', 'motion', 'alarm'} <= set(route_record['gait'][-1])
    texts = [t for markers in route_record['markers'] for t in markers]
    assert any(t.startswith(('OK', 'WARN', 'ERROR')) and 'score' in t for t in texts)


def test_alarm_goes_warn_then_error_on_snow_and_back_to_ok(route_record: dict) -> None:
    alarms = [a for a in route_record['alarm'] if a['level'] != STALE]
    seq = levels_in_order(alarms)
    assert seq[0] == OK
    assert WARN in seq and ERROR in seq
    i_warn, i_error = seq.index(WARN), seq.index(ERROR)
    assert i_warn < i_error and OK in seq[i_error:]
    error = next(a for a in alarms if a['level'] == ERROR)
    assert float(error['score']) > float(error['threshold']) == 1.0
    assert error['model_version'].startswith('v1-') and error['since']
    assert error['task'] in ('sunny', 'overcast')
    assert seq[-1] == OK


def test_samples_are_spooled_and_announced(route_record: dict, live) -> None:
    _, spool_dir = live
    events = route_record['sample']
    assert events, 'no unseen/sample events'
    spool = Spool(spool_dir, max_bytes=10**10, max_samples=10**6)
    spooled = {e.sample_id for e in spool.list()}
    assert {e['id'] for e in events} <= spooled
    meta = spool.get(events[0]['id']).meta()
    assert meta['robot_id'] == 'dog7' and meta['score'] > 1.0
    assert meta['model_version'] == events[0]['model_version']
    assert {'rgb.png', 'depth.png', 'anomaly.png'} <= set(meta['files'])
    ids_in_alarm = {i for a in route_record['alarm'] for i in a['sample_ids'].split(',') if i}
    assert ids_in_alarm & {e['id'] for e in events}


def test_diagnostics_report_frames_and_model(route_record: dict) -> None:
    node = [d for d in route_record['diagnostics'] if d['name'] == NODE_STATUS]
    last = node[-1]
    assert last['level'] == OK and int(last['frames_processed']) > 100
    assert last['model_version'].startswith('v1-') and float(last['latency_ms_p95']) > 0
    assert 'frames_dropped' in last
    assert any(d['name'] == ALARM_NAME for d in route_record['diagnostics'])


def test_a_node_started_with_a_model_does_not_warn_while_loading_it(live) -> None:
    node, _ = live
    assert 'in use' in node.output and 'no model loaded' not in node.output


def test_late_subscriber_gets_the_current_alarm_and_version(env, route_record) -> None:
    late = probe(env, 0.5)
    assert late['alarm'] and late['alarm'][0]['level'] in (OK, WARN, ERROR)
    assert late['version'] and late['version'][0]['version'].startswith('v1-')


def test_hot_swap_changes_the_version_without_a_gap(env, live, package, tmp_path) -> None:
    v2 = with_version(package, tmp_path / 'v2', 2)
    record = probe(env, 6.0, '--update', str(v2.path), '--update-after', '1.5')
    versions = [v['version'] for v in record['version']]
    assert versions[-1] == model_version(v2) and versions[0] != versions[-1]
    arrivals = [lb['arrival'] for lb in record['labels']]
    assert (
        max(b - a for a, b in zip(arrivals[:-1], arrivals[1:], strict=True)) < 0.5
    )  # 10 Hz, no pause
    swapped_at = record['version'][-1]['arrival']
    assert any(a > swapped_at for a in arrivals)


def test_corrupt_package_is_rejected_and_the_old_model_continues(
    env, live, package, tmp_path
) -> None:
    node, _ = live
    bad = with_version(package, tmp_path / 'bad', 9)
    bad.model_path.write_bytes(bad.model_path.read_bytes()[:-10])
    before = probe(env, 0.5)['version'][-1]['version']
    record = probe(env, 4.0, '--update', str(bad.path), '--update-after', '1.0')
    assert record['version'][-1]['version'] == before
    node.wait_for_output('rejected', timeout=10)
    assert 'sha256 mismatch' in node.output
    assert record['labels'][-1]['arrival'] - record['injected'][0]['arrival'] > 1.0


def test_bad_input_never_kills_the_node(env, live) -> None:
    node, _ = live
    record = probe(env, 6.0, '--inject-bad')
    assert len(record['injected']) == 6
    done = record['injected'][-1]['arrival']
    assert any(lb['arrival'] > done + 0.5 for lb in record['labels'])  # still publishing
    assert node.proc.poll() is None
    time.sleep(0.5)
    for text in ('mono16', 'empty image', 'does not match rgb', 'NaN', 'not newer'):
        assert text in node.output, text


def test_a_4k_frame_is_labelled_at_its_own_resolution(env, package, tmp_path) -> None:
    node = NodeProcess.python_module(
        PERCEPTION,
        [
            '-r', '__ns:=/fourk',
            '-p', f'model_path:={package.path}',
            '-p', f'spool_dir:={tmp_path / "spool"}',
            '-p', 'use_depth:=false',
        ],
        env,
        tmp_path,
    )  # fmt: skip
    try:
        node.wait_for_output('in use', timeout=60)
        record = probe(env, 20.0, '--namespace', '/fourk', '--big-frame', '2160', '3840')
        big = [lb for lb in record['labels'] if lb['shape'] == [2160, 3840]]
        assert big, f'no labels for a 3840x2160 frame; node said: {node.output[-2000:]}'
        assert big[0]['encoding'] == 'mono8' and big[0]['max'] >= 0
        assert 'max_pixels' not in node.output
    finally:
        node.kill()


def test_node_without_a_model_is_stale_says_why_and_recovers(env, package, tmp_path) -> None:
    node = NodeProcess.python_module(
        PERCEPTION,
        [
            '-r', '__ns:=/nomodel',
            '-p', f'model_path:={tmp_path / "missing"}',
            '-p', f'spool_dir:={tmp_path / "spool"}',
        ],
        env,
        tmp_path,
    )  # fmt: skip
    try:
        node.wait_for_output('rejected', timeout=30)
        args = ('--namespace', '/nomodel', '--update', str(package.path), '--update-after', '2')
        record = probe(env, 4.0, *args)
        assert record['alarm'][0]['level'] == STALE
        assert 'no model loaded' in record['alarm'][0]['message']
        # /diagnostics is global: the module's live node reports there too
        stale = [
            d
            for d in record['diagnostics']
            if d['name'] == NODE_STATUS and d['message'].startswith('no model loaded')
        ]
        assert stale and stale[0]['level'] == STALE and 'missing file' in stale[0]['message']
        assert record['version'][-1]['version'] == model_version(package)
        assert node.proc.poll() is None
    finally:
        node.kill()


def test_parameter_values_are_validated_into_the_config() -> None:
    defaults = {name: spec[0] for name, spec in PARAMETERS.items()}
    config = PerceptionConfig.from_values(defaults)
    assert config.pipeline.alarm.error_enter_frames == 8
    assert config.pipeline.alarm.error_enter_seconds is None  # 0 = off
    assert config.pipeline.collection.min_score is None  # < 0: the calibration decides
    bad = {
        'overlay_alpha': 1.5,
        'alarm_warn_enter_frames': 0,
        'threads': 0,
        'png_compression': 12,
        'max_pixels': 0,
    }
    for name, value in bad.items():
        with pytest.raises(ConfigError, match=name.removeprefix('alarm_')):
            PerceptionConfig.from_values(dict(defaults, **{name: value}))
    with pytest.raises(ConfigError, match='error_enter_frames or error_enter_seconds'):
        PerceptionConfig.from_values(
            dict(defaults, alarm_error_enter_frames=0, alarm_error_enter_seconds=0.0)
        )


def test_parameter_updates_apply_or_are_rejected_with_a_reason(env, live) -> None:
    record = probe(
        env,
        3.0,
        '--set', 'overlay_alpha=1.7',
        '--set', 'alarm_exit_ratio=0.9',
        '--set', 'threads=4',
        '--set', 'publish_overlay=false',
    )  # fmt: skip
    results = {r['name']: r for r in record['set']}
    assert not results['overlay_alpha']['successful']
    assert 'overlay_alpha must be in [0, 1]' in results['overlay_alpha']['reason']
    assert results['alarm_exit_ratio']['successful']
    assert not results['threads']['successful']  # read-only: set at start
    assert results['publish_overlay']['successful']
    later = probe(env, 1.5)
    assert later['labels'] and not later['overlay']
    probe(env, 0.5, '--set', 'publish_overlay=true')
