"""``robo-lifelong-job run|status`` end to end with the fake worker."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from robo_lifelong_cloud.controller.cli import main
from robo_lifelong_cloud.controller.status import table
from tests.cloud.controller.conftest import FAKE_WORKER, add_samples, write_job


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
