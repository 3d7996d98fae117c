"""S3 specifics of the storage module on a real SeaweedFS server: errors, credentials, crashes,
and faults mid-request (5xx, reset, truncated body) behind a fault-injecting proxy."""

from __future__ import annotations

import json
import secrets
import urllib.request

import pytest
from botocore.stub import Stubber

from robo_lifelong.errors import ObjectMissing, PreconditionFailed, StorageError
from robo_lifelong.transfer.storage import (
    S3_TOTAL_ATTEMPTS,
    S3Config,
    S3Storage,
    join,
    open_storage,
)
from tests.fakes.fault_proxy import Fault, FaultProxy
from tests.fakes.seaweedfs import SeaweedS3, free_ports

pytestmark = pytest.mark.s3


def test_unreachable_endpoint_fails_fast_with_a_clear_message() -> None:
    (port,) = free_ports(1)  # nothing listens there
    env = {
        'S3_ENDPOINT_URL': f'http://127.0.0.1:{port}',
        'ACCESS_KEY_ID': 'KEYID42',
        'SECRET_ACCESS_KEY': 'SECRET42',
    }
    store = open_storage('s3://some-bucket/p', S3Config.from_environ(env))
    sent: list[str] = []  # every HTTP try botocore makes (counted, not timed)
    store._client.meta.events.register('before-send.s3', lambda **kw: sent.append(kw['request']))
    with pytest.raises(StorageError) as info:
        store.read_bytes('x.txt')
    assert len(sent) == S3_TOTAL_ATTEMPTS  # bounded tries, then the error
    message = str(info.value)
    assert 'unreachable' in message and f'127.0.0.1:{port}' in message
    assert 's3://some-bucket/p/x.txt' in message
    assert 'SECRET42' not in message and 'KEYID42' not in message


def test_wrong_secret_is_a_storage_error_without_the_secret(
    s3_server: SeaweedS3, s3_bucket: str
) -> None:
    env = dict(s3_server.env, SECRET_ACCESS_KEY='WRONG-SECRET-42')
    with pytest.raises(StorageError) as info:
        open_storage(s3_bucket, S3Config.from_environ(env)).write_bytes('k', b'v')
    assert s3_bucket in str(info.value)
    assert 'WRONG-SECRET-42' not in str(info.value)


def test_missing_bucket_is_named(s3_server: SeaweedS3) -> None:
    store = open_storage('s3://no-such-bucket-42/x', S3Config.from_environ(s3_server.env))
    with pytest.raises(StorageError, match='no-such-bucket-42'):
        store.read_bytes('k')


def test_standard_aws_variables_are_a_fallback(s3_server: SeaweedS3, s3_bucket: str) -> None:
    env = {
        'S3_ENDPOINT_URL': s3_server.endpoint_url,
        'AWS_ACCESS_KEY_ID': s3_server.access_key,
        'AWS_SECRET_ACCESS_KEY': s3_server.secret_key,
    }
    store = open_storage(s3_bucket, S3Config.from_environ(env))
    store.write_bytes('k.txt', b'aws vars')
    assert (
        open_storage(s3_bucket, S3Config.from_environ(s3_server.env)).read_bytes('k.txt')
        == b'aws vars'
    )


def test_sedna_variables_come_from_os_environ_by_default(
    s3_server: SeaweedS3, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    store = open_storage(join(s3_bucket, 'a'))
    store.write_bytes('b.txt', b'env')
    assert store.list() == ['b.txt']


def test_conflict_409_counts_as_precondition_failed() -> None:
    env = {'S3_ENDPOINT_URL': 'http://127.0.0.1:9', 'ACCESS_KEY_ID': 'a', 'SECRET_ACCESS_KEY': 'b'}
    store = open_storage('s3://bucket-x/p', S3Config.from_environ(env))
    assert isinstance(store, S3Storage)
    with Stubber(store._client) as stub:
        stub.add_client_error(
            'put_object', service_error_code='ConditionalRequestConflict', http_status_code=409
        )
        with pytest.raises(PreconditionFailed, match='ConditionalRequestConflict'):
            store.write_if('index.txt', b'x', '"etag"')


def test_the_volume_count_does_not_depend_on_the_free_disk(s3_server: SeaweedS3) -> None:
    """Sized from the free disk (weed's default) a filling disk left no volume for a new
    bucket and uploads failed with 'no free volumes left'; the count is fixed instead."""
    url = f'http://127.0.0.1:{s3_server.ports["master"]}/dir/status'
    with urllib.request.urlopen(url, timeout=10) as reply:
        topology = json.load(reply)['Topology']
    assert topology['Max'] == 1000


def test_data_survives_kill_and_restart(s3_server: SeaweedS3, s3_bucket: str) -> None:
    store = open_storage(s3_bucket, S3Config.from_environ(s3_server.env))
    store.write_bytes('before/crash.bin', b'persisted')
    assert store.append_line_once('data.txt', 'a/rgb/1.png a/label/1.png', 'a/rgb/1.png')
    s3_server.kill()
    try:
        with pytest.raises(StorageError, match='unreachable'):
            store.read_bytes('before/crash.bin')
    finally:
        s3_server.start()
    assert store.read_bytes('before/crash.bin') == b'persisted'
    assert not store.append_line_once('data.txt', 'a/rgb/1.png a/label/1.png', 'a/rgb/1.png')
    with pytest.raises(ObjectMissing):
        store.read_bytes('never/written.bin')


# ---------------------------------------------------------------------------------------------
# Faults mid-request (tests/fakes/fault_proxy.py): every one is a StorageError naming the URL

BODY = bytes(range(256)) * 400  # 100 KiB: a truncated read stops well inside it

OPERATIONS = {
    'read_bytes': lambda store, tmp: store.read_bytes('obj.bin'),
    'read_with_etag': lambda store, tmp: store.read_with_etag('obj.bin'),
    'download_file': lambda store, tmp: store.download_file('obj.bin', tmp / 'dl' / 'obj.bin'),
    'exists': lambda store, tmp: store.exists('obj.bin'),
    'list': lambda store, tmp: store.list(),
    'write_bytes': lambda store, tmp: store.write_bytes('new.bin', b'new'),
    'write_if': lambda store, tmp: store.write_if('new.bin', b'new', None),
    'upload_file': lambda store, tmp: store.upload_file(tmp / 'up.bin', 'up.bin'),
    'delete': lambda store, tmp: store.delete('obj.bin'),
    'append_line_once': lambda store, tmp: store.append_line_once('index.txt', 'a b', 'a'),
}


@pytest.fixture
def proxy(s3_server: SeaweedS3):
    with FaultProxy(s3_server.ports['s3']) as p:
        yield p


@pytest.fixture(scope='module')
def fault_bucket(s3_server: SeaweedS3) -> str:
    """One bucket for the many fault tests (each bucket takes 7 of the server's volumes)."""
    if not s3_server.running:
        s3_server.start()
    return s3_server.make_bucket('faults-' + secrets.token_hex(6))


@pytest.fixture
def fault_url(fault_bucket: str) -> str:
    """A fresh, empty prefix of the fault tests' bucket."""
    return join(fault_bucket, secrets.token_hex(6))


def proxied(s3_server: SeaweedS3, proxy: FaultProxy, url: str, attempts: int = 1):
    env = dict(s3_server.env, S3_ENDPOINT_URL=proxy.url)
    return open_storage(url, S3Config.from_environ(env), attempts=attempts)


@pytest.mark.parametrize('operation', sorted(OPERATIONS))
@pytest.mark.parametrize('fault', list(Fault), ids=[f.value for f in Fault])
def test_every_fault_of_every_operation_is_a_storage_error(
    s3_server, fault_url, proxy, tmp_path, fault, operation
) -> None:
    open_storage(fault_url, S3Config.from_environ(s3_server.env)).write_bytes('obj.bin', BODY)
    (tmp_path / 'up.bin').write_bytes(b'upload')
    store = proxied(s3_server, proxy, fault_url)
    proxy.set_faults([fault])
    with pytest.raises(StorageError) as info:
        OPERATIONS[operation](store, tmp_path)
    assert proxy.injected[fault] >= 1
    message = str(info.value)
    assert fault_url in message
    assert s3_server.secret_key not in message and s3_server.access_key not in message
    proxy.clear()
    store.write_bytes('after.bin', b'ok')  # the same client works again once the faults stop
    assert store.read_bytes('after.bin') == b'ok'


@pytest.mark.parametrize('attempts', [1, 3])
def test_truncated_body_is_a_storage_error_on_every_read(
    s3_server, fault_url, proxy, tmp_path, attempts
) -> None:
    """The server closes the connection half-way through the body it announced: botocore raises
    that from Body.read() (ResponseStreamingError), after get_object returned."""
    open_storage(fault_url, S3Config.from_environ(s3_server.env)).write_bytes('obj.bin', BODY)
    store = proxied(s3_server, proxy, fault_url, attempts)
    proxy.set_faults([Fault.TRUNCATE], match=lambda method, path: method == 'GET')
    target = tmp_path / 'dl' / 'obj.bin'
    for read in (
        lambda: store.read_bytes('obj.bin'),
        lambda: store.read_with_etag('obj.bin'),
        lambda: store.download_file('obj.bin', target),
    ):
        with pytest.raises(StorageError, match='IncompleteRead') as info:
            read()
        assert join(fault_url, 'obj.bin') in str(info.value)
    assert not target.exists()  # s3transfer renames its temporary file only when complete
    proxy.clear()
    assert store.read_bytes('obj.bin') == BODY
    store.download_file('obj.bin', target)
    assert target.read_bytes() == BODY


def test_a_write_whose_reply_was_cut_did_land(s3_server, fault_url, proxy) -> None:
    """Why uploads must be idempotent: the request was applied, only its answer was lost."""
    store = proxied(s3_server, proxy, fault_url)
    proxy.set_faults([Fault.TRUNCATE], match=lambda method, path: method == 'PUT')
    with pytest.raises(StorageError):
        store.write_if('once.bin', b'data', None)
    proxy.clear()
    with pytest.raises(PreconditionFailed):
        store.write_if('once.bin', b'data', None)
    assert store.read_bytes('once.bin') == b'data'


def test_attempts_must_be_positive() -> None:
    with pytest.raises(StorageError, match='attempts'):
        open_storage('s3://bucket-x/p', S3Config(), attempts=0)
