"""The perception node in a subprocess, fed by the sim camera and heard by another process.

One small real model package is trained per session (tests/ros/model_fixture.py: known tasks
sunny and overcast). That tiny model does not recognise the simulator's night reliably (some of
its night frames score like sunny ones), but snow scores far above the threshold, so the route
here is sunny -> snow -> sunny.

No verdict here depends on how fast the machine is: the probe (tests/ros/perception_probe.py)
records until the events a test is about have happened (the alarm went OK, WARN, ERROR and back to
OK; labels of frames captured after some moment arrived; a version was announced; the node logged
a line), within generous bounds. The camera keeps every published frame's ground truth, so a
labels message is checked against the stamps the camera really published. How fast perception
keeps up is measured by bench/bench_perception.py.
"""

from __future__ import annotations

import random
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from robo_lifelong.errors import ConfigError
from robo_lifelong.models import package as mp
from robo_lifelong.models.installed import CURRENT_FILE, InstalledModel
from robo_lifelong.models.watch import model_version
from robo_lifelong.nodes.perception_node import ALARM_NAME, NODE_STATUS_NAME, PerceptionConfig
from robo_lifelong.offline.replay import open_bag
from robo_lifelong.parameters import config_from_parameters, defaults
from robo_lifelong.perception.alarm_policy import AlarmLevel
from robo_lifelong.sim.ground_truth import GroundTruthStore
from robo_lifelong.transfer.spool import Spool
from robo_lifelong.transfer.storage import LocalStorage
from tests.ros.model_fixture import cached_package, with_version
from tests.ros.node_process import REPO, NodeProcess, ros_environ, run_json_script

pytestmark = pytest.mark.ros

PERCEPTION = 'robo_lifelong.nodes.perception_node'
# the module's node: the same node with a gate in its model loader for the hot-swap test
GATED_PERCEPTION = 'tests.ros.gated_perception'
CAMERA = 'robo_lifelong.nodes.sim_camera_node'
PROBE = Path(__file__).with_name('perception_probe.py')
PARAMS_FILE = REPO / 'ros2_ws/src/robo_lifelong/config/perception.yaml'
SCHEDULE = 'sunny:7,snow:7,sunny:9'  # seconds of route time at 10 Hz, repeating
# Bound of a run through the route: OK, WARN, ERROR, OK takes one pass (23 s of route time)
# when the probe joins in the first sunny stretch, two at worst, and route time runs slower than
# wall time while the camera is short of CPU. Only a broken node takes this long.
ROUTE_TIMEOUT_S = 240.0
OK, WARN, ERROR, STALE = (int(level) for level in AlarmLevel)
NODE_STATUS = NODE_STATUS_NAME


@pytest.fixture(scope='module')
def env() -> dict[str, str]:
    return ros_environ(random.randint(100, 200))


@pytest.fixture(scope='module')
def package(tmp_path_factory: pytest.TempPathFactory) -> mp.ModelPackage:
    return cached_package(tmp_path_factory.getbasetemp() / 'perception-model')


class Live(NamedTuple):
    node: NodeProcess
    spool_dir: Path
    ground_truth: Path  # the camera's ground truth: one frame per published stamp
    models_dir: Path  # the node's model_watch_dir: packages arrive there as from the bridge


def probe(env: dict, seconds: float, *extra: str, timeout: float = 90.0) -> dict:
    """What tests/ros/perception_probe.py recorded; fails if a condition or action it was given
    was not met within ``timeout`` (generous: only a broken node takes that long)."""
    record = run_json_script(PROBE, env, seconds, timeout, *extra)
    assert not record.get('unmet'), f'never happened: {record["unmet"]}'
    return record


def node_statuses(record: dict, robot_id: str = 'dog7') -> list[dict]:
    """The perception node statuses of ``robot_id`` on /diagnostics (shared by all nodes)."""
    return [
        d
        for d in record['diagnostics']
        if d['name'] == NODE_STATUS_NAME and d['hardware_id'] == robot_id
    ]


def levels_in_order(alarms: list[dict]) -> list[int]:
    """The alarm levels with repeats collapsed."""
    out: list[int] = []
    for a in alarms:
        if not out or out[-1] != a['level']:
            out.append(a['level'])
    return out


@pytest.fixture(scope='module')
def live(env, package, tmp_path_factory):
    """Perception, then (once its model is in use) the sim camera, running for the whole
    module: the camera's route time starts at 0 with a node that is ready for it."""
    tmp = tmp_path_factory.mktemp('perception')
    spool_dir, ground_truth, models_dir = tmp / 'spool', tmp / 'ground_truth', tmp / 'models'
    camera = None
    node = NodeProcess.python_module(
        GATED_PERCEPTION,
        [
            '--params-file', str(PARAMS_FILE),
            '-p', f'model_path:={package.path}',
            '-p', f'model_watch_dir:={models_dir}',
            '-p', 'model_poll_s:=0.2',
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
        node.wait_for_output('in use', timeout=120)
        camera = NodeProcess.python_module(
            CAMERA,
            ['-p', 'rate_hz:=10.0', '-p', f'schedule:={SCHEDULE}', '-p', 'width:=424',
             '-p', f'ground_truth_dir:={ground_truth}',
             '-p', 'ground_truth_max_frames:=1000000'],  # every stamp of the module's run
            env,
            tmp,
        )  # fmt: skip
        camera.wait_for_output('at 10.0 Hz', timeout=120)
        yield Live(node, spool_dir, ground_truth, models_dir)
        code, _ = node.interrupt(timeout=60)
        assert code == 0, node.output
    finally:
        node.kill()
        if camera is not None:
            camera.kill()


@pytest.fixture(scope='module')
def route_record(env, live) -> dict:
    """What a subscriber hears until the alarm went OK -> WARN -> ERROR -> OK (the snow stretch
    and the return) and a sample the alarm listed was announced."""
    until = ['levels=0,1,2,0', 'alarm-samples', 'diagnostics', 'score', 'overlay']
    until += ['terrain', 'gait', 'markers']
    return probe(env, 0, *(a for c in until for a in ('--until', c)), timeout=ROUTE_TIMEOUT_S)


def test_labels_keep_the_input_stamp_and_come_with_scores(route_record: dict, live) -> None:
    labels = route_record['labels']
    assert labels, 'no labels'
    assert all(lb['encoding'] == 'mono8' and lb['shape'] == [240, 424] for lb in labels)
    assert max(lb['max'] for lb in labels) > 0
    # every labels message carries the stamp of a frame the camera published (kept with its
    # ground truth), taken before rendering, so it precedes the labels' arrival
    published = set(GroundTruthStore(live.ground_truth).stamps())
    assert {lb['stamp_ns'] for lb in labels} <= published
    assert all(lb['wall_ns'] > lb['stamp_ns'] for lb in labels)
    stamps = [lb['stamp_ns'] for lb in labels]
    assert stamps == sorted(set(stamps)), 'a frame labelled twice or out of order'
    # one score per labelled frame; the last few may still be on their way
    assert len(route_record['score']) >= 0.9 * len(labels)
    assert {o['enc'] for o in route_record['overlay']} == {'rgb8'}
    assert route_record['terrain'][-1]['curr'] in ('road', 'sidewalk', 'curb', 'other')
    assert {'gait', 'motion', 'alarm'} <= set(route_record['gait'][-1])
    texts = [t for markers in route_record['markers'] for t in markers]
    assert any(t.startswith(('OK', 'WARN', 'ERROR')) and 'score' in t for t in texts)


def test_alarm_goes_warn_then_error_on_snow_and_back_to_ok(route_record: dict) -> None:
    alarms = [a for a in route_record['alarm'] if a['level'] != STALE]
    seq = levels_in_order(alarms)
    # the probe joins wherever the route is (in the first sunny stretch unless the machine is
    # slow to start it); from the first OK on, the route's snow must show in this order
    assert OK in seq, seq
    seq = seq[seq.index(OK) :]
    assert WARN in seq and ERROR in seq
    i_warn, i_error = seq.index(WARN), seq.index(ERROR)
    assert i_warn < i_error and OK in seq[i_error:]
    error = next(a for a in alarms if a['level'] == ERROR)
    assert float(error['score']) > float(error['threshold']) == 1.0
    assert error['model_version'].startswith('v1-')
    since = datetime.fromisoformat(error['since'].replace('Z', '+00:00'))
    assert since.tzinfo is not None and since.timestamp() * 1e9 < error['wall_ns']
    # the snow stretch is judged unseen; the nearest known task has its own key
    assert error['task'] == 'unseen' and error['nearest_known_task'] in ('sunny', 'overcast')
    assert error['message'].startswith('persistent unseen task, emergency response')
    warn = next(a for a in alarms if a['level'] == WARN)
    assert warn['task'] == 'unseen' and warn['message'].startswith('unseen task suspected')
    ok = next(a for a in alarms if a['level'] == OK)
    assert ok['task'] in ('sunny', 'overcast') and 'nearest_known_task' not in ok
    assert ok['message'].startswith(f'known task {ok["task"]} (score')
    record_keys = {'arrival', 'wall_ns', 'message'}  # what the probe adds
    admin_keys = {'level', 'task', 'nearest_known_task', 'score', 'threshold', 'since'}
    admin_keys |= {'model_version', 'sample_ids'}
    assert all(set(a) - record_keys <= admin_keys for a in alarms)


def test_samples_are_spooled_and_announced(route_record: dict, live) -> None:
    spool_dir = live.spool_dir
    events = route_record['sample']
    assert events, 'no unseen/sample events'
    spool = Spool(spool_dir, max_bytes=10**10, max_samples=10**6)
    spooled = {e.sample_id for e in spool.list()}
    assert {e['id'] for e in events} <= spooled
    meta = spool.get(events[0]['id']).meta()
    assert meta['robot_id'] == 'dog7' and meta['score'] > 1.0
    assert meta['model_version'] == events[0]['model_version']
    assert {'rgb.png', 'depth.png', 'anomaly.png'} <= set(meta['files'])
    ids_in_alarm = {
        i for a in route_record['alarm'] for i in a.get('sample_ids', '').split(',') if i
    }
    assert ids_in_alarm & {e['id'] for e in events}


def test_an_error_leaves_an_event_bag_of_the_seconds_before_it(route_record: dict, live) -> None:
    # the probe heard the ERROR; the node logs the event once its 5 s after it are written
    live.node.wait_for_output('bytes of bag spooled at', timeout=ROUTE_TIMEOUT_S)
    spool = Spool(live.spool_dir, max_bytes=10**10, max_samples=10**6)
    events = [e for e in spool.list() if e.is_event()]
    assert events, 'no alarm event in the spool'
    meta = events[0].meta()
    assert meta['robot_id'] == 'dog7' and meta['alarm']['level'] == 'ERROR'
    assert meta['bag_start'] < meta['stamp'] and meta['frames_before_error'] > 0
    reader = open_bag(events[0].path)
    try:
        topics = {c.topic: c.msgcount for c in reader.connections}
    finally:
        reader.close()
    assert topics['/camera/color/image_raw'] == topics['/segmentation/labels'] == meta['frames']
    assert topics['/unseen/score'] >= meta['frames'] and topics['/alarm'] >= 2
    # never a sample: the collected ones are all that unseen/sample announced
    assert {e['id'] for e in route_record['sample']}.isdisjoint(e.sample_id for e in events)


def test_diagnostics_report_frames_and_model(route_record: dict) -> None:
    node = node_statuses(route_record)
    last = node[-1]
    # Counted, not timed: the node counts a frame right after publishing its labels, on the
    # thread that later takes the status's counters and then its stamp, so every labels message
    # that arrived before that stamp is in frames_processed.
    before = sum(lb['wall_ns'] < last['stamp_ns'] for lb in route_record['labels'])
    assert before > 0
    assert last['level'] == OK and int(last['frames_processed']) >= before
    processed = [int(d['frames_processed']) for d in node]
    assert processed == sorted(processed)
    assert last['model_version'].startswith('v1-') and float(last['latency_ms_p95']) > 0
    assert 'frames_dropped' in last
    assert any(d['name'] == ALARM_NAME for d in route_record['diagnostics'])


def test_a_node_started_with_a_model_does_not_warn_while_loading_it(live) -> None:
    node = live.node
    assert 'in use' in node.output and 'no model loaded' not in node.output


def test_late_subscriber_gets_the_current_alarm_and_version(env, route_record) -> None:
    late = probe(env, 0, '--until', 'alarm', '--until', 'version')
    assert late['alarm'] and late['alarm'][0]['level'] in (OK, WARN, ERROR)
    assert late['version'] and late['version'][0]['version'].startswith('v1-')


def test_hot_swap_changes_the_version_without_a_gap(env, live, package, tmp_path) -> None:
    """The new package is held half loaded (tests/ros/gated_perception.py) until frames captured
    after the load reached its gate were labelled: the frame path never waits for a load. Then
    one swap: the version goes from the old to the new and frames go on being labelled."""
    v1 = probe(env, 0, '--until', 'version')['version'][-1]['version']
    v2 = with_version(package, tmp_path / 'v2', 2)
    (v2.path / 'gate').mkdir()  # installed with the package: the gate of the copy the node loads
    record = probe(
        env,
        0,
        '--update', str(v2.path), '--update-after-version',
        '--models-dir', str(live.models_dir),
        '--gate', str(live.models_dir / v2.content_hash / 'gate'),
        '--until', f'version={model_version(v2)}',
        '--until', 'labels-after-version=3',
    )  # fmt: skip
    reached, opened = (g['wall_ns'] for g in record['gate'])
    held = [lb for lb in record['labels'] if reached < lb['stamp_ns'] and lb['wall_ns'] < opened]
    assert len(held) >= 3, 'no frames labelled while the new model was loading'
    versions = [v['version'] for v in record['version']]
    assert versions[0] == v1 != model_version(v2) and versions[-1] == model_version(v2)
    assert all(v['version'] == v1 for v in record['version'] if v['wall_ns'] < opened)
    # the node never had no model, and swapped once: old, old, ..., new, new
    models = [d['model_version'] for d in node_statuses(record)]
    assert all(d['level'] == OK for d in node_statuses(record))
    assert set(models) <= {v1, model_version(v2)} and models == sorted(models, key=models.index)
    swapped_at = record['version'][-1]['wall_ns']
    assert sum(lb['stamp_ns'] > swapped_at for lb in record['labels']) >= 3


def test_corrupt_package_is_rejected_and_the_old_model_continues(
    env, live, package, tmp_path
) -> None:
    """A package the record names but that is damaged on the robot's disk since the bridge
    verified it (the node does not hash it again): onnxruntime refuses it, the old model stays."""
    node = live.node
    bad = with_version(package, tmp_path / 'bad', 9)
    installed = live.models_dir / bad.content_hash
    shutil.copytree(bad.path, installed)
    (installed / mp.MODEL_FILE).write_bytes(b'damaged on disk')
    before = probe(env, 0, '--until', 'version')['version'][-1]['version']
    record_bytes = InstalledModel.for_package(bad).to_bytes(live.models_dir)
    LocalStorage(live.models_dir).write_bytes(CURRENT_FILE, record_bytes)
    written_ns = time.time_ns()
    # the latched version may arrive after the status: wait for both
    record = probe(env, 0, '--until', f'diag=rejected {installed}', '--until', 'version')
    assert record['version'][-1]['version'] == before
    node.wait_for_output('rejected', timeout=60)
    assert 'onnxruntime cannot load it' in node.output
    # after the rejection: frames captured later are labelled, by the old model
    after = probe(env, 0, '--until', 'labels-after-injection=3', '--until', 'version')
    assert after['version'][-1]['version'] == before
    assert any(lb['stamp_ns'] > written_ns for lb in after['labels'])


def test_bad_input_never_kills_the_node(env, live) -> None:
    node = live.node
    logs = ('--node-log', str(node.stdout_path), '--node-log', str(node.stderr_path))
    record = probe(env, 0, '--inject-bad', *logs, '--until', 'labels-after-injection=3')
    assert [i['case'] for i in record['injected']] == [
        'wrong encoding', 'wrong size', 'empty data', 'nan depth', 'depth of another size',
        'out of order',
    ]  # fmt: skip
    # still publishing: frames captured after the last bad one were labelled
    done = record['injected'][-1]['wall_ns']
    assert sum(lb['stamp_ns'] > done for lb in record['labels']) >= 3
    assert node.proc.poll() is None
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
        node.wait_for_output('in use', timeout=120)
        record = probe(env, 0, '--namespace', '/fourk', '--big-frame', '2160', '3840', timeout=180)
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
            '-p', f'model_watch_dir:={tmp_path / "models"}',
            '-p', 'model_poll_s:=0.2',
            '-p', f'spool_dir:={tmp_path / "spool"}',
        ],
        env,
        tmp_path,
    )  # fmt: skip
    try:
        node.wait_for_output('rejected', timeout=60)
        ns = ('--namespace', '/nomodel')
        # the node's first alarm and status may still be those of its first look (loading)
        until = ('--until', 'alarm=rejected', '--until', 'diag=no model loaded: rejected')
        record = probe(env, 0, *ns, *until)
        # the reason: the directory model_path names is missing; and how to get a model
        reason = f'model package {tmp_path / "missing"}: the directory does not exist'
        alarm = next(a for a in record['alarm'] if 'rejected' in a['message'])
        assert alarm['level'] == STALE
        start = f'no model loaded: rejected {reason}; robot.launch.py starts'
        assert alarm['message'].startswith(start)
        assert 'models/base' in alarm['message'] and 'model_path:=' in alarm['message']
        # /diagnostics is global: the module's live node reports there too
        stale = [
            d
            for d in record['diagnostics']
            if d['name'] == NODE_STATUS and d['message'].startswith('no model loaded: rejected')
        ]
        assert stale and stale[0]['level'] == STALE and reason in stale[0]['message']
        version = model_version(package)
        update = ('--update', str(package.path), '--models-dir', str(tmp_path / 'models'))
        update += ('--until', f'version={version}')
        recovered = probe(env, 0, *ns, *update)
        assert recovered['version'][-1]['version'] == version
        assert node.proc.poll() is None
    finally:
        node.kill()


def test_node_without_frames_is_stale_naming_its_remapped_topic(env, package, tmp_path) -> None:
    node = NodeProcess.python_module(
        PERCEPTION,
        [
            '-r', '__ns:=/noframes',
            '-r', 'camera/color/image_raw:=/nowhere/rgb',
            '-p', f'model_path:={package.path}',
            '-p', f'spool_dir:={tmp_path / "spool"}',
            '-p', 'use_depth:=false',
        ],
        env,
        tmp_path,
    )  # fmt: skip
    try:
        node.wait_for_output('in use', timeout=120)
        # the first alarm may still be the one of the model's loading
        record = probe(env, 0, '--namespace', '/noframes', '--until', 'alarm=no frames on')
        alarm = next(a for a in record['alarm'] if 'no frames on' in a['message'])
        assert alarm['level'] == STALE
        assert alarm['message'].startswith('no frames on /nowhere/rgb yet: check that the camera')
        assert alarm['model_version'] == model_version(package) and 'task' not in alarm
        assert 'no model loaded' not in node.output
    finally:
        node.kill()


def test_parameter_values_are_validated_into_the_config() -> None:
    values = defaults(PerceptionConfig)
    config = config_from_parameters(PerceptionConfig, values)
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
            config_from_parameters(PerceptionConfig, dict(values, **{name: value}))
    off = dict(values, alarm_error_enter_frames=0, alarm_error_enter_seconds=0.0)
    with pytest.raises(ConfigError, match='error_enter_frames or error_enter_seconds'):
        config_from_parameters(PerceptionConfig, off)


def test_parameter_updates_apply_or_are_rejected_with_a_reason(env, live) -> None:
    record = probe(
        env,
        0,
        '--set', 'overlay_alpha=1.7',
        '--set', 'alarm_error_enter_frames=1',
        '--set', 'alarm_exit_ratio=0.9',
        '--set', 'threads=4',
        '--set', 'publish_overlay=false',
    )  # fmt: skip
    results = {r['name']: r for r in record['set']}
    # outside the declared range: refused by rclpy; in range but inconsistent with the node's
    # alarm_warn_enter_frames (2): refused by the config, each with a reason
    assert not results['overlay_alpha']['successful']
    assert 'overlay_alpha out of range' in results['overlay_alpha']['reason']
    error_frames = results['alarm_error_enter_frames']
    assert not error_frames['successful']
    assert 'error_enter_frames (1) must be >= warn' in error_frames['reason']
    assert results['alarm_exit_ratio']['successful']
    assert not results['threads']['successful']  # read-only: set at start
    assert results['publish_overlay']['successful']
    # frames captured after the change: labelled, no overlay (each frame's overlay would be
    # published before the next frame's labels)
    later = probe(env, 0, '--until', 'labels-after-injection=3')
    assert later['labels'] and not later['overlay']
    probe(env, 0, '--set', 'publish_overlay=true')
