"""Model packages: schema validation, hashes, atomic writes, tamper detection, deploy pointers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from robo_lifelong.errors import ModelPackageError
from robo_lifelong.labels import CLASSES
from robo_lifelong.models import package as mp
from robo_lifelong.transfer import model_store
from robo_lifelong.transfer.storage import S3Config

ONNX = b'not really onnx, but load_package only hashes it'


def manifest(**overrides) -> dict:
    body = {
        'schema_version': mp.SCHEMA_VERSION,
        'version': 3,
        'parent_version': 2,
        'created': '2026-11-27T01:00:00+00:00',
        'classes': [{'id': c.id, 'name': c.name, 'color': list(c.color)} for c in CLASSES[:22]],
        'input': {
            'name': 'image',
            'height': 240,
            'width': 424,
            'channels': 4,
            'mean': [0.485, 0.456, 0.406, 0.0],
            'std': [0.229, 0.224, 0.225, 1.0],
            'depth_scale': 1e-4,
        },
        'outputs': {
            'logits': 'logits',
            'embedding': 'embedding',
            'labels': {'name': 'labels', 'size_input': 'labels_size'},
        },
        'output_stride': 8,
        'embedding_dim': 128,
        'known_tasks': ['overcast', 'sunny'],
        'unseen': None,
        'training': {'samples_per_task': {'sunny': 10, 'overcast': 12}, 'epochs': 5},
        'metrics': {'miou': 0.5},
    }
    body.update(overrides)
    return body


@pytest.fixture
def package(tmp_path: Path) -> mp.ModelPackage:
    return mp.write_package(tmp_path / 'pkg', ONNX, manifest(), weights=b'weights')


def test_round_trip_verifies_and_fills_hashes(package: mp.ModelPackage) -> None:
    loaded = mp.load_package(package.path)
    assert loaded.manifest == package.manifest
    assert loaded.version == 3 and loaded.num_classes == 22
    assert loaded.known_tasks == ('overcast', 'sunny')
    assert len(loaded.content_hash) == 64
    assert loaded.content_hash == mp.content_hash(loaded.manifest)
    assert loaded.weights_path is not None and loaded.weights_path.read_bytes() == b'weights'
    assert loaded.unseen_calibration() is None
    assert sorted(p.name for p in package.path.iterdir()) == [
        'manifest.json',
        'model.onnx',
        'weights.safetensors',
    ]


def test_content_hash_depends_on_model_and_manifest(tmp_path: Path) -> None:
    a = mp.write_package(tmp_path / 'a', ONNX, manifest())
    b = mp.write_package(tmp_path / 'b', ONNX + b'!', manifest())
    c = mp.write_package(tmp_path / 'c', ONNX, manifest(version=4))
    assert len({a.content_hash, b.content_hash, c.content_hash}) == 3


def test_rewrite_replaces_the_whole_package(tmp_path: Path, package: mp.ModelPackage) -> None:
    again = mp.write_package(package.path, ONNX, manifest(version=4))
    assert mp.load_package(package.path).version == 4
    assert again.weights_path is None
    assert not (package.path / 'weights.safetensors').exists()
    assert [p.name for p in tmp_path.iterdir()] == ['pkg']  # no temporary directories left


@pytest.mark.parametrize(
    ('change', 'field'),
    [
        ({'version': 0}, 'version'),
        ({'input': {**manifest()['input'], 'channels': 5}}, 'input/channels'),
        ({'classes': [{'id': 0, 'name': 'road'}]}, 'classes'),
        ({'surprise': 1}, '(top level)'),
    ],
)
def test_schema_violations_name_the_field(tmp_path: Path, change: dict, field: str) -> None:
    with pytest.raises(ModelPackageError, match=re.escape(f'field {field}')):
        mp.write_package(tmp_path / 'p', ONNX, manifest(**change))
    assert not (tmp_path / 'p').exists()


def test_mean_std_must_match_channels(tmp_path: Path) -> None:
    spec = {**manifest()['input'], 'channels': 3}
    with pytest.raises(ModelPackageError, match='input/mean: 4 values for 3 channels'):
        mp.write_package(tmp_path / 'p', ONNX, manifest(input=spec))


def test_missing_file_is_named(package: mp.ModelPackage) -> None:
    (package.path / 'model.onnx').unlink()
    with pytest.raises(ModelPackageError, match='missing file model.onnx'):
        mp.load_package(package.path)


def test_tampered_model_is_rejected_with_both_hashes(package: mp.ModelPackage) -> None:
    (package.path / 'model.onnx').write_bytes(ONNX + b'evil')
    with pytest.raises(ModelPackageError, match='model.onnx: sha256 mismatch') as info:
        mp.load_package(package.path)
    assert package.manifest['model_sha256'] in str(info.value)


def test_read_package_checks_files_and_schema_but_takes_no_hash(package: mp.ModelPackage) -> None:
    # for a package the robot's bridge verified when installing it
    (package.path / 'model.onnx').write_bytes(ONNX + b'changed')
    assert mp.read_package(package.path).content_hash == package.content_hash
    body = json.loads((package.path / 'manifest.json').read_text())
    del body['classes']
    (package.path / 'manifest.json').write_text(json.dumps(body))
    with pytest.raises(ModelPackageError, match='classes'):
        mp.read_package(package.path)
    (package.path / 'model.onnx').unlink()
    with pytest.raises(ModelPackageError, match='missing file model.onnx'):
        mp.read_package(package.path)


def test_tampered_weights_are_rejected(package: mp.ModelPackage) -> None:
    (package.path / 'weights.safetensors').write_bytes(b'other')
    with pytest.raises(ModelPackageError, match='weights.safetensors: sha256 mismatch'):
        mp.load_package(package.path)


def test_tampered_manifest_is_rejected(package: mp.ModelPackage) -> None:
    path = package.path / 'manifest.json'
    body = json.loads(path.read_text())
    body['known_tasks'] = ['sunny']  # still schema-valid, but not what was hashed
    path.write_text(json.dumps(body))
    with pytest.raises(ModelPackageError, match='content_hash mismatch') as info:
        mp.load_package(package.path)
    assert package.content_hash in str(info.value)


def test_manifest_that_is_not_json(package: mp.ModelPackage) -> None:
    (package.path / 'manifest.json').write_text('{"version": ')
    with pytest.raises(ModelPackageError, match='not valid JSON'):
        mp.load_package(package.path)


def test_pointer_round_trip_and_open_model(tmp_path: Path, package: mp.ModelPackage) -> None:
    pointer = mp.DeployPointer.for_package(package, str(package.path))
    url = str(tmp_path / 'out' / 'index.json')
    model_store.write_pointer(url, pointer)
    assert model_store.read_pointer(url) == pointer
    opened = model_store.open_model(url, tmp_path / 'cache')
    assert opened.content_hash == package.content_hash
    assert model_store.open_model(str(package.path), tmp_path / 'cache').version == 3


def test_pointer_with_stale_trailing_bytes_is_read(tmp_path: Path) -> None:
    # Sedna's LC copies over deploy/index.pkl without truncating it (PROTOCOL.md §8.3 item 3)
    pointer = mp.DeployPointer('/x/package', 7, 'a' * 64)
    data = pointer.to_bytes() + b'tail of an older, longer pointer"}\n'
    assert mp.parse_pointer(data, 'deploy/index.pkl') == pointer


@pytest.mark.parametrize(
    ('data', 'message'),
    [
        (b'\x80\x04\x95 a pickle', 'not a JSON deploy pointer'),
        (b'{"kind": "other"}', 'not a deploy pointer'),
        (b'{"kind": "robo-lifelong-deploy-pointer", "version": 1}', 'package_url'),
    ],
)
def test_bad_pointers_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ModelPackageError, match=message):
        mp.parse_pointer(data, 'deploy/index.pkl')


def test_pointer_hash_must_match_the_package(tmp_path: Path, package: mp.ModelPackage) -> None:
    url = str(tmp_path / 'index.json')
    model_store.write_pointer(url, mp.DeployPointer(str(package.path), 3, 'b' * 64))
    with pytest.raises(ModelPackageError, match='pointer names content_hash b+'):
        model_store.open_model(url, tmp_path / 'cache')


def test_host_paths_are_found_under_the_pod_prefix(tmp_path: Path, package) -> None:
    prefix = str(tmp_path)
    host = model_store.strip_data_prefix(str(package.path), prefix)
    assert host == '/pkg'
    assert model_store.resolve_local(host, prefix) == str(package.path)
    assert model_store.resolve_local('/nowhere', prefix) == '/nowhere'


def test_publish_and_fetch_through_s3(tmp_path: Path, package, s3_bucket, s3_server) -> None:
    url = s3_bucket + '/models/v3/package'
    s3 = S3Config.from_environ(s3_server.env)
    model_store.publish_package(package, url, s3)
    model_store.write_pointer(
        s3_bucket + '/models/v3/index.json', mp.DeployPointer(url, 3, package.content_hash), s3
    )
    fetched = model_store.open_model(s3_bucket + '/models/v3/index.json', tmp_path / 'cache', s3)
    assert fetched.content_hash == package.content_hash
    assert fetched.weights_path is not None and fetched.weights_path.read_bytes() == b'weights'
