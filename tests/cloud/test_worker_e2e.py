"""The train and eval workers end to end under a Sedna-like environment, against a local output
directory and the fake LC: a tiny initial round, an incremental round with a new task and new
classes, and the failure paths (bad input -> one-line reason, ``failed`` report, exit 1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from robo_lifelong import model_package as mp
from robo_lifelong.dataset import load_sample, read_index
from robo_lifelong.labels import class_id
from robo_lifelong.runtime import SegmentationRuntime
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.cli import write_dataset
from robo_lifelong_cloud.worker import EXIT_FAILED, run

CAMERA = CameraModel(width=112, height=64)


@pytest.fixture(scope='module')
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp('data')
    write_dataset(base / 'train', ['sunny', 'overcast'], 20, 1, CAMERA)
    write_dataset(base / 'test', ['sunny', 'overcast'], 6, 2, CAMERA)
    return {'train': base / 'train', 'test': base / 'test'}


def sedna_env(lc_url: str, kind: str, out: Path, **extra: str) -> dict[str, str]:
    return {
        'NAMESPACE': 'default',
        'JOB_NAME': 'robo-demo',
        'WORKER_NAME': f'{kind}-worker-b7k2q',
        'LC_SERVER': lc_url,
        'OUTPUT_URL': str(out),
        'BACKEND_TYPE': 'PYTORCH',
        'image_height': '64',
        'image_width': '112',
        'epochs': '6',
        'train_ratio': '0.9',
        **extra,
    }


def majority_rate(root: Path) -> float:
    counts = np.zeros(256, np.int64)
    for sample in read_index(root / 'data.txt'):
        counts += np.bincount(load_sample(root, sample).labels.ravel(), minlength=256)
    counts[255] = 0
    return counts.max() / counts.sum()


def pixel_accuracy(package: mp.ModelPackage, root: Path) -> float:
    runtime = SegmentationRuntime(package)
    hit = total = 0
    for sample in read_index(root / 'data.txt'):
        loaded = load_sample(root, sample)
        keep = loaded.labels != 255
        hit += int(
            np.sum(runtime.infer(loaded.rgb, loaded.depth_mm).labels[keep] == loaded.labels[keep])
        )
        total += int(keep.sum())
    return hit / total


def test_train_then_eval_round(tmp_path: Path, datasets, fake_lc) -> None:
    out = tmp_path / 'O'
    train_index = str(datasets['train'] / 'data.txt')
    env = sedna_env(
        fake_lc.url,
        'train',
        out / 'train' / '1',
        TRAIN_DATASET_URL=train_index,
        ORIGINAL_DATASET_URL=train_index,
        HAS_COMPLETED_INITIAL_TRAINING='false',
    )
    assert run('train', env) == 0
    report = fake_lc.accepted[-1]
    assert (report['kind'], report['status']) == ('train', 'completed')
    pointer_url = str(out / 'train' / '1' / 'index.json')
    assert report['results'] == [{'format': 'json', 'url': pointer_url, 'metrics': None}]
    package = mp.open_model(pointer_url, tmp_path / 'cache')
    manifest = package.manifest
    assert (manifest['version'], manifest['parent_version']) == (1, None)
    assert manifest['known_tasks'] == ['overcast', 'sunny']
    assert manifest['input']['channels'] == 4  # the simulator writes depth
    assert manifest['unseen'] is not None and package.unseen_calibration() is not None
    assert set(manifest['training']['held_out_per_task']) == {'sunny', 'overcast'}
    assert (out / 'train' / '1' / 'plots' / 'training_curve.png').stat().st_size > 0
    # an honest check that it learned: better than always answering the most frequent class
    test_root = datasets['test']
    assert pixel_accuracy(package, test_root) > majority_rate(test_root) + 0.05

    test_index = str(test_root / 'data.txt')
    env = sedna_env(
        fake_lc.url,
        'eval',
        out / 'eval' / '1',
        TEST_DATASET_URL=test_index,
        ORIGINAL_DATASET_URL=test_index,
        MODEL_URLS=pointer_url,
        operator='<',
        model_threshold='0',
    )
    assert run('eval', env) == 0
    report = fake_lc.accepted[-1]
    assert (report['kind'], report['status']) == ('eval', 'completed')
    [result] = report['results']
    assert result['url'] == str(out / 'eval' / '1' / 'index.json')
    assert {'miou', 'pixel_accuracy', 'miou_sunny', 'miou_overcast'} <= set(result['metrics'])
    assert all(np.isfinite(v) for v in result['metrics'].values())
    record = json.loads((out / 'eval' / '1' / 'decision.json').read_text())
    assert record['decision']['deploy'] is True
    assert record['deployed'] is None and record['candidate']['version'] == 1
    assert mp.read_pointer(result['url']).content_hash == package.content_hash


def test_incremental_round_adds_a_task_and_its_classes(tmp_path: Path, datasets, fake_lc) -> None:
    out = tmp_path / 'O'
    root = tmp_path / 'data'
    shutil.copytree(datasets['train'], root)
    index = str(root / 'data.txt')
    assert (
        run(
            'train',
            sedna_env(
                fake_lc.url,
                'train',
                out / 'train' / '1',
                epochs='3',
                TRAIN_DATASET_URL=index,
                ORIGINAL_DATASET_URL=index,
            ),
        )
        == 0
    )
    parent_url = fake_lc.accepted[-1]['results'][0]['url']
    (out / 'deploy').mkdir(parents=True)
    shutil.copy(parent_url, out / 'deploy' / 'index.pkl')  # what the LC's deploy step does

    before = {s.rgb for s in read_index(index)}
    write_dataset(root, ['construction'], 10, 3, CAMERA)
    new_lines = [s.line() for s in read_index(index) if s.rgb not in before]
    round_list = tmp_path / 'train2.txt'
    round_list.write_text('\n'.join(new_lines) + '\n')
    assert (
        run(
            'train',
            sedna_env(
                fake_lc.url,
                'train',
                out / 'train' / '2',
                epochs='3',
                TRAIN_DATASET_URL=str(round_list),
                ORIGINAL_DATASET_URL=index,
                HAS_COMPLETED_INITIAL_TRAINING='true',
                CLOUD_KB_INDEX=parent_url,
            ),
        )
        == 0
    )
    pointer_url = fake_lc.accepted[-1]['results'][0]['url']
    parent = mp.open_model(parent_url, tmp_path / 'cache')
    child = mp.open_model(pointer_url, tmp_path / 'cache')
    assert (child.version, child.manifest['parent_version']) == (2, 1)
    assert child.known_tasks == ('construction', 'overcast', 'sunny')
    assert child.num_classes == class_id('traffic_cone') + 1 > parent.num_classes
    assert child.manifest['classes'][: parent.num_classes] == parent.manifest['classes']
    assert child.manifest['training']['rehearsal_frames'] > 0  # old tasks were rehearsed

    test_root = tmp_path / 'test'
    shutil.copytree(datasets['test'], test_root)
    write_dataset(test_root, ['construction'], 4, 4, CAMERA)
    test_index = str(test_root / 'data.txt')
    assert (
        run(
            'eval',
            sedna_env(
                fake_lc.url,
                'eval',
                out / 'eval' / '2',
                TEST_DATASET_URL=test_index,
                ORIGINAL_DATASET_URL=test_index,
                MODEL_URLS=pointer_url,
                operator='<',
                model_threshold='0',
            ),
        )
        == 0
    )
    record = json.loads((out / 'eval' / '2' / 'decision.json').read_text())
    assert record['deployed']['version'] == 1 and record['candidate']['version'] == 2
    assert 'construction' in record['candidate']['report']['per_task']
    reported = mp.read_pointer(fake_lc.accepted[-1]['results'][0]['url'])
    chosen = child if record['decision']['deploy'] else parent
    assert reported.content_hash == chosen.content_hash


def _corrupt_png(root: Path) -> str:
    (root / 'sunny' / 'rgb' / '000003.png').write_bytes(b'\x89PNG broken')
    return 'sunny/rgb/000003.png'


def _bad_label_ids(root: Path) -> str:
    import cv2

    path = root / 'overcast' / 'label' / '000001.png'
    cv2.imwrite(str(path), np.full((64, 112), 200, np.uint8))
    return 'label ids [200]'


def _missing_file(root: Path) -> str:
    (root / 'sunny' / 'depth' / '000002.png').unlink()
    return 'missing file'


def _size_mismatch(root: Path) -> str:
    import cv2

    cv2.imwrite(str(root / 'sunny' / 'label' / '000004.png'), np.zeros((32, 56), np.uint8))
    return 'size'


@pytest.mark.parametrize('damage', [_corrupt_png, _bad_label_ids, _missing_file, _size_mismatch])
def test_bad_dataset_fails_with_a_reason_naming_the_file(
    tmp_path: Path, datasets, fake_lc, damage, capsys
) -> None:
    root = tmp_path / 'data'
    shutil.copytree(datasets['train'], root)
    expected = damage(root)
    index = str(root / 'data.txt')
    env = sedna_env(
        fake_lc.url, 'train', tmp_path / 'out', TRAIN_DATASET_URL=index, ORIGINAL_DATASET_URL=index
    )
    assert run('train', env) == EXIT_FAILED
    report = fake_lc.accepted[-1]
    assert (report['kind'], report['status']) == ('train', 'failed')
    assert expected in report['ownerInfo']['reason']
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith('train worker failed:') and expected in line
    assert not (tmp_path / 'out' / 'index.json').exists()


@pytest.mark.parametrize(
    ('change', 'expected'),
    [
        ({'TRAIN_DATASET_URL': '/nonexistent/data.txt'}, '/nonexistent/data.txt'),
        ({'OUTPUT_URL': ''}, 'OUTPUT_URL'),
        ({'BACKEND_TYPE': 'TENSORFLOW'}, 'BACKEND_TYPE'),
        ({'epochs': 'many'}, 'epochs'),
        (
            {'OUTPUT_URL': 's3://robo-out/job/train/1', 'S3_ENDPOINT_URL': 'http://127.0.0.1:9'},
            'OUTPUT_URL=s3://robo-out/job/train/1',
        ),
        (
            {'HAS_COMPLETED_INITIAL_TRAINING': 'true', 'CLOUD_KB_INDEX': '/nowhere/index.json'},
            '/nowhere/index.json',
        ),
    ],
)
def test_bad_environment_fails_with_a_reason(
    tmp_path: Path, datasets, fake_lc, change: dict, expected: str
) -> None:
    index = str(datasets['train'] / 'data.txt')
    env = sedna_env(
        fake_lc.url, 'train', tmp_path / 'out', TRAIN_DATASET_URL=index, ORIGINAL_DATASET_URL=index
    )
    assert run('train', {**env, **change}) == EXIT_FAILED
    report = fake_lc.accepted[-1]
    assert report['status'] == 'failed' and expected in report['ownerInfo']['reason']


def test_empty_dataset_list_fails(tmp_path: Path, datasets, fake_lc) -> None:
    empty = tmp_path / 'empty.txt'
    empty.write_text('\n\n')
    env = sedna_env(
        fake_lc.url,
        'eval',
        tmp_path / 'out',
        TEST_DATASET_URL=str(empty),
        ORIGINAL_DATASET_URL=str(datasets['test'] / 'data.txt'),
        MODEL_URLS='/x/index.json',
    )
    assert run('eval', env) == EXIT_FAILED
    reason = fake_lc.accepted[-1]['ownerInfo']['reason']
    assert f'TEST_DATASET_URL={empty}' in reason and 'no samples' in reason


def test_round_through_s3(tmp_path: Path, datasets, fake_lc, s3_bucket, s3_server) -> None:
    """OUTPUT_URL, model URLs and the test set on S3 (SeaweedFS); the deployed model is found at
    ``O/deploy/index.pkl`` on S3."""
    from robo_lifelong.storage import open_storage

    out = s3_bucket + '/robo/out/job'
    store = open_storage(s3_bucket + '/robo/test', s3_server.env)
    test_root = datasets['test']
    for path in sorted(test_root.rglob('*')):
        if path.is_file():
            store.upload_file(path, path.relative_to(test_root).as_posix())
    train_index = str(datasets['train'] / 'data.txt')
    common = {**s3_server.env, 'epochs': '2'}
    assert (
        run(
            'train',
            {
                **sedna_env(
                    fake_lc.url,
                    'train',
                    out + '/train/1',
                    TRAIN_DATASET_URL=train_index,
                    ORIGINAL_DATASET_URL=train_index,
                ),
                **common,
            },
        )
        == 0
    )
    pointer_url = fake_lc.accepted[-1]['results'][0]['url']
    assert pointer_url == out + '/train/1/index.json'

    def evaluate(round_: int) -> dict:
        env = sedna_env(
            fake_lc.url,
            'eval',
            f'{out}/eval/{round_}',
            MODEL_URLS=pointer_url,
            TEST_DATASET_URL=s3_bucket + '/robo/test/data.txt',
            ORIGINAL_DATASET_URL=s3_bucket + '/robo/test/data.txt',
            operator='<',
            model_threshold='0',
        )
        assert run('eval', {**env, **common}) == 0
        out_store = open_storage(f'{out}/eval/{round_}', s3_server.env)
        return json.loads(out_store.read_bytes('decision.json'))

    first = evaluate(1)
    assert first['deployed'] is None and first['decision']['deploy'] is True
    job = open_storage(out, s3_server.env)
    job.write_bytes('deploy/index.pkl', job.read_bytes('eval/1/index.json'))  # the LC's copy
    second = evaluate(2)
    assert second['deployed']['content_hash'] == first['candidate']['content_hash']
    # same model on both sides: the candidate is not better, so the deployed one is kept
    assert second['decision']['deploy'] is False
    kept = mp.parse_pointer(job.read_bytes('eval/2/index.json'), 'eval/2/index.json')
    assert kept.content_hash == first['candidate']['content_hash']


def test_update_rehearses_old_tasks_from_an_s3_dataset(
    tmp_path: Path, datasets, fake_lc, s3_bucket, s3_server
) -> None:
    """ORIGINAL_DATASET_URL on S3 (the local controller's S3 jobs): the update reads the original
    index there and downloads the old-task samples it rehearses."""
    from robo_lifelong.storage import open_storage

    root = tmp_path / 'data'
    shutil.copytree(datasets['train'], root)
    before = {s.rgb for s in read_index(root / 'data.txt')}
    write_dataset(root, ['construction'], 6, 3, CAMERA)
    store = open_storage(s3_bucket + '/robo/data', s3_server.env)
    for path in sorted(root.rglob('*')):
        if path.is_file():
            store.upload_file(path, path.relative_to(root).as_posix())
    new_lines = [s.line() for s in read_index(root / 'data.txt') if s.rgb not in before]
    store.write_bytes('round2.txt', ('\n'.join(new_lines) + '\n').encode())
    original = s3_bucket + '/robo/data/data.txt'
    out = tmp_path / 'O'
    common = {**s3_server.env, 'epochs': '1'}
    first = sedna_env(
        fake_lc.url,
        'train',
        out / 'train' / '1',
        TRAIN_DATASET_URL=str(datasets['train'] / 'data.txt'),
        ORIGINAL_DATASET_URL=str(datasets['train'] / 'data.txt'),
    )
    assert run('train', {**first, **common}) == 0
    parent_url = fake_lc.accepted[-1]['results'][0]['url']
    update = sedna_env(
        fake_lc.url,
        'train',
        out / 'train' / '2',
        TRAIN_DATASET_URL=s3_bucket + '/robo/data/round2.txt',
        ORIGINAL_DATASET_URL=original,
        HAS_COMPLETED_INITIAL_TRAINING='true',
        CLOUD_KB_INDEX=parent_url,
    )
    assert run('train', {**update, **common}) == 0
    child = mp.open_model(fake_lc.accepted[-1]['results'][0]['url'], tmp_path / 'cache')
    training = child.manifest['training']
    # two old-task frames per new one, drawn from the 40 old samples on S3
    assert training['rehearsal_frames'] == 12, training
    assert training['distilled'] is True


def test_module_entry_point_exits_non_zero_with_one_line(tmp_path: Path, fake_lc) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ('OUTPUT_URL', 'TRAIN_DATASET_URL')}
    env.update(sedna_env(fake_lc.url, 'train', tmp_path / 'out'))
    env.pop('OUTPUT_URL')
    proc = subprocess.run(
        [sys.executable, '-m', 'robo_lifelong_cloud', 'train'],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_FAILED
    [line] = [ln for ln in proc.stderr.splitlines() if 'worker failed' in ln]
    assert 'OUTPUT_URL' in line and 'TRAIN_DATASET_URL' in line
    assert fake_lc.accepted[-1]['status'] == 'failed'
