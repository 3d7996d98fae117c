"""Model sync: pointer polling, staging, verification and the atomic install; bad packages never
reach the models directory, a good one is announced exactly once; a download cut by a fault is
retried at the next poll."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from robo_lifelong.errors import ModelPackageError, StorageError
from robo_lifelong.models import package as mp
from robo_lifelong.transfer import model_store
from robo_lifelong.transfer.model_sync import CURRENT, ModelSync, first_model_url
from robo_lifelong.transfer.storage import join, open_storage
from tests.core.test_model_package import ONNX, manifest
from tests.fakes.fault_proxy import Fault, FaultProxy


def installed(models_dir: Path) -> list[str]:
    """Package directories a perception node could be pointed at."""
    return sorted(p.name for p in models_dir.iterdir() if (p / mp.MANIFEST_FILE).exists())


def publish(tmp_path: Path, name: str, version: int, pointer_url: str, **overrides):
    package = mp.write_package(
        tmp_path / name, ONNX + name.encode(), manifest(version=version, **overrides)
    )
    model_store.write_pointer(
        pointer_url, mp.DeployPointer.for_package(package, str(package.path))
    )
    return package


def test_new_package_is_installed_and_announced_once(tmp_path):
    pointer = str(tmp_path / 'deploy' / 'index.pkl')
    good = publish(tmp_path, 'v3', 3, pointer)
    sync = ModelSync(pointer, tmp_path / 'models')
    new = sync.poll()
    assert new is not None and new.path == tmp_path / 'models' / good.content_hash
    assert new.content_hash == good.content_hash and new.model_path.read_bytes() == ONNX + b'v3'
    assert sync.poll() is None and sync.poll() is None
    assert installed(tmp_path / 'models') == [good.content_hash]
    # a restarted bridge does not announce it again
    assert ModelSync(pointer, tmp_path / 'models').poll() is None
    newer = publish(tmp_path, 'v4', 4, pointer)
    assert sync.poll().content_hash == newer.content_hash
    assert json.loads((tmp_path / 'models' / CURRENT).read_text())['version'] == 4


def test_pointer_with_stale_trailing_bytes_is_read(tmp_path):
    pointer = tmp_path / 'index.pkl'
    good = publish(tmp_path, 'v3', 3, str(pointer))
    pointer.write_bytes(pointer.read_bytes() + b'stale bytes of a longer older pickle')
    assert ModelSync(str(pointer), tmp_path / 'models').poll().content_hash == good.content_hash


def tamper_truncate(package: mp.ModelPackage) -> None:
    data = package.model_path.read_bytes()
    package.model_path.write_bytes(data[: len(data) // 2])


def tamper_hash(package: mp.ModelPackage) -> None:
    body = json.loads((package.path / mp.MANIFEST_FILE).read_text())
    body['model_sha256'] = 'f' * 64
    body['content_hash'] = mp.content_hash(body)
    (package.path / mp.MANIFEST_FILE).write_text(json.dumps(body))


def tamper_schema(package: mp.ModelPackage) -> None:
    body = json.loads((package.path / mp.MANIFEST_FILE).read_text())
    body['input']['channels'] = 7
    body['content_hash'] = mp.content_hash(body)
    (package.path / mp.MANIFEST_FILE).write_text(json.dumps(body))


@pytest.mark.parametrize('tamper', [tamper_truncate, tamper_hash, tamper_schema])
def test_bad_package_never_reaches_the_models_dir(tmp_path, tamper):
    pointer = str(tmp_path / 'index.pkl')
    bad = publish(tmp_path, 'v3', 3, pointer)
    tamper(bad)
    models = tmp_path / 'models'
    sync = ModelSync(pointer, models)
    with pytest.raises(ModelPackageError):
        sync.poll()
    assert installed(models) == [] and not (models / CURRENT).exists()
    assert [p.name for p in models.iterdir()] == []  # no staging leftovers either
    assert sync.poll() is None  # rejected once, not fetched again for the same pointer
    good = publish(tmp_path, 'v4', 4, pointer)
    assert sync.poll().content_hash == good.content_hash


def test_pointer_naming_another_hash_is_rejected(tmp_path):
    pointer = str(tmp_path / 'index.pkl')
    package = publish(tmp_path, 'v3', 3, pointer)
    model_store.write_pointer(pointer, mp.DeployPointer(str(package.path), 3, 'a' * 64))
    with pytest.raises(ModelPackageError, match='pointer names'):
        ModelSync(pointer, tmp_path / 'models').poll()
    assert installed(tmp_path / 'models') == []


def test_not_a_pointer_is_rejected_without_unpickling(tmp_path):
    pointer = tmp_path / 'index.pkl'
    pointer.write_bytes(b'\x80\x04\x95 a pickle')
    with pytest.raises(ModelPackageError, match='not a JSON deploy pointer'):
        ModelSync(str(pointer), tmp_path / 'models').poll()


def test_first_model_url():
    assert first_model_url(' s3://a/b;s3://c/d ') == 's3://a/b'
    assert first_model_url('') == ''


@pytest.mark.s3
def test_s3_pointer_and_package(s3_server, s3_bucket, tmp_path):
    env = s3_server.env
    local = mp.write_package(tmp_path / 'pkg', ONNX, manifest(version=5))
    package_url = join(s3_bucket, 'job', 'eval', '1', 'model')
    model_store.publish_package(local, package_url, env)
    pointer = join(s3_bucket, 'job', 'deploy', 'index.pkl')
    model_store.write_pointer(pointer, mp.DeployPointer.for_package(local, package_url), env)
    sync = ModelSync(pointer, tmp_path / 'models', environ=env)
    assert sync.poll().content_hash == local.content_hash
    assert sync.poll() is None
    # a truncated upload of the next version is rejected
    newer = mp.write_package(tmp_path / 'pkg6', ONNX + b'6', manifest(version=6))
    newer_url = join(s3_bucket, 'job', 'eval', '2', 'model')
    model_store.publish_package(newer, newer_url, env)
    open_storage(newer_url, env).write_bytes(mp.MODEL_FILE, b'trunc')
    model_store.write_pointer(pointer, mp.DeployPointer.for_package(newer, newer_url), env)
    with pytest.raises(ModelPackageError):
        sync.poll()
    assert installed(tmp_path / 'models') == [local.content_hash]


def test_package_url_without_pointer_is_installed_once(tmp_path):
    package = mp.write_package(tmp_path / 'pkg', ONNX, manifest(version=2))
    sync = ModelSync(str(package.path), tmp_path / 'models')
    assert sync.poll().content_hash == package.content_hash
    assert sync.poll() is None


@pytest.fixture(scope='module')
def fault_bucket(s3_server) -> str:
    """One bucket for the fault tests (a prefix each): the session's server has room for a few
    dozen buckets only."""
    if not s3_server.running:
        s3_server.start()
    return s3_server.make_bucket('sync-faults-' + secrets.token_hex(6))


@pytest.mark.s3
@pytest.mark.parametrize('fault', list(Fault), ids=[f.value for f in Fault])
def test_s3_fault_mid_download_fails_the_poll_cleanly_and_the_next_installs(
    s3_server, fault_bucket, tmp_path, fault
):
    env = s3_server.env
    local = mp.write_package(tmp_path / 'pkg', ONNX, manifest(version=5))
    package_url = join(fault_bucket, fault.value, 'eval', '1', 'model')
    model_store.publish_package(local, package_url, env)
    pointer = join(fault_bucket, fault.value, 'deploy', 'index.pkl')
    model_store.write_pointer(pointer, mp.DeployPointer.for_package(local, package_url), env)
    models = tmp_path / 'models'
    with FaultProxy(s3_server.ports['s3']) as proxy:
        sync = ModelSync(pointer, models, environ=dict(env, S3_ENDPOINT_URL=proxy.url))
        # the pointer and the manifest go through; the model file's download does not
        model_path = f'/{package_url.removeprefix("s3://")}/{mp.MODEL_FILE}'
        proxy.set_faults([fault], match=lambda method, path: path == model_path)
        with pytest.raises(ModelPackageError, match='cannot download') as info:
            sync.poll()
        assert isinstance(info.value.__cause__, StorageError)
        assert proxy.injected[fault] >= 1
        assert installed(models) == [] and [p.name for p in models.iterdir()] == []
        proxy.clear()
        # a failed download is not a rejected package: the next poll installs it
        assert sync.poll().content_hash == local.content_hash
    assert installed(models) == [local.content_hash]
