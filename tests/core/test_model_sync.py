"""Model sync: pointer polling, staging, verification and the atomic install; bad packages never
reach the models directory, a good one is announced exactly once; a download cut by a fault is
retried at the next poll; a package is hashed once on the robot per installation; a rollback
(the pointer naming an older package) is followed and survives restarts; idle polls open no new
storage."""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
from collections import Counter
from pathlib import Path

import pytest

from robo_lifelong.errors import ModelPackageError, StorageError
from robo_lifelong.models import package as mp
from robo_lifelong.models.installed import CURRENT_FILE, read_installed
from robo_lifelong.models.watch import ModelSlot, ModelWatcher
from robo_lifelong.transfer import model_store
from robo_lifelong.transfer import model_store as model_store_module
from robo_lifelong.transfer import storage as storage_module
from robo_lifelong.transfer.model_sync import ModelSync, first_model_url
from robo_lifelong.transfer.storage import S3Config, join, open_storage
from tests.core.test_model_package import ONNX, manifest
from tests.core.test_model_watch import wait_for
from tests.core.test_runtime import manifest as runnable
from tests.core.test_runtime import tiny_onnx
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
    assert json.loads((tmp_path / 'models' / CURRENT_FILE).read_text())['version'] == 4


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
    assert installed(models) == [] and not (models / CURRENT_FILE).exists()
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
    env = S3Config.from_environ(s3_server.env)
    local = mp.write_package(tmp_path / 'pkg', ONNX, manifest(version=5))
    package_url = join(s3_bucket, 'job', 'eval', '1', 'model')
    model_store.publish_package(local, package_url, env)
    pointer = join(s3_bucket, 'job', 'deploy', 'index.pkl')
    model_store.write_pointer(pointer, mp.DeployPointer.for_package(local, package_url), env)
    sync = ModelSync(pointer, tmp_path / 'models', s3=env)
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
    env = S3Config.from_environ(s3_server.env)
    local = mp.write_package(tmp_path / 'pkg', ONNX, manifest(version=5))
    package_url = join(fault_bucket, fault.value, 'eval', '1', 'model')
    model_store.publish_package(local, package_url, env)
    pointer = join(fault_bucket, fault.value, 'deploy', 'index.pkl')
    model_store.write_pointer(pointer, mp.DeployPointer.for_package(local, package_url), env)
    models = tmp_path / 'models'
    with FaultProxy(s3_server.ports['s3']) as proxy:
        sync = ModelSync(pointer, models, s3=dataclasses.replace(env, endpoint_url=proxy.url))
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


def count_hashes(monkeypatch) -> Counter:
    """File names hashed from now on (every sha256 pass over a package file)."""
    hashed: Counter = Counter()
    real = mp._sha256_file

    def counting(path: Path) -> str:
        hashed[Path(path).name] += 1
        return real(path)

    monkeypatch.setattr(mp, '_sha256_file', counting)
    return hashed


def loaded_version(models: Path, slot: ModelSlot) -> int | None:
    """The version a perception watcher on ``models`` runs once it acted on the record."""
    events: list = []
    watcher = ModelWatcher(slot, events.append, threads=1, models_dir=models, poll_s=0.02)
    try:
        wait_for(lambda: events)
    finally:
        watcher.stop()
    assert events and events[-1].accepted, events
    return slot.current().package.version


def test_a_package_is_hashed_once_on_the_robot_per_installation(tmp_path, monkeypatch):
    """Bridge install, perception load, and a restart of both: one sha256 pass per file."""
    pointer = str(tmp_path / 'deploy' / 'index.pkl')
    package = mp.write_package(
        tmp_path / 'v1', tiny_onnx(), dict(runnable(), version=1), weights=b'weights'
    )
    model_store.write_pointer(pointer, mp.DeployPointer.for_package(package, str(package.path)))
    models = tmp_path / 'models'
    hashed = count_hashes(monkeypatch)
    assert ModelSync(pointer, models).poll().content_hash == package.content_hash
    assert loaded_version(models, ModelSlot()) == 1  # perception trusts the record
    assert ModelSync(pointer, models).poll() is None  # bridge restarted
    assert loaded_version(models, ModelSlot()) == 1  # perception restarted
    assert hashed == {mp.MODEL_FILE: 1, mp.WEIGHTS_FILE: 1}


def test_rollback_to_an_earlier_package_is_followed_and_survives_a_restart(tmp_path):
    pointer = str(tmp_path / 'deploy' / 'index.pkl')
    models = tmp_path / 'models'
    sync = ModelSync(pointer, models)
    v1 = publish(tmp_path, 'v1', 1, pointer)
    assert sync.poll().version == 1
    v2 = publish(tmp_path, 'v2', 2, pointer)
    assert sync.poll().version == 2
    # the admin's rollback rewrites the pointer; the cloud's copy of v1 need not exist any
    # more: the installed one is verified again and made current
    model_store.write_pointer(pointer, mp.DeployPointer.for_package(v1, str(v1.path)))
    shutil.rmtree(v1.path)
    rolled = sync.poll()
    assert rolled.version == 1 and rolled.path == models / v1.content_hash
    assert read_installed(models).content_hash == v1.content_hash
    assert installed(models) == sorted([v1.content_hash, v2.content_hash])
    restarted = ModelSync(pointer, models)
    assert restarted.current.content_hash == v1.content_hash and restarted.poll() is None


def test_rollback_to_a_damaged_installed_copy_downloads_it_again(tmp_path):
    pointer = str(tmp_path / 'index.pkl')
    models = tmp_path / 'models'
    sync = ModelSync(pointer, models)
    v1 = publish(tmp_path, 'v1', 1, pointer)
    sync.poll()
    publish(tmp_path, 'v2', 2, pointer)
    sync.poll()
    (models / v1.content_hash / mp.MODEL_FILE).write_bytes(b'rotten')
    model_store.write_pointer(pointer, mp.DeployPointer.for_package(v1, str(v1.path)))
    assert sync.poll().model_path.read_bytes() == ONNX + b'v1'


def test_idle_polls_open_no_storage(tmp_path, monkeypatch):
    """The pointer's storages are opened once and reused: an S3 client is made per storage, so
    an idle bridge must not make one per poll."""
    pointer = str(tmp_path / 'deploy' / 'index.pkl')
    publish(tmp_path, 'v1', 1, pointer)
    opened: list[str] = []
    real = model_store_module.open_storage

    def counting(url, *args, **kwargs):
        opened.append(url)
        return real(url, *args, **kwargs)

    monkeypatch.setattr(model_store_module, 'open_storage', counting)
    sync = ModelSync(pointer, tmp_path / 'models')
    assert sync.poll() is not None
    first = len(opened)
    for _ in range(5):
        assert sync.poll() is None
    assert len(opened) == first


def test_an_s3_store_makes_its_client_at_first_use_and_keeps_it(monkeypatch):
    made: list[object] = []
    real = storage_module._make_client

    def counting(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(storage_module, '_make_client', counting)
    # nothing listens on port 9: every request fails fast, which is all this needs
    store = storage_module.open_storage(
        's3://bucket/deploy', storage_module.S3Config(endpoint_url='http://127.0.0.1:9'), 1
    )
    assert made == []  # opening a store makes no client
    for _ in range(3):
        with pytest.raises(StorageError):
            store.exists(mp.MANIFEST_FILE)
    assert len(made) == 1
