"""S3 specifics of the storage module on a real SeaweedFS server: errors, credentials, crashes."""

from __future__ import annotations

import time

import pytest
from botocore.stub import Stubber

from robo_lifelong.errors import ObjectMissing, PreconditionFailed, StorageError
from robo_lifelong.storage import S3Storage, join, open_storage
from tests.fakes.seaweedfs import SeaweedS3, free_ports

pytestmark = pytest.mark.s3


def test_unreachable_endpoint_fails_fast_with_a_clear_message() -> None:
    (port,) = free_ports(1)  # nothing listens there
    env = {
        'S3_ENDPOINT_URL': f'http://127.0.0.1:{port}',
        'ACCESS_KEY_ID': 'KEYID42',
        'SECRET_ACCESS_KEY': 'SECRET42',
    }
    store = open_storage('s3://some-bucket/p', environ=env)
    started = time.monotonic()
    with pytest.raises(StorageError) as info:
        store.read_bytes('x.txt')
    # a hang guard, not a speed target: botocore's tries are bounded and refusals are immediate
    assert time.monotonic() - started < 20
    message = str(info.value)
    assert 'unreachable' in message and f'127.0.0.1:{port}' in message
    assert 's3://some-bucket/p/x.txt' in message
    assert 'SECRET42' not in message and 'KEYID42' not in message


def test_wrong_secret_is_a_storage_error_without_the_secret(
    s3_server: SeaweedS3, s3_bucket: str
) -> None:
    env = dict(s3_server.env, SECRET_ACCESS_KEY='WRONG-SECRET-42')
    with pytest.raises(StorageError) as info:
        open_storage(s3_bucket, environ=env).write_bytes('k', b'v')
    assert s3_bucket in str(info.value)
    assert 'WRONG-SECRET-42' not in str(info.value)


def test_missing_bucket_is_named(s3_server: SeaweedS3) -> None:
    store = open_storage('s3://no-such-bucket-42/x', environ=s3_server.env)
    with pytest.raises(StorageError, match='no-such-bucket-42'):
        store.read_bytes('k')


def test_standard_aws_variables_are_a_fallback(s3_server: SeaweedS3, s3_bucket: str) -> None:
    env = {
        'S3_ENDPOINT_URL': s3_server.endpoint_url,
        'AWS_ACCESS_KEY_ID': s3_server.access_key,
        'AWS_SECRET_ACCESS_KEY': s3_server.secret_key,
    }
    store = open_storage(s3_bucket, environ=env)
    store.write_bytes('k.txt', b'aws vars')
    assert open_storage(s3_bucket, environ=s3_server.env).read_bytes('k.txt') == b'aws vars'


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
    store = open_storage('s3://bucket-x/p', environ=env)
    assert isinstance(store, S3Storage)
    with Stubber(store._client) as stub:
        stub.add_client_error(
            'put_object', service_error_code='ConditionalRequestConflict', http_status_code=409
        )
        with pytest.raises(PreconditionFailed, match='ConditionalRequestConflict'):
            store.write_if('index.txt', b'x', '"etag"')


def test_data_survives_kill_and_restart(s3_server: SeaweedS3, s3_bucket: str) -> None:
    store = open_storage(s3_bucket, environ=s3_server.env)
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
