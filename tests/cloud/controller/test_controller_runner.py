"""The controller's stage machine end to end, with fake worker processes."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from robo_lifelong_cloud.controller.manifests import load_manifests, schema_for, with_overrides
from robo_lifelong_cloud.controller.runner import (
    DEVIATIONS_ANNOTATION,
    Controller,
    ControllerConfig,
)
from robo_lifelong_cloud.controller.status import StateDir
from robo_lifelong_cloud.controller.workers import NAME_ALPHABET, SEDNA_VARS
from tests.cloud.controller.conftest import (
    FAKE_WORKER,
    add_samples,
    make_controller,
    states,
    tick_until,
    write_job,
)

TYPICAL_ROUND = [
    'Train/Waiting',
    'Train/Ready',
    'Train/Starting',
    'Train/Running',
    'Train/Completed',
    'Eval/Waiting',
    'Eval/Ready',
    'Eval/Starting',
    'Eval/Running',
    'Eval/Completed',
    'Deploy/Waiting',
    'Deploy/Ready',
    'Deploy/Completed',
    'Train/Waiting',
]
LC_APPENDS = {'Train/Ready', 'Train/Completed', 'Eval/Ready', 'Eval/Completed', 'Deploy/Ready'}


def _round_done(controller) -> bool:
    return states(controller)[-2:] == ['Deploy/Completed', 'Train/Waiting']


def _wait_exit(controller, stage: str) -> None:
    worker = controller.worker(stage)
    if worker is not None:
        worker.wait(10)


def test_full_round_follows_the_typical_sequence(tmp_path: Path) -> None:
    add_samples(tmp_path, 0, 8)  # trainProb 0.75: 6 train lines >= 4, 2 eval lines
    with make_controller(tmp_path) as controller:
        tick_until(controller, _round_done)
        assert states(controller) == TYPICAL_ROUND
        conditions = controller.conditions
        for condition in conditions:
            expected = (
                'reported by lc'
                if f'{condition["stage"]}/{condition["type"]}' in (LC_APPENDS)
                else ''
            )
            assert condition['message'] == expected, condition
            assert condition['status'] == 'True'
        out = tmp_path / 'out' / 'job'
        data = {f'{c["stage"]}/{c["type"]}': json.loads(c['data'] or 'null') for c in conditions}
        assert data['Train/Waiting'] is None and data['Train/Starting'] is None
        assert data['Train/Ready'] == {
            'input': {'dataURL': f'{out}/data/train/1/data.txt', 'outputDir': f'{out}/train/1'}
        }
        train_url = f'{out}/train/1/index.pkl'
        assert data['Train/Completed'] == {
            'output': {'models': [{'format': 'pkl', 'url': train_url, 'classes': None}]}
        }
        assert data['Eval/Ready'] == {
            'input': {
                'models': [{'format': 'pkl', 'url': train_url, 'classes': None}],
                'dataURL': f'{out}/data/eval/1/data.txt',
                'outputDir': f'{out}/eval/1',
            }
        }
        eval_url = f'{out}/eval/1/index.pkl'
        eval_model = data['Eval/Completed']['output']['models'][0]
        assert eval_model['url'] == eval_url and eval_model['metrics'] == {'accuracy': 0.875}
        assert 'ownerInfo' not in eval_model and 'ownerinfo' not in eval_model
        assert data['Deploy/Ready'] == {
            'input': {'models': [{'format': 'pkl', 'url': eval_url, 'classes': None}]}
        }
        # files of PROTOCOL.md §2.4: positional split, the deployed copy is the eval artefact
        train_lines = (out / 'data/train/1/data.txt').read_text().splitlines()
        eval_lines = (out / 'data/eval/1/data.txt').read_text().splitlines()
        assert [line.split()[0][-10:] for line in train_lines] == [
            f'{i:06d}.png' for i in range(6)
        ]
        assert len(eval_lines) == 2 and '000006.png' in eval_lines[0]
        assert (out / 'deploy/index.pkl').read_bytes() == Path(eval_url).read_bytes()
        assert json.loads((out / 'deploy/index.pkl').read_text())['models'] == train_url
        status = controller.job['status']
        assert status['knowledgeBase']['AIClasses'] == {
            'numberOfAIClasses': 2,
            'listOfAIClasses': ['road', 'curb'],
        }
        assert status['knowledgeBase']['samples']['numberOfLabeledUnseenSample'] == 3
        assert controller.dataset['status']['numberOfSamples'] == 8


def test_history_and_status_file_match_the_crd_schema(tmp_path: Path) -> None:
    add_samples(tmp_path, 0, 8)
    with make_controller(tmp_path) as controller:
        tick_until(controller, _round_done)
    saved = StateDir(tmp_path / 'state').read_job()
    jsonschema.Draft7Validator(schema_for('LifelongLearningJob')).validate(saved)
    jsonschema.Draft7Validator(schema_for('Dataset')).validate(
        StateDir(tmp_path / 'state').read_dataset()
    )
    assert saved['apiVersion'] == 'sedna.io/v1alpha1' and saved['kind'] == 'LifelongLearningJob'
    assert [f'{c["stage"]}/{c["type"]}' for c in saved['status']['conditions']] == TYPICAL_ROUND
    for condition in saved['status']['conditions']:
        assert set(condition) == {
            'type',
            'status',
            'stage',
            'lastHeartbeatTime',
            'lastTransitionTime',
            'reason',
            'message',
            'data',
        }
        assert condition['lastTransitionTime'].endswith('Z')
    assert saved['status']['startTime']
    assert DEVIATIONS_ANNOTATION in saved['metadata']['annotations']
    # a broken history is caught by the same schema check
    saved['status']['conditions'][0]['data'] = {'not': 'a string'}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema_for('LifelongLearningJob')).validate(saved)


def test_failed_report_goes_back_to_train_waiting(tmp_path: Path) -> None:
    add_samples(tmp_path, 0, 8)
    with make_controller(tmp_path, train_mode='fail') as controller:
        tick_until(controller, lambda c: 'Train/Failed' in states(c))
        tick_until(controller, lambda c: states(c)[-1] == 'Train/Waiting')
        assert states(controller) == TYPICAL_ROUND[:4] + ['Train/Failed', 'Train/Waiting']
        assert controller.conditions[4]['message'] == 'reported by lc'
        _wait_exit(controller, 'Train')
        controller.tick()  # the exit 0 after a failed report changes nothing
        assert states(controller)[-1] == 'Train/Waiting'
        # the failed round used up the train list (Sedna clears it on every trigger)
        assert controller.lc.samples.train == []


@pytest.mark.parametrize(
    ('mode', 'reason', 'message'),
    [
        ('crash', 'WorkerFailed', 'worker exit code 3'),
        ('sigkill', 'WorkerFailed', 'worker killed by SIGKILL'),
        ('silent', 'ExitedWithoutReport', 'worker exited 0 without reporting to the LC'),
    ],
)
def test_worker_exit_without_completed_report_fails_the_stage(
    tmp_path: Path, mode: str, reason: str, message: str
) -> None:
    add_samples(tmp_path, 0, 8)
    with make_controller(tmp_path, eval_mode=mode) as controller:
        tick_until(controller, lambda c: 'Eval/Failed' in states(c))
        tick_until(controller, lambda c: states(c)[-1] == 'Train/Waiting')
        assert states(controller)[4:] == [
            'Train/Completed',
            'Eval/Waiting',
            'Eval/Ready',
            'Eval/Starting',
            'Eval/Running',
            'Eval/Failed',
            'Train/Waiting',
        ]
        failed = controller.conditions[-2]
        assert (failed['reason'], failed['message'], failed['data']) == (reason, message, '')
        assert not (tmp_path / 'out/job/deploy/index.pkl').exists()


def test_worker_killed_by_the_user_fails_the_stage(tmp_path: Path) -> None:
    add_samples(tmp_path, 0, 8)
    with make_controller(tmp_path, train_mode='hang') as controller:
        tick_until(controller, lambda c: states(c)[-1] == 'Train/Running')
        controller.worker('Train').send_signal(signal.SIGTERM)
        tick_until(controller, lambda c: states(c)[-1] == 'Train/Waiting')
        assert states(controller)[-2:] == ['Train/Failed', 'Train/Waiting']
        assert controller.conditions[-2]['message'] == 'worker killed by SIGTERM'


def _view(env: dict) -> Path:
    """A worker's pod view (its DATA_PATH_PREFIX)."""
    return Path(env['DATA_PATH_PREFIX'])


def _seen(env: dict, host_path: Path | str) -> str:
    return env['DATA_PATH_PREFIX'] + str(host_path)


def test_worker_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # stale Sedna variables in the controller's own environment must not leak into workers
    monkeypatch.setenv('DATA_PATH_PREFIX', '/home/data')
    monkeypatch.setenv('MODEL_URLS', '/stale')
    add_samples(tmp_path, 0, 8)
    with make_controller(tmp_path) as controller:
        tick_until(controller, _round_done)
        lc_server = controller.server.url
    out = tmp_path / 'out' / 'job'
    runs = {}
    for path in (tmp_path / 'envs').glob('*.json'):
        run = json.loads(path.read_text())
        runs[run['argv'][0]] = run['env']
    train, evaluate = runs['train'], runs['eval']
    for env, prefix in ((train, 'train-worker-'), (evaluate, 'eval-worker-')):
        assert env['WORKER_NAME'].startswith(prefix)
        suffix = env['WORKER_NAME'][len(prefix) :]
        assert len(suffix) == 5 and set(suffix) <= set(NAME_ALPHABET)
        assert env['NAMESPACE'] == 'default' and env['JOB_NAME'] == 'robo-demo'
        assert env['LC_SERVER'] == lc_server and lc_server.startswith('http://127.0.0.1:')
        assert env['KB_SERVER'] == 'http://localhost:9020'
        # host paths as GM rewrites them, under the worker's own view (not /home/data)
        assert _view(env) == tmp_path / 'state' / 'pods' / env['WORKER_NAME']
        assert env['ORIGINAL_DATASET_URL'] == _seen(env, tmp_path / 'data' / 'data.txt')
        assert env['BACKEND_TYPE'] == 'PYTORCH' and env['num_class'] == '24'
    assert {k for k in SEDNA_VARS if k in train} == {
        'NAMESPACE',
        'JOB_NAME',
        'WORKER_NAME',
        'LC_SERVER',
        'KB_SERVER',
        'HAS_COMPLETED_INITIAL_TRAINING',
        'OUTPUT_URL',
        'TRAIN_DATASET_URL',
        'ORIGINAL_DATASET_URL',
        'DATA_PATH_PREFIX',
    }
    assert train['HAS_COMPLETED_INITIAL_TRAINING'] == 'false'
    assert train['OUTPUT_URL'] == _seen(train, f'{out}/train/1')
    assert train['TRAIN_DATASET_URL'] == _seen(train, f'{out}/data/train/1/data.txt')
    assert train['train_ratio'] == '0.9'
    assert {k for k in SEDNA_VARS if k in evaluate} == {
        'NAMESPACE',
        'JOB_NAME',
        'WORKER_NAME',
        'LC_SERVER',
        'KB_SERVER',
        'OUTPUT_URL',
        'TEST_DATASET_URL',
        'ORIGINAL_DATASET_URL',
        'MODEL_URLS',
        'DATA_PATH_PREFIX',
    }
    assert evaluate['MODEL_URLS'] == _seen(evaluate, f'{out}/train/1/index.pkl')
    assert evaluate['OUTPUT_URL'] == _seen(evaluate, f'{out}/eval/1')
    assert evaluate['TEST_DATASET_URL'] == _seen(evaluate, f'{out}/data/eval/1/data.txt')
    assert (evaluate['operator'], evaluate['model_threshold']) == ('<', '0')
    # the views are gone with the controller
    assert not (tmp_path / 'state' / 'pods').exists() or not any(
        (tmp_path / 'state' / 'pods').iterdir()
    )


def test_eval_worker_sees_only_what_a_pod_mounts(tmp_path: Path) -> None:
    """Round 2's eval view: the parent directories of MODEL_URLS, TEST_DATASET_URL,
    ORIGINAL_DATASET_URL and OUTPUT_URL (PROTOCOL.md §3.2), so not O/deploy nor round 1."""
    add_samples(tmp_path, 0, 8)
    out = tmp_path / 'out' / 'job'
    with make_controller(tmp_path, eval_mode='hang') as controller:
        tick_until(controller, lambda c: states(c)[-1] == 'Eval/Running')
        (out / 'deploy').mkdir(parents=True)
        (out / 'deploy' / 'index.pkl').write_text('{}')
        record = tmp_path / 'envs' / f'{controller.worker("Eval").name}.json'
        deadline = time.monotonic() + 20
        while not record.is_file():  # the fake worker writes it first thing
            assert time.monotonic() < deadline, 'the eval worker did not start'
            time.sleep(0.05)
        env = json.loads(record.read_text())['env']
        view = _view(env)
        links = sorted(str(p.relative_to(view)) for p in view.rglob('*') if p.is_symlink())
        mounts = [f'{out}/train/1', f'{out}/eval', f'{out}/data/eval/1', f'{tmp_path}/data']
        assert links == sorted(m.lstrip('/') for m in mounts)
        for mount in mounts:
            assert (view / mount.lstrip('/')).resolve() == Path(mount)
        assert Path(env['MODEL_URLS']).read_text() == (out / 'train/1/index.pkl').read_text()
        assert not Path(_seen(env, out / 'deploy' / 'index.pkl')).exists()
        seen_out = Path(_seen(env, out))
        assert sorted(p.name for p in seen_out.iterdir()) == ['data', 'eval', 'train']
        assert [p.name for p in (seen_out / 'train').iterdir()] == ['1']
        assert Path(env['OUTPUT_URL']).parent.is_dir()  # O/eval is there, writable
    assert not view.exists()  # removed with the controller (the links only)
    assert (out / 'train' / '1' / 'index.pkl').is_file()


def test_second_round_trains_incrementally(tmp_path: Path) -> None:
    add_samples(tmp_path, 0, 8)
    with make_controller(tmp_path) as controller:
        tick_until(controller, _round_done)
        assert controller.lc.round == 1
        add_samples(tmp_path, 8, 8)
        tick_until(controller, lambda c: states(c).count('Deploy/Completed') == 2)
        tick_until(controller, _round_done)
        assert states(controller) == TYPICAL_ROUND + TYPICAL_ROUND[1:]
    out = tmp_path / 'out' / 'job'
    envs = [json.loads(p.read_text()) for p in (tmp_path / 'envs').glob('train-*.json')]
    second = next(e['env'] for e in envs if e['env']['OUTPUT_URL'].endswith('/train/2'))
    assert second['HAS_COMPLETED_INITIAL_TRAINING'] == 'true'
    assert second['CLOUD_KB_INDEX'] == f'{out}/train/1/index.pkl'
    # round 2's eval list re-appends every retained batch: 2 (batch 1) + 2 + 2 (batch 2)
    assert len((out / 'data/eval/2/data.txt').read_text().splitlines()) == 6


def test_restart_resumes_from_the_status_file(tmp_path: Path) -> None:
    add_samples(tmp_path, 0, 8)
    with make_controller(tmp_path) as controller:
        tick_until(controller, _round_done)
        uid = controller.job['metadata']['uid']
    add_samples(tmp_path, 8, 3)  # 2 train lines pending: below the threshold of 4
    with make_controller(tmp_path) as controller:
        tick_until(controller, lambda c: c.dataset['status']['numberOfSamples'] == 11)
        controller.tick()
        assert controller.job['metadata']['uid'] == uid
        assert states(controller) == TYPICAL_ROUND  # nothing re-run, nothing appended
        assert controller.lc.round == 1 and len(controller.lc.samples.train) == 2
    add_samples(tmp_path, 11, 3)  # 2 more (floor(0.75*3)=2): 4 pending -> round 2
    with make_controller(tmp_path, train_mode='hang') as controller:
        tick_until(controller, lambda c: states(c)[-1] == 'Train/Running')
        assert controller.lc.round == 2
    # the worker died with the controller: the restart records it and starts over
    with make_controller(tmp_path) as controller:
        controller.tick()
        assert states(controller)[-3:] == ['Train/Running', 'Train/Failed', 'Train/Waiting']
        assert controller.conditions[-2]['reason'] == 'WorkerLost'


@pytest.mark.s3
def test_s3_output_dir_and_dataset(tmp_path: Path, s3_server, s3_bucket: str) -> None:
    """S3 URLs are passed as they are, with the Secret's credentials (PROTOCOL.md §3.4)."""
    bucket = s3_bucket.removeprefix('s3://')
    client = s3_server.client()
    lines = ''.join(f'sunny/rgb/{i}.png sunny/label/{i}.png\n' for i in range(8))
    client.put_object(Bucket=bucket, Key='data/data.txt', Body=lines.encode())
    manifests_dir = write_job(tmp_path)
    secret = {
        'apiVersion': 'v1',
        'kind': 'Secret',
        'metadata': {
            'name': 's3-cred',
            'annotations': {
                's3-endpoint': s3_server.endpoint_url.removeprefix('http://'),
                's3-usehttps': '0',
            },
        },
        'stringData': {
            'ACCESS_KEY_ID': s3_server.access_key,
            'SECRET_ACCESS_KEY': s3_server.secret_key,
        },
    }
    (manifests_dir / 'secret.yaml').write_text(yaml.safe_dump(secret))
    manifests = with_overrides(
        load_manifests([manifests_dir]), f'{s3_bucket}/data/data.txt', f'{s3_bucket}/out/job'
    )
    manifests.dataset['spec']['credentialName'] = 's3-cred'
    manifests.job['spec']['credentialName'] = 's3-cred'
    config = ControllerConfig(
        state_dir=tmp_path / 'state',
        tick_s=0.05,
        dataset_poll_s=0.0,
        command=(sys.executable, str(FAKE_WORKER)),
    )
    with Controller(manifests, config) as controller:
        tick_until(controller, _round_done)
        assert states(controller) == TYPICAL_ROUND
    out = f'{s3_bucket}/out/job'
    train = next(
        json.loads(p.read_text())['env'] for p in (tmp_path / 'envs').glob('train-*.json')
    )
    assert train['OUTPUT_URL'] == f'{out}/train/1'
    assert train['TRAIN_DATASET_URL'] == f'{out}/data/train/1/data.txt'
    assert train['ORIGINAL_DATASET_URL'] == f'{s3_bucket}/data/data.txt'
    assert train['S3_ENDPOINT_URL'] == s3_server.endpoint_url
    assert train['ACCESS_KEY_ID'] == s3_server.access_key
    assert train['SECRET_ACCESS_KEY'] == s3_server.secret_key
    ready = json.loads(controller.conditions[1]['data'])['input']
    assert ready['dataIndexURL'] == f'{out}/data/train/1/dataIndex.txt'

    def read(key: str) -> bytes:
        return client.get_object(Bucket=bucket, Key=key)['Body'].read()

    index = read('out/job/data/train/1/dataIndex.txt').decode().splitlines()
    assert index[:3] == [f'{s3_bucket}/data/', 'sunny/rgb/0.png', 'sunny/label/0.png']
    assert len(read('out/job/data/train/1/data.txt').decode().splitlines()) == 6
    assert read('out/job/deploy/index.pkl') == read('out/job/eval/1/index.pkl')
