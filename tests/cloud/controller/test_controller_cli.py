"""``robo-lifelong-job run|status`` end to end with the fake worker; ``rollback`` on a job
whose history deployed v1 then v2."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from robo_lifelong.models import package as mp
from robo_lifelong.transfer import model_store
from robo_lifelong_cloud.controller.cli import main
from robo_lifelong_cloud.controller.conditions import (
    ConditionType,
    Stage,
    condition_data,
    make_condition,
)
from robo_lifelong_cloud.controller.runner import DEPLOY_KEY
from robo_lifelong_cloud.controller.status import StateDir, table
from tests.cloud.controller.conftest import FAKE_WORKER, add_samples, write_job
from tests.core.test_model_package import ONNX, manifest


def test_run_until_deployed_then_status(tmp_path: Path, capsys) -> None:
    add_samples(tmp_path, 0, 8)
    manifests = write_job(tmp_path)
    state = tmp_path / 'state'
    worker = shlex.join([sys.executable, str(FAKE_WORKER)])
    result = subprocess.run(
        [
            sys.executable,
            '-m',
            'robo_lifelong_cloud.controller.cli',
            'run',
            '-f',
            str(manifests),
            '--state',
            str(state),
            '--tick',
            '0.05',
            '--dataset-poll',
            '0',
            '--worker-command',
            worker,
            '--until-deployed',
            '1',
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert main(['status', '--state', str(state)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ['NAME', 'AGE', 'STAGE', 'STATUS']
    assert rows[1].split()[0] == 'robo-demo' and rows[1].split()[2:] == ['Train', 'Waiting']
    assert main(['status', '--state', str(state), '-o', 'yaml']) == 0
    job = yaml.safe_load(capsys.readouterr().out)
    assert job['kind'] == 'LifelongLearningJob'
    assert [c['type'] for c in job['status']['conditions']].count('Completed') == 3
    assert main(['status', '--state', str(state), '-o', 'json']) == 0
    assert json.loads(capsys.readouterr().out) == job
    logs = sorted(p.name for p in (state / 'logs').iterdir())
    assert [name.split('-')[0] for name in logs] == ['eval', 'train']


def test_bad_manifest_and_missing_state(tmp_path: Path, capsys) -> None:
    bad = tmp_path / 'job.yaml'
    bad.write_text('kind: Dataset\napiVersion: sedna.io/v1alpha1\nmetadata: {name: d}\nspec: {}\n')
    assert main(['run', '-f', str(bad), '--state', str(tmp_path / 's')]) == 1
    assert 'is a required property' in capsys.readouterr().err
    assert main(['status', '--state', str(tmp_path / 'none')]) == 1


def test_table_age() -> None:
    created = datetime(2026, 1, 1, tzinfo=timezone.utc)
    job = {
        'metadata': {'name': 'j', 'creationTimestamp': '2026-01-01T00:00:00Z'},
        'status': {'conditions': [{'stage': 'Eval', 'type': 'Running'}]},
    }
    assert table(job, created + timedelta(minutes=90)).splitlines()[1].split() == [
        'j',
        '1h',
        'Eval',
        'Running',
    ]
    assert table(job, created + timedelta(seconds=42)).splitlines()[1].split()[1] == '42s'


def deployed_job(root: Path, versions: list[int]) -> tuple[Path, dict[int, mp.ModelPackage]]:
    """A state directory whose job deployed ``versions`` in that order, each from its round's
    eval pointer (as the LC's deploy copy does); returns it and the packages by version."""
    out = root / 'out' / 'job'
    conditions, packages = [], {}
    for round_, version in enumerate(versions, 1):
        package = mp.write_package(
            out / 'train' / str(round_) / 'package', ONNX, manifest(version=version)
        )
        packages[version] = package
        pointer_url = str(out / 'eval' / str(round_) / 'index.json')
        model_store.write_pointer(
            pointer_url, mp.DeployPointer.for_package(package, str(package.path))
        )
        (out / DEPLOY_KEY).parent.mkdir(parents=True, exist_ok=True)
        (out / DEPLOY_KEY).write_bytes(Path(pointer_url).read_bytes())
        data = condition_data(input_={'models': [{'format': 'pkl', 'url': pointer_url}]})
        conditions += [
            make_condition(Stage.EVAL, ConditionType.COMPLETED),
            make_condition(Stage.DEPLOY, ConditionType.READY, data, from_lc=True),
            make_condition(Stage.DEPLOY, ConditionType.COMPLETED),
        ]
    job = {
        'apiVersion': 'sedna.io/v1alpha1',
        'kind': 'LifelongLearningJob',
        'metadata': {'name': 'robo-demo'},
        'spec': {'outputDir': str(out) + '/'},
        'status': {'conditions': conditions},
    }
    state = root / 'state'
    StateDir(state).write(job, {}, {})
    return state, packages


def deployed_version(state: Path) -> int:
    out = Path(StateDir(state).read_job()['spec']['outputDir'])
    return model_store.read_pointer(str(out / DEPLOY_KEY)).version


def test_rollback_points_the_deploy_pointer_at_an_earlier_deployment(tmp_path, capsys) -> None:
    state, packages = deployed_job(tmp_path, [1, 2])
    assert deployed_version(state) == 2
    assert main(['rollback', '--state', str(state), '--to', '1']) == 0
    assert 'now names v1' in capsys.readouterr().out
    out = Path(StateDir(state).read_job()['spec']['outputDir'])
    pointer = model_store.read_pointer(str(out / DEPLOY_KEY))
    assert pointer == mp.DeployPointer.for_package(packages[1], str(packages[1].path))
    assert main(['rollback', '--state', str(state), '--to', '2']) == 0  # and forward again
    assert deployed_version(state) == 2


def test_rollback_refuses_a_version_never_deployed_or_gone(tmp_path, capsys) -> None:
    state, packages = deployed_job(tmp_path, [1, 2])
    assert main(['rollback', '--state', str(state), '--to', '3']) == 1
    err = capsys.readouterr().err
    assert 'version 3 was never deployed' in err and 'deployed versions: 1, 2' in err
    mp.write_package(packages[1].path, ONNX + b'other', manifest(version=1))  # replaced since
    assert main(['rollback', '--state', str(state), '--to', '1']) == 1
    assert 'now holds content_hash' in capsys.readouterr().err
    assert deployed_version(state) == 2  # the pointer was left as it was
    assert main(['rollback', '--state', str(tmp_path / 'none'), '--to', '1']) == 1
