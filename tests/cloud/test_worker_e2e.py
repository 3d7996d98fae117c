"""The train and eval workers end to end under a Sedna-like environment, against a local output
directory and the fake LC: a tiny initial round, an incremental round with a new task and new
classes, the deploy rule with only what a Sedna eval pod mounts (the reference model travels in
the candidate's train output), and the failure paths (bad input -> one-line reason, ``failed``
report, exit 1)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from robo_lifelong import share
from robo_lifelong.io.dataset import load_sample, read_index
from robo_lifelong.labels import class_id
from robo_lifelong.models import package as mp
from robo_lifelong.models.runtime import SegmentationRuntime
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.cli import write_dataset
from robo_lifelong.transfer import model_store
from robo_lifelong_cloud.model import model_from_weights
from robo_lifelong_cloud.reference import REFERENCE_DIR, VERDICT_FILE, choose_reference
from robo_lifelong_cloud.worker import EXIT_FAILED, run
from tests.fakes.fake_lc import FakeLC

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
    package = model_store.open_model(pointer_url, tmp_path / 'cache')
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
    assert 'no model is deployed' in record['decision']['reasons']
    assert model_store.read_pointer(result['url']).content_hash == package.content_hash
    # an initial model protects nothing, and the verdict next to it says it was deployed
    assert manifest['training']['parent'] is None and manifest['training']['reference'] is None
    assert not (out / 'train' / '1' / REFERENCE_DIR).exists()
    verdict = json.loads((out / 'train' / '1' / VERDICT_FILE).read_text())
    assert verdict['deploy'] is True
    assert verdict['reported']['content_hash'] == package.content_hash


@dataclass(frozen=True)
class Lineage:
    """Round 1 trained, judged and deployed; round 2 trained from it (a new task, new classes)."""

    host: Path  # everything below lives here (host paths)
    out: Path  # the job's outputDir O
    index: str  # ORIGINAL_DATASET_URL (round 1 samples + the construction task)
    round2_list: str  # round 2's TRAIN_DATASET_URL (the construction samples)
    test_index: str  # a test list of the three tasks
    parent: mp.ModelPackage  # v1
    child: mp.ModelPackage  # v2
    deployed_pointer: bytes  # O/deploy/index.pkl after round 1


def _encoder(package: mp.ModelPackage) -> np.ndarray:
    """Every weight but the classifier's (its rows follow the classes), flattened."""
    model = model_from_weights(
        package.weights_path.read_bytes(), package.manifest['weights']['architecture']
    )
    state = model.state_dict()
    return np.concatenate(
        [
            v.numpy().ravel()
            for k, v in state.items()
            if v.is_floating_point() and 'classifier' not in k
        ]
    )


def test_initial_training_fine_tunes_the_shipped_base_model(
    tmp_path: Path, datasets, fake_lc
) -> None:
    index = str(datasets['train'] / 'data.txt')
    out = tmp_path / 'O' / 'train' / '1'
    env = sedna_env(
        fake_lc.url,
        'train',
        out,
        TRAIN_DATASET_URL=index,
        ORIGINAL_DATASET_URL=index,
        initial_model='base',
        epochs='1',
    )
    assert run('train', env) == 0
    package = model_store.open_model(str(out / 'index.json'), tmp_path / 'cache')
    base = mp.load_package(share.find(share.BASE_MODEL))
    assert package.manifest['training']['initial_model'] == {
        'version': base.version,
        'content_hash': base.content_hash,
    }
    assert (package.manifest['version'], package.manifest['input']['height']) == (1, 64)
    # a few steps from the base model's weights stay near them; a new net's are far away
    tuned, start = _encoder(package), _encoder(base)
    scratch = tmp_path / 'scratch'
    assert run('train', {**env, 'OUTPUT_URL': str(scratch), 'initial_model': ''}) == 0
    fresh = model_store.open_model(str(scratch / 'index.json'), tmp_path / 'cache2')
    assert fresh.manifest['training']['initial_model'] is None
    near, far = np.linalg.norm(tuned - start), np.linalg.norm(_encoder(fresh) - start)
    assert near < 0.2 * far


@pytest.fixture(scope='module')
def lineage(tmp_path_factory: pytest.TempPathFactory, datasets) -> Iterator[Lineage]:
    host = tmp_path_factory.mktemp('lineage') / 'host'
    out, root, test_root = host / 'O', host / 'data', host / 'test'
    shutil.copytree(datasets['train'], root)
    shutil.copytree(datasets['test'], test_root)
    index, test_index = str(root / 'data.txt'), str(test_root / 'data.txt')
    with FakeLC() as lc:
        env = sedna_env(lc.url, 'train', out / 'train' / '1', epochs='6')
        env.update(TRAIN_DATASET_URL=index, ORIGINAL_DATASET_URL=index)
        assert run('train', env) == 0
        parent_url = lc.accepted[-1]['results'][0]['url']
        env = sedna_env(lc.url, 'eval', out / 'eval' / '1', operator='<', model_threshold='0')
        env.update(MODEL_URLS=parent_url, TEST_DATASET_URL=test_index)
        env.update(ORIGINAL_DATASET_URL=test_index)
        assert run('eval', env) == 0
        (out / 'deploy').mkdir(parents=True)
        deployed = Path(lc.accepted[-1]['results'][0]['url']).read_bytes()
        (out / 'deploy' / 'index.pkl').write_bytes(deployed)  # what the LC's deploy step does

        before = {s.rgb for s in read_index(index)}
        write_dataset(root, ['construction'], 10, 3, CAMERA)
        new_lines = [s.line() for s in read_index(index) if s.rgb not in before]
        round_list = host / 'train2.txt'
        round_list.write_text('\n'.join(new_lines) + '\n')
        env = sedna_env(lc.url, 'train', out / 'train' / '2', epochs='3')
        env.update(TRAIN_DATASET_URL=str(round_list), ORIGINAL_DATASET_URL=index)
        env.update(HAS_COMPLETED_INITIAL_TRAINING='true', CLOUD_KB_INDEX=parent_url)
        assert run('train', env) == 0
        child_url = lc.accepted[-1]['results'][0]['url']
    write_dataset(test_root, ['construction'], 4, 4, CAMERA)
    yield Lineage(
        host=host,
        out=out,
        index=index,
        round2_list=str(round_list),
        test_index=test_index,
        parent=model_store.open_model(parent_url, host / 'cache'),
        child=model_store.open_model(child_url, host / 'cache'),
        deployed_pointer=deployed,
    )


def test_incremental_round_adds_a_task_and_its_classes(lineage: Lineage) -> None:
    parent, child = lineage.parent, lineage.child
    assert (child.version, child.manifest['parent_version']) == (2, 1)
    assert child.known_tasks == ('construction', 'overcast', 'sunny')
    assert child.num_classes == class_id('traffic_cone') + 1 > parent.num_classes
    assert child.manifest['classes'][: parent.num_classes] == parent.manifest['classes']
    training = child.manifest['training']
    assert training['rehearsal_frames'] > 0  # old tasks were rehearsed
    # an update weighs rare classes less than the initial training (update_class_balance)
    assert (parent.manifest['training']['class_balance'], training['class_balance']) == (0.5, 0.25)
    # the deployed parent is the reference: recorded (hash-covered) and copied next to the child
    assert training['parent'] == {'version': 1, 'content_hash': parent.content_hash}
    assert training['reference'] == {
        'version': 1,
        'content_hash': parent.content_hash,
        'package_url': str(lineage.out / 'train' / '1' / 'package'),
        'copy': REFERENCE_DIR,
    }
    copy = mp.load_package(lineage.out / 'train' / '2' / REFERENCE_DIR)
    assert copy.content_hash == parent.content_hash
    assert copy.model_path.read_bytes() == parent.model_path.read_bytes()


# ---- the eval worker with only what a Sedna eval pod mounts ----------------------------------


@contextmanager
def hidden(path: Path) -> Iterator[None]:
    """``path`` does not exist inside (renamed away, then back)."""
    away = path.with_name(path.name + '.hidden')
    os.rename(path, away)
    try:
        yield
    finally:
        os.rename(away, path)


def pod_view(pod: Path, urls: list[str]) -> dict[str, str]:
    """What GM mounts in a pod for host-path URLs (PROTOCOL.md §3.2): the parent directory of
    each, at the same path under ``DATA_PATH_PREFIX`` = ``pod`` (copied here). Returns each URL as
    the pod sees it."""
    seen = {}
    for url in urls:
        parent = Path(url).parent
        target = pod / parent.relative_to('/')
        if parent.is_dir():
            shutil.copytree(parent, target, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
        seen[url] = str(pod / Path(url).relative_to('/'))
    return seen


def eval_in_pod(lineage: Lineage, lc: FakeLC, pod: Path, model_url: str, round_: str) -> int:
    """Run the eval worker of round ``round_`` on ``model_url`` with only the pod's mounts:
    ``MODEL_URLS``, ``TEST_DATASET_URL``, ``ORIGINAL_DATASET_URL``, ``OUTPUT_URL``. The host tree
    (O/deploy, the other rounds, the datasets) does not exist while it runs."""
    output = str(lineage.out / 'eval' / round_)
    seen = pod_view(pod, [model_url, lineage.test_index, output])
    env = sedna_env(lc.url, 'eval', Path(seen[output]), operator='<', model_threshold='0')
    env.update(MODEL_URLS=seen[model_url], DATA_PATH_PREFIX=str(pod))
    env.update(TEST_DATASET_URL=seen[lineage.test_index])
    env.update(ORIGINAL_DATASET_URL=seen[lineage.test_index])
    with hidden(lineage.host):
        return run('eval', env)


def test_eval_with_only_pod_mounts_judges_against_the_reference(
    tmp_path: Path, lineage: Lineage, fake_lc
) -> None:
    pod = tmp_path / 'pod'
    model_url = str(lineage.out / 'train' / '2' / 'index.json')
    assert eval_in_pod(lineage, fake_lc, pod, model_url, '2') == 0
    seen_out = pod / lineage.out.relative_to('/')
    record = json.loads((seen_out / 'eval' / '2' / 'decision.json').read_text())
    assert record['candidate']['version'] == 2
    assert record['deployed']['content_hash'] == lineage.parent.content_hash
    assert record['deployed']['url'].endswith('/train/2/reference')
    assert set(record['deployed']['report']['per_task']) == {'sunny', 'overcast', 'construction'}
    [result] = fake_lc.accepted[-1]['results']
    assert result['url'] == str(lineage.out / 'eval' / '2' / 'index.json')  # host path
    reported = (seen_out / 'eval' / '2' / 'index.json').read_bytes()
    if record['decision']['deploy']:
        assert mp.parse_pointer(reported, 'r').content_hash == lineage.child.content_hash
    else:  # the deployed model stays: the same pointer bytes as O/deploy/index.pkl
        assert reported == lineage.deployed_pointer


def _forgetful_candidate(lineage: Lineage, name: str) -> str:
    """A train output like round 2's (same reference record and copy) whose package labels
    every pixel with the last class (a construction class no old-task frame shows): mIoU 0 on
    the old tasks, whatever v1 learned. Returns its pointer's URL."""
    import torch

    from robo_lifelong_cloud.export import export_onnx
    from robo_lifelong_cloud.model import SegNetConfig, build_model, weights_bytes

    child = lineage.child
    target = lineage.out / 'train' / name
    shutil.copytree(lineage.out / 'train' / '2', target)
    height, width = child.manifest['input']['height'], child.manifest['input']['width']
    model = build_model(SegNetConfig(num_classes=child.num_classes, in_channels=4), seed=7)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.fill_(-10.0)
        model.classifier.bias[-1] = 10.0
    weights, architecture = weights_bytes(model)
    manifest = {**child.manifest, 'weights': {'architecture': architecture}}
    package = mp.write_package(
        target / 'package', export_onnx(model, height, width), manifest, weights
    )
    pointer = mp.DeployPointer.for_package(package, str(target / 'package'))
    model_store.write_pointer(str(target / 'index.json'), pointer)
    return str(target / 'index.json')


def test_eval_with_only_pod_mounts_rejects_a_candidate_that_loses_on_an_old_task(
    tmp_path: Path, lineage: Lineage, fake_lc
) -> None:
    """Issue 18: a host-path eval pod cannot see O/deploy; the old worker judged such a candidate
    alone and deployed it. Now the reference in its train output stops it."""
    model_url = _forgetful_candidate(lineage, 'forgetful')
    pod = tmp_path / 'pod'
    assert eval_in_pod(lineage, fake_lc, pod, model_url, 'forgetful') == 0
    seen_out = pod / lineage.out.relative_to('/')
    record = json.loads((seen_out / 'eval' / 'forgetful' / 'decision.json').read_text())
    decision = record['decision']
    assert decision['deploy'] is False
    assert record['deployed']['content_hash'] == lineage.parent.content_hash
    losses = [r for r in decision['reasons'] if r.startswith('known task')]
    assert losses and all('mIoU points' in r for r in losses), decision['reasons']
    for reason in losses:  # each task named as lost did lose more than the rule allows
        task = reason.split("'")[1]
        before = record['deployed']['report']['per_task'][task]['miou']
        after = record['candidate']['report']['per_task'][task]['miou']
        assert before - after > decision['rule']['max_task_drop'], (task, before, after)
    # the LC re-deploys what is deployed: the same pointer bytes
    reported = fake_lc.accepted[-1]
    assert (reported['kind'], reported['status']) == ('eval', 'completed')
    assert (seen_out / 'eval' / 'forgetful' / 'index.json').read_bytes() == (
        lineage.deployed_pointer
    )
    # the verdict next to the candidate (a read-write hostPath mount) names the kept model
    verdict = json.loads((seen_out / 'train' / 'forgetful' / VERDICT_FILE).read_text())
    assert verdict['deploy'] is False
    assert verdict['reported']['content_hash'] == lineage.parent.content_hash

    # the next round trains from the rejected model but still protects the deployed v1
    target = lineage.out / 'train' / 'forgetful'
    shutil.copy(seen_out / 'train' / 'forgetful' / VERDICT_FILE, target / VERDICT_FILE)
    rejected = mp.load_package(target / 'package')
    reference = choose_reference(model_url, rejected, tmp_path / 'cache')
    assert reference is not None
    assert reference.package.content_hash == lineage.parent.content_hash
    assert reference.record.package_url == str(lineage.out / 'train' / '1' / 'package')
    # ... from the copy next to the rejected candidate when the original is gone
    with hidden(lineage.out / 'train' / '1'):
        again = choose_reference(model_url, rejected, tmp_path / 'cache2')
    assert again is not None and again.url == str(target / REFERENCE_DIR)
    assert again.package.content_hash == lineage.parent.content_hash


def _remove(reference: Path) -> None:
    shutil.rmtree(reference)


def _corrupt(reference: Path) -> None:
    model = reference / mp.MODEL_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))


def _swap(reference: Path) -> None:
    """Another valid package in its place (the candidate itself)."""
    shutil.rmtree(reference)
    shutil.copytree(reference.parent / 'package', reference)


@pytest.mark.parametrize('damage', [_remove, _corrupt, _swap])
def test_eval_refuses_a_candidate_whose_reference_copy_is_unusable(
    tmp_path: Path, lineage: Lineage, fake_lc, damage
) -> None:
    name = f'damaged-{damage.__name__.strip("_")}'
    target = lineage.out / 'train' / name
    shutil.copytree(lineage.out / 'train' / '2', target)
    damage(target / REFERENCE_DIR)
    pointer = mp.DeployPointer.for_package(lineage.child, str(target / 'package'))
    model_store.write_pointer(str(target / 'index.json'), pointer)
    pod = tmp_path / 'pod'
    assert eval_in_pod(lineage, fake_lc, pod, str(target / 'index.json'), name) == EXIT_FAILED
    report = fake_lc.accepted[-1]
    assert (report['kind'], report['status']) == ('eval', 'failed')
    reason = report['ownerInfo']['reason']
    assert 'not judged' in reason and 'reference v1' in reason, reason
    seen = pod / lineage.out.relative_to('/') / 'eval' / name
    record = json.loads((seen / 'decision.json').read_text())
    assert record['decision']['deploy'] is False and record['deployed'] is None
    assert any(r.startswith('refused, not judged') for r in record['decision']['reasons'])
    assert not (seen / 'index.json').exists()  # nothing for the LC to deploy


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
        ({'initial_model': '/nowhere/base'}, '/nowhere/base'),
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
    """OUTPUT_URL, model URLs and the test set on S3 (SeaweedFS): round 2's reference is copied
    into its S3 train output and judged from there (``O/deploy`` is never read)."""
    from robo_lifelong.transfer.storage import S3Config, open_storage

    out = s3_bucket + '/robo/out/job'
    store = open_storage(s3_bucket + '/robo/test', S3Config.from_environ(s3_server.env))
    test_root = datasets['test']
    for path in sorted(test_root.rglob('*')):
        if path.is_file():
            store.upload_file(path, path.relative_to(test_root).as_posix())
    train_index = str(datasets['train'] / 'data.txt')
    common = {**s3_server.env, 'epochs': '2'}

    def train(round_: int, **extra: str) -> str:
        env = sedna_env(fake_lc.url, 'train', f'{out}/train/{round_}', **extra)
        env.update(TRAIN_DATASET_URL=train_index, ORIGINAL_DATASET_URL=train_index)
        assert run('train', {**env, **common}) == 0
        return fake_lc.accepted[-1]['results'][0]['url']

    def evaluate(round_: int, model_url: str) -> dict:
        env = sedna_env(
            fake_lc.url,
            'eval',
            f'{out}/eval/{round_}',
            MODEL_URLS=model_url,
            TEST_DATASET_URL=s3_bucket + '/robo/test/data.txt',
            ORIGINAL_DATASET_URL=s3_bucket + '/robo/test/data.txt',
            operator='<',
            model_threshold='0',
        )
        assert run('eval', {**env, **common}) == 0
        out_store = open_storage(f'{out}/eval/{round_}', S3Config.from_environ(s3_server.env))
        return json.loads(out_store.read_bytes('decision.json'))

    pointer_url = train(1)
    assert pointer_url == out + '/train/1/index.json'
    first = evaluate(1, pointer_url)
    assert first['deployed'] is None and first['decision']['deploy'] is True
    job = open_storage(out, S3Config.from_environ(s3_server.env))
    verdict = json.loads(job.read_bytes(f'train/1/{VERDICT_FILE}'))
    assert verdict['reported']['content_hash'] == first['candidate']['content_hash']

    child_url = train(2, HAS_COMPLETED_INITIAL_TRAINING='true', CLOUD_KB_INDEX=pointer_url)
    copy = model_store.fetch_package(
        out + '/train/2/' + REFERENCE_DIR, tmp_path / 'cache', S3Config.from_environ(s3_server.env)
    )
    assert copy.content_hash == first['candidate']['content_hash']
    second = evaluate(2, child_url)
    assert second['deployed']['content_hash'] == first['candidate']['content_hash']
    assert second['deployed']['url'] == out + '/train/2/' + REFERENCE_DIR
    kept = mp.parse_pointer(job.read_bytes('eval/2/index.json'), 'eval/2/index.json')
    side = 'candidate' if second['decision']['deploy'] else 'deployed'
    assert kept.content_hash == second[side]['content_hash']
    assert not job.exists('deploy/index.pkl')


def test_update_rehearses_old_tasks_from_an_s3_dataset(
    tmp_path: Path, datasets, fake_lc, s3_bucket, s3_server
) -> None:
    """ORIGINAL_DATASET_URL on S3 (the local controller's S3 jobs): the update reads the original
    index there and downloads the old-task samples it rehearses."""
    from robo_lifelong.transfer.storage import S3Config, open_storage

    root = tmp_path / 'data'
    shutil.copytree(datasets['train'], root)
    before = {s.rgb for s in read_index(root / 'data.txt')}
    write_dataset(root, ['construction'], 6, 3, CAMERA)
    store = open_storage(s3_bucket + '/robo/data', S3Config.from_environ(s3_server.env))
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
    child = model_store.open_model(fake_lc.accepted[-1]['results'][0]['url'], tmp_path / 'cache')
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
