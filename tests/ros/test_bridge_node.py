"""bridge node in a subprocess (real rclpy): drains a spool to local and S3 storage while
/diagnostics shows the backlog falling to zero, and announces a new model package once; S3
faults (truncated bodies, resets, 5xx) and unexpected exceptions are reported while they last
and survived, and a dead worker thread is an ERROR naming it.

Waits are bounded generously and end on what the listener hears; where a test needs the bridge
to be at some point (uploads not started yet), tests/ros/faulty_node.py holds it there at a gate
the test opens. Upload speed is measured by bench/bench_bridge.py."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from robo_lifelong.models import package as mp
from robo_lifelong.transfer import model_store
from robo_lifelong.transfer.spool import Spool
from robo_lifelong.transfer.storage import S3Config, join, open_storage
from robo_lifelong.transfer.uploader import EVENTS_INDEX, UploadConfig, Uploader
from tests.core.test_event_recorder import spool_event
from tests.core.test_model_package import ONNX, manifest
from tests.core.test_uploader import T0, check_uploaded, fill
from tests.fakes.fault_proxy import Fault, FaultProxy
from tests.ros.diagnostics_listener import DiagnosticsListener

pytestmark = pytest.mark.ros

DOMAIN_ID = random.Random(os.getpid()).randint(150, 200)  # this module's private domain
BRIDGE = 'robo_lifelong.nodes.bridge_node'
FAULTY_NODE = Path(__file__).with_name('faulty_node.py')
UPLOADS, MODELS = 'bridge: uploads', 'bridge: models'
OK, WARN, ERROR = b'\x00', b'\x01', b'\x02'


class Listener(DiagnosticsListener):
    """The test listener on this module's domain; ``diagnostics`` are the 'bridge: uploads'
    statuses."""

    def __init__(self) -> None:
        super().__init__(DOMAIN_ID)

    @property
    def diagnostics(self) -> list[dict]:
        return self.statuses[UPLOADS]


@pytest.fixture
def listener():
    lis = Listener()
    yield lis
    lis.close()


def start_bridge(
    params: dict, env_extra: dict | None = None, inject: tuple[str, str, int] | None = None
) -> subprocess.Popen:
    """The bridge in a subprocess; ``inject`` = (target, exception, times) runs it through
    tests/ros/faulty_node.py with that function patched to raise."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), PYTHONUNBUFFERED='1', **(env_extra or {}))
    env.setdefault('AMENT_PREFIX_PATH', sys.prefix)
    args = sum((['-p', f'{k}:={v}'] for k, v in params.items()), [])
    if inject is None:
        cmd = [sys.executable, '-m', BRIDGE]
    else:
        target, error, times = inject
        cmd = [sys.executable, str(FAULTY_NODE), BRIDGE, target, error, str(times)]
    cmd += ['--ros-args', *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop_bridge(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.stdout.read().decode(errors='replace')


def model_polls(listener: Listener) -> int:
    """How many deploy-pointer polls bridge/status has shown (each has its own last_check)."""
    return len({json.loads(s)['models']['last_check'] for s in listener.status})


def test_bridge_drains_spool_and_announces_model_once(tmp_path: Path, listener: Listener):
    robot = f'dog-{os.getpid()}'
    spool = Spool(tmp_path / 'spool', 10**12, 1000)
    pointer = tmp_path / 'deploy' / 'index.pkl'
    gate = tmp_path / 'uploads-may-start'  # the upload thread waits for it before each step
    proc = start_bridge(
        {
            'spool_dir': tmp_path / 'spool',
            'storage_url': tmp_path / 'store',
            'robot_id': robot,
            'model_url': pointer,
            'models_dir': tmp_path / 'models',
            'upload_poll_s': 0.2,
            'model_poll_s': 0.2,
            'status_period_s': 0.2,
            'bandwidth_limit_bytes_per_s': 4000,  # ~3 samples/s
        },
        inject=('robo_lifelong.transfer.uploader:Uploader.step', f'gate:{gate}', -1),
    )
    try:
        assert listener.spin_until(lambda: listener.diagnostics, 60), 'no diagnostics'
        ids = fill(spool, 8, robot=robot, size=1000)
        # held at the gate: the whole backlog is reported, nothing uploaded
        assert listener.spin_until(lambda: listener.diagnostics[-1]['backlog_count'] == '8', 60), (
            listener.diagnostics[-1]
        )
        assert listener.diagnostics[-1]['uploaded'] == '0'
        held = len(listener.diagnostics) - 1
        gate.touch()
        assert listener.spin_until(
            lambda: (
                listener.diagnostics[-1]['backlog_count'] == '0'
                and listener.diagnostics[-1]['uploaded'] == '8'
            ),
            60,
        ), listener.diagnostics[-1]
        assert listener.diagnostics[-1]['level'] == b'\x00'  # OK
        # the backlog falls from 8 to 0 and never grows back while draining
        backlog = [int(d['backlog_count']) for d in listener.diagnostics[held:]]
        assert backlog[0] == 8 and backlog == sorted(backlog, reverse=True)
        check_uploaded(open_storage(str(tmp_path / 'store')), ids)

        # bridge/status is a separate message of the same period: it may arrive a beat later
        def status_drained() -> bool:
            if not listener.status:
                return False
            status = json.loads(listener.status[-1])
            return status['backlog']['count'] == 0 and status['uploads']['uploaded'] == 8

        assert listener.spin_until(status_drained, 30), listener.status[-1:]

        package = mp.write_package(tmp_path / 'pkg', ONNX, manifest(version=4))
        model_store.write_pointer(
            str(pointer), mp.DeployPointer.for_package(package, str(package.path))
        )
        assert listener.spin_until(lambda: listener.updates, 60), 'no model/update'
        # three more polls of the pointer (counted on bridge/status): no second announcement
        polls = model_polls(listener)
        assert listener.spin_until(lambda: model_polls(listener) >= polls + 3, 60)
        assert listener.updates == [str(tmp_path / 'models' / package.content_hash)]
        assert mp.load_package(listener.updates[0]).content_hash == package.content_hash
    finally:
        gate.touch()  # a failed test must not leave the upload thread waiting
        log = stop_bridge(proc)
    assert proc.returncode == 0, log
    assert 'uploaded 8 samples' in log


@pytest.mark.s3
def test_bridge_uploads_to_s3_and_warns_while_unreachable(
    tmp_path, listener, s3_server, s3_bucket
):
    robot = f'dog-s3-{os.getpid()}'
    spool = Spool(tmp_path / 'spool', 10**12, 1000)
    ids = fill(spool, 5, robot=robot)
    params = {
        'spool_dir': tmp_path / 'spool',
        'storage_url': f'{s3_bucket}/fleet',
        'robot_id': robot,
        'status_period_s': 0.2,
        'backoff_max_s': 0.5,
    }
    dead = dict(s3_server.env, S3_ENDPOINT_URL='http://127.0.0.1:9')  # nothing listens there
    proc = start_bridge(params, dead)
    try:
        assert listener.spin_until(
            lambda: listener.diagnostics and listener.diagnostics[-1]['level'] == b'\x01', 30
        ), 'no WARN while S3 is unreachable'
        assert listener.diagnostics[-1]['backlog_count'] == '5'
    finally:
        log = stop_bridge(proc)
    text = log + ''.join(listener.status) + json.dumps(listener.diagnostics, default=str)
    assert s3_server.secret_key not in text and s3_server.access_key not in text

    listener.diagnostics.clear()
    proc = start_bridge(params, s3_server.env)
    try:
        assert listener.spin_until(
            lambda: listener.diagnostics and listener.diagnostics[-1]['backlog_count'] == '0', 30
        )
    finally:
        log = stop_bridge(proc)
    assert proc.returncode == 0, log
    check_uploaded(open_storage(f'{s3_bucket}/fleet', S3Config.from_environ(s3_server.env)), ids)


def uploads_status(listener: Listener) -> dict:
    """The 'uploads' part of the last bridge/status ({} before the first one arrived)."""
    return json.loads(listener.status[-1])['uploads'] if listener.status else {}


@pytest.mark.s3
def test_bridge_reports_s3_faults_while_they_last_then_delivers_everything_once(
    tmp_path, listener, s3_server, s3_bucket
):
    robot = f'dog-faults-{os.getpid()}'
    url = f'{s3_bucket}/fleet'
    s3 = S3Config.from_environ(s3_server.env)
    store = open_storage(url, s3)
    # one sample indexed before, so the index has a body to cut in half
    seed_spool = Spool(tmp_path / 'seed', 10**12, 10)
    seed = fill(seed_spool, 1, robot=robot, t0=T0 - 1000)
    Uploader(seed_spool, store, UploadConfig(robot)).drain()
    package = mp.write_package(tmp_path / 'pkg', ONNX, manifest(version=7))
    package_url = join(s3_bucket, 'models', 'v7')
    model_store.publish_package(package, package_url, s3)
    pointer = join(s3_bucket, 'deploy', 'index.pkl')
    model_store.write_pointer(pointer, mp.DeployPointer.for_package(package, package_url), s3)
    ids = fill(Spool(tmp_path / 'spool', 10**12, 1000), 6, robot=robot)
    params = {
        'spool_dir': tmp_path / 'spool',
        'storage_url': url,
        'robot_id': robot,
        'model_url': pointer,
        'models_dir': tmp_path / 'models',
        'upload_poll_s': 0.2,
        'model_poll_s': 0.2,
        'status_period_s': 0.2,
        'backoff_max_s': 0.5,
    }
    with FaultProxy(s3_server.ports['s3']) as proxy:
        # first every response body is cut in half (the defect of issue 18 killed both threads)
        proxy.set_faults([Fault.TRUNCATE], match=lambda method, path: method == 'GET')
        proc = start_bridge(params, dict(s3_server.env, S3_ENDPOINT_URL=proxy.url))
        try:

            def failing(name: str, reason: str) -> bool:
                last = listener.last(name)
                return bool(last) and last['level'] == WARN and reason in last['message']

            assert listener.spin_until(
                lambda: failing(UPLOADS, 'IncompleteRead') and failing(MODELS, 'IncompleteRead'),
                60,
            ), (listener.last(UPLOADS), listener.last(MODELS))
            assert listener.last(UPLOADS)['thread_alive'] == 'True'
            assert listener.last(MODELS)['thread_alive'] == 'True'
            assert listener.spin_until(
                lambda: (
                    uploads_status(listener).get('failures', 0) > 0
                    and 'IncompleteRead' in uploads_status(listener)['last_error']
                ),
                30,
            ), listener.status[-1:]

            # then resets, 503s and truncated replies take turns on every request
            before = dict(proxy.injected)
            proxy.set_faults(tuple(Fault))
            assert listener.spin_until(
                lambda: all(proxy.injected[f] > before.get(f, 0) for f in Fault), 60
            ), proxy.injected
            received = len(listener.diagnostics)
            assert listener.spin_until(lambda: len(listener.diagnostics) >= received + 3, 30)
            assert proc.poll() is None
            during = list(listener.diagnostics)
            statuses = [json.loads(s) for s in listener.status]
        finally:
            proxy.clear()
        try:
            # from the first failure until the faults stopped, nothing claimed to be fine
            first = next(i for i, d in enumerate(during) if d['level'] != OK)
            assert all(d['level'] == WARN and 'failing' in d['message'] for d in during[first:])
            first = next(i for i, s in enumerate(statuses) if s['uploads']['failures'])
            assert all(s['uploads']['failures'] > 0 for s in statuses[first:])
            assert all(d['backlog_count'] == '6' and d['uploaded'] == '0' for d in during)

            assert listener.spin_until(
                lambda: (
                    listener.diagnostics[-1]['backlog_count'] == '0'
                    and listener.diagnostics[-1]['uploaded'] == '6'
                    and listener.diagnostics[-1]['level'] == OK
                    and listener.updates
                ),
                60,
            ), (listener.diagnostics[-1], listener.updates)
            assert listener.updates == [str(tmp_path / 'models' / package.content_hash)]
            assert listener.spin_until(lambda: uploads_status(listener).get('uploaded') == 6, 30)
            uploads = uploads_status(listener)
            assert uploads['failures'] == 0 and uploads['total_failures'] > 0
        finally:
            log = stop_bridge(proc)
    assert proc.returncode == 0, log
    assert 'uploaded 6 samples' in log
    check_uploaded(store, [*seed, *ids])  # nothing lost, nothing twice in unlabeled.txt
    text = log + ''.join(listener.status) + json.dumps(dict(listener.statuses), default=str)
    assert s3_server.secret_key not in text and s3_server.access_key not in text


def test_bridge_upload_thread_counts_an_unexpected_exception_and_carries_on(tmp_path, listener):
    robot = f'dog-bug-{os.getpid()}'
    ids = fill(Spool(tmp_path / 'spool', 10**12, 100), 3, robot=robot)
    params = {
        'spool_dir': tmp_path / 'spool',
        'storage_url': tmp_path / 'store',
        'robot_id': robot,
        'upload_poll_s': 0.2,
        'status_period_s': 0.2,
    }
    proc = start_bridge(
        params, inject=('robo_lifelong.transfer.uploader:Uploader.step', 'RuntimeError', 2)
    )
    try:
        assert listener.spin_until(
            lambda: (
                listener.diagnostics
                and listener.diagnostics[-1]['uploaded'] == '3'
                and listener.diagnostics[-1]['total_failures'] == '2'
            ),
            30,
        ), listener.diagnostics[-1:]
        last = listener.diagnostics[-1]
        assert last['level'] == OK and last['thread_alive'] == 'True'
        assert last['last_error'] == 'RuntimeError: injected by the test'
        assert listener.spin_until(lambda: uploads_status(listener).get('total_failures') == 2, 30)
    finally:
        log = stop_bridge(proc)
    assert proc.returncode == 0, log
    assert 'Traceback' in log  # logged with its traceback, once
    check_uploaded(open_storage(str(tmp_path / 'store')), ids)


def test_bridge_killed_mid_event_upload_loses_and_duplicates_nothing(tmp_path, listener):
    spool = Spool(tmp_path / 'spool', 10**12, 100)
    event = spool_event(spool)  # the oldest entry: the first one uploaded
    ids = fill(spool, 3, robot='dog-1', t0=T0 + 10)
    spool.close()
    params = {
        'spool_dir': tmp_path / 'spool',
        'storage_url': tmp_path / 'store',
        'robot_id': 'dog-1',
        'upload_poll_s': 0.2,
        'status_period_s': 0.2,
    }
    # kill -9 once the event's files are up, before its events.txt line
    index_write = 'robo_lifelong.transfer.storage:LocalStorage.append_line_once'
    proc = start_bridge(params, inject=(index_write, 'SIGKILL', 1))
    try:
        proc.wait(120)
    finally:
        log = stop_bridge(proc)
    assert proc.returncode == -signal.SIGKILL, log
    store = open_storage(str(tmp_path / 'store'))
    assert store.list(f'events/dog-1/2026-11-18/{event}/') and not store.exists(EVENTS_INDEX)

    proc = start_bridge(params)  # the restarted bridge
    try:
        assert listener.spin_until(
            lambda: (
                listener.diagnostics
                and listener.diagnostics[-1]['backlog_count'] == '0'
                and listener.diagnostics[-1]['events_uploaded'] == '1'
                and listener.diagnostics[-1]['uploaded'] == '3'
            ),
            60,
        ), listener.diagnostics[-1:]
    finally:
        log = stop_bridge(proc)
    assert proc.returncode == 0, log
    check_uploaded(store, ids)
    check_uploaded(store, [event], EVENTS_INDEX)


def test_a_dead_upload_thread_is_a_diagnostics_error_naming_it(tmp_path, listener):
    params = {
        'spool_dir': tmp_path / 'spool',
        'storage_url': tmp_path / 'store',
        'status_period_s': 0.2,
    }
    # SystemExit is no Exception: it ends the thread it is raised in, as a supervisor bug might
    proc = start_bridge(
        params, inject=('robo_lifelong.transfer.uploader:Uploader.step', 'SystemExit', -1)
    )
    try:
        assert listener.spin_until(
            lambda: listener.diagnostics and listener.diagnostics[-1]['level'] == ERROR, 30
        ), listener.diagnostics[-1:]
        last = listener.diagnostics[-1]
        assert last['message'].startswith('thread bridge-upload is not running')
        assert last['thread_alive'] == 'False'
        assert listener.spin_until(
            lambda: uploads_status(listener).get('thread', {}).get('alive') is False, 30
        )
        assert proc.poll() is None  # the node itself is still up and says so
    finally:
        log = stop_bridge(proc)
    assert proc.returncode == 0, log
