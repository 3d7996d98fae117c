"""Storage contract on both backends (a local directory and real S3), plus local specifics."""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from robo_lifelong.errors import ObjectMissing, PreconditionFailed, StorageError
from robo_lifelong.transfer.storage import (
    LocalStorage,
    S3Config,
    S3Storage,
    Storage,
    join,
    open_storage,
    parent_of,
    split_bucket,
    split_url,
)

WRITERS = 8
LINES_PER_WRITER = 50


@pytest.fixture(params=['local', pytest.param('s3', marks=pytest.mark.s3)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Storage]:
    """Opens a new Storage on the same place each call (one per simulated robot)."""
    if request.param == 'local':
        return lambda: open_storage(str(tmp_path / 'store'))
    server = request.getfixturevalue('s3_server')
    url = join(request.getfixturevalue('s3_bucket'), 'robots/run1')
    return lambda: open_storage(url, S3Config.from_environ(server.env))


@pytest.fixture
def store(open_store: Callable[[], Storage]) -> Storage:
    return open_store()


def test_round_trip_and_overwrite(store: Storage) -> None:
    store.write_bytes('a/b/c.bin', b'\x00\x01binary')
    assert store.read_bytes('a/b/c.bin') == b'\x00\x01binary'
    store.write_bytes('a/b/c.bin', b'new')
    assert store.read_bytes('a/b/c.bin') == b'new'
    assert store.exists('a/b/c.bin')
    assert not store.exists('a/b/other.bin')


def test_list_is_sorted_and_prefix_based(store: Storage) -> None:
    for key in ('x/2.txt', 'x/1.txt', 'xy/3.txt', 'y/4.txt', 'x/deep/5.txt'):
        store.write_bytes(key, b'.')
    assert store.list('x/') == ['x/1.txt', 'x/2.txt', 'x/deep/5.txt']
    assert store.list('x') == ['x/1.txt', 'x/2.txt', 'x/deep/5.txt', 'xy/3.txt']
    assert store.list() == ['x/1.txt', 'x/2.txt', 'x/deep/5.txt', 'xy/3.txt', 'y/4.txt']
    assert store.list('nothing/') == []


def test_missing_key_names_the_url(store: Storage, tmp_path: Path) -> None:
    with pytest.raises(ObjectMissing, match='no/such.bin'):
        store.read_bytes('no/such.bin')
    with pytest.raises(ObjectMissing, match='no/such.bin'):
        store.download_file('no/such.bin', tmp_path / 'out.bin')
    assert store.read_with_etag('no/such.bin') == (None, None)


def test_upload_download_delete(store: Storage, tmp_path: Path) -> None:
    src = tmp_path / 'src.bin'
    src.write_bytes(bytes(range(256)) * 1000)
    store.upload_file(src, 'files/blob.bin')
    dst = tmp_path / 'nested/dir/dst.bin'
    store.download_file('files/blob.bin', dst)
    assert dst.read_bytes() == src.read_bytes()
    store.delete('files/blob.bin')
    assert not store.exists('files/blob.bin')
    store.delete('files/blob.bin')  # deleting twice is fine
    with pytest.raises(StorageError, match='missing.bin'):
        store.upload_file(tmp_path / 'missing.bin', 'files/x.bin')


def test_url_for_and_bad_keys(store: Storage) -> None:
    assert store.url_for('a/b.txt') == store.url + '/a/b.txt'
    for bad in ('', '/abs', '../up', 'a/../b', 'a//b'):
        with pytest.raises(StorageError, match='bad key'):
            store.read_bytes(bad)


def test_conditional_write_detects_a_stale_etag(store: Storage) -> None:
    first = store.write_if('index.txt', b'one\n', None)
    with pytest.raises(PreconditionFailed):
        store.write_if('index.txt', b'again\n', None)  # create-only, but it exists
    data, etag = store.read_with_etag('index.txt')
    assert (data, etag) == (b'one\n', first)
    second = store.write_if('index.txt', b'one\ntwo\n', etag)
    assert second != first
    with pytest.raises(PreconditionFailed):
        store.write_if('index.txt', b'lost\n', first)  # stale etag
    assert store.read_bytes('index.txt') == b'one\ntwo\n'


def test_append_line_once_skips_known_ids(store: Storage) -> None:
    store.write_bytes('data.txt', b'old/rgb/1.png old/label/1.png')  # no trailing newline
    assert store.append_line_once('data.txt', 'new/rgb/2.png new/label/2.png', 'new/rgb/2.png')
    assert not store.append_line_once('data.txt', 'new/rgb/2.png new/label/2.png', 'new/rgb/2.png')
    assert not store.append_line_once('data.txt', 'old/rgb/1.png x.png', 'old/rgb/1.png')
    assert store.read_bytes('data.txt').decode().splitlines() == [
        'old/rgb/1.png old/label/1.png',
        'new/rgb/2.png new/label/2.png',
    ]
    with pytest.raises(ValueError, match='not a token'):
        store.append_line_once('data.txt', 'a b', 'c')
    with pytest.raises(ValueError, match='single line'):
        store.append_line_once('data.txt', 'a\nb', 'a')


def _line(writer: int, index: int) -> tuple[str, str]:
    rgb = f'robot{writer}/rgb/{index:06d}.png'
    return f'{rgb} robot{writer}/label/{index:06d}.png', rgb


def _append_all(store: Storage, writer: int) -> int:
    return sum(
        store.append_line_once('data.txt', *_line(writer, i)) for i in range(LINES_PER_WRITER)
    )


def _assert_every_line_once(store: Storage) -> None:
    lines = store.read_bytes('data.txt').decode().splitlines()
    expected = {_line(w, i)[0] for w in range(WRITERS) for i in range(LINES_PER_WRITER)}
    assert len(lines) == WRITERS * LINES_PER_WRITER
    assert set(lines) == expected


def test_concurrent_appenders_lose_and_duplicate_nothing(
    open_store: Callable[[], Storage],
) -> None:
    stores = [open_store() for _ in range(WRITERS)]
    store = stores[0]
    with ThreadPoolExecutor(WRITERS) as pool:
        appended = list(pool.map(_append_all, stores, range(WRITERS)))
    assert appended == [LINES_PER_WRITER] * WRITERS
    _assert_every_line_once(store)
    # a second pass (e.g. a robot re-sending after a restart) adds nothing
    assert _append_all(store, 3) == 0
    _assert_every_line_once(store)


def _append_in_process(root: str, writer: int, results: multiprocessing.Queue) -> None:
    results.put(_append_all(open_storage(root), writer))


def test_local_appenders_in_separate_processes(tmp_path: Path) -> None:
    store = open_storage(str(tmp_path / 'shared'))
    context = multiprocessing.get_context('fork')
    results = context.Queue()
    procs = [
        context.Process(target=_append_in_process, args=(store.url, w, results))
        for w in range(WRITERS)
    ]
    for proc in procs:
        proc.start()
    counts = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert counts == [LINES_PER_WRITER] * WRITERS
    _assert_every_line_once(store)


def test_local_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = open_storage(str(tmp_path))
    store.write_bytes('k/v.bin', b'1')
    store.write_if('k/index.txt', b'x\n', None)
    assert sorted(p.name for p in (tmp_path / 'k').iterdir() if 'robo-tmp' in p.name) == []
    assert store.list() == ['k/index.txt', 'k/v.bin']  # the lock file is not an object


def test_open_storage_dispatch_and_bad_urls(tmp_path: Path) -> None:
    assert isinstance(open_storage(str(tmp_path)), LocalStorage)
    assert open_storage(f'file://{tmp_path}').url == str(tmp_path)
    env = {
        'S3_ENDPOINT_URL': 'http://127.0.0.1:9',
        'ACCESS_KEY_ID': 'KEYID42',
        'SECRET_ACCESS_KEY': 'SECRET42',
    }
    s3 = open_storage('s3://my-bucket/some/prefix/', S3Config.from_environ(env))
    assert isinstance(s3, S3Storage)
    assert s3.url_for('x.txt') == 's3://my-bucket/some/prefix/x.txt'
    assert 'KEYID42' not in repr(s3) and 'SECRET42' not in repr(s3)
    for bad in ('', 'gs://bucket/x', 's3://ab/x', 's3://Upper/x', 's3:///x'):
        with pytest.raises(StorageError):
            open_storage(bad, S3Config.from_environ(env))
    with pytest.raises(StorageError, match='scheme'):
        open_storage(
            's3://my-bucket', S3Config.from_environ({'S3_ENDPOINT_URL': '127.0.0.1:9000'})
        )


def test_join_never_doubles_slashes() -> None:
    assert join('s3://b/p/', '/x/', 'y.txt') == 's3://b/p/x/y.txt'
    assert join('/data/out', 'train', '1') == '/data/out/train/1'
    assert join('s3://b') == 's3://b'


def test_append_after_a_lost_reply_does_not_duplicate(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first conditional PUT lands but its reply is lost; the retry answers 412.
    real_write_if = type(store).write_if
    calls = []

    def landed_then_412(self: Storage, key: str, data: bytes, etag: str | None) -> str:
        calls.append(key)
        real_write_if(self, key, data, etag)
        if len(calls) == 1:
            raise PreconditionFailed('retry of a PUT that landed')
        return 'unused'

    monkeypatch.setattr(type(store), 'write_if', landed_then_412)
    store.append_line_once('data.txt', 'r/rgb/9.png r/label/9.png', 'r/rgb/9.png')
    assert store.read_bytes('data.txt') == b'r/rgb/9.png r/label/9.png\n'
    assert len(calls) == 1  # the re-read found the line, so no second write


SEDNA_S3 = {
    'S3_ENDPOINT_URL': 'http://minio.example:9000',
    'ACCESS_KEY_ID': 'KEYID42',
    'SECRET_ACCESS_KEY': 'SECRET42',
}


def test_s3_config_reads_sednas_names_before_the_aws_ones() -> None:
    aws = {
        'AWS_ENDPOINT_URL': 'https://s3.aws.example',
        'AWS_REGION': 'eu-west-1',
        'AWS_ACCESS_KEY_ID': 'AWSKEY42',
        'AWS_SECRET_ACCESS_KEY': 'AWSSECRET42',
        'AWS_SESSION_TOKEN': 'TOKEN42',
    }
    sedna = S3Config.from_environ({**aws, **SEDNA_S3})
    assert (sedna.endpoint_url, sedna.region) == ('http://minio.example:9000', 'eu-west-1')
    assert (sedna.access_key_id, sedna.secret_access_key) == ('KEYID42', 'SECRET42')
    assert sedna.session_token == ''  # AWS's token is not for Sedna's key pair
    only_aws = S3Config.from_environ(aws)
    assert only_aws == S3Config(
        'https://s3.aws.example', 'eu-west-1', 'AWSKEY42', 'AWSSECRET42', 'TOKEN42'
    )
    assert S3Config.from_environ({'AWS_ENDPOINT_URL_S3': 'http://s3', 'AWS_ENDPOINT_URL': 'x'})
    assert S3Config.from_environ({'AWS_DEFAULT_REGION': 'us-west-2'}).region == 'us-west-2'
    assert S3Config.from_environ({'S3_ENDPOINT_URL': ' ', 'ACCESS_KEY_ID': ''}) == S3Config()
    assert not S3Config.from_environ({'ACCESS_KEY_ID': 'only-half'}).has_keys


def test_s3_config_goes_back_to_the_environment_it_came_from() -> None:
    config = S3Config.from_environ(SEDNA_S3)
    assert config.to_environ() == SEDNA_S3  # what a Sedna worker is given (PROTOCOL.md §3.4)
    temporary = S3Config('', 'eu-west-1', 'AWSKEY42', 'AWSSECRET42', 'TOKEN42')
    assert S3Config.from_environ(temporary.to_environ()) == temporary
    assert S3Config().to_environ() == {}


def test_s3_config_never_shows_its_keys(caplog: pytest.LogCaptureFixture) -> None:
    config = S3Config('http://minio:9000', 'r', 'KEYID42', 'SECRET42', 'TOKEN42')
    logging.getLogger('test').warning('opening %s / %r / %s', config, config, [config])
    for text in (repr(config), str(config), f'{config}', caplog.text):
        assert 'http://minio:9000' in text
        for secret in ('KEYID42', 'SECRET42', 'TOKEN42'):
            assert secret not in text


@pytest.mark.parametrize(
    ('url', 'parent', 'name'),
    [
        ('s3://bucket/data/data.txt', 's3://bucket/data', 'data.txt'),  # a Dataset's spec.url
        ('s3://bucket/out/deploy/index.pkl', 's3://bucket/out/deploy', 'index.pkl'),
        ('s3://bucket/out/train/1/package/', 's3://bucket/out/train/1', 'package'),
        ('s3://bucket/index.json', 's3://bucket', 'index.json'),
        ('/data/ll/out/job/deploy/index.pkl', '/data/ll/out/job/deploy', 'index.pkl'),
        ('/home/data/out/train/1/package/', '/home/data/out/train/1', 'package'),
        ('/data.txt', '/', 'data.txt'),
        ('relative/dir/data.txt', 'relative/dir', 'data.txt'),
        ('data.txt', '.', 'data.txt'),
    ],
)
def test_split_url_on_every_url_form_in_use(url: str, parent: str, name: str) -> None:
    assert split_url(url) == (parent, name)
    assert parent_of(url) == parent
    if parent != '.':  # a bare name has no directory to join back onto
        assert join(parent, name) == url.rstrip('/')


def test_split_url_refuses_a_bare_bucket_and_split_bucket_a_path() -> None:
    for bucket_only in ('s3://bucket', 's3://bucket/'):
        with pytest.raises(StorageError, match='bucket'):
            split_url(bucket_only)
    assert split_bucket('s3://bucket') == ('bucket', '')
    assert split_bucket('s3://bucket//a/b/') == ('bucket', 'a/b')
    with pytest.raises(StorageError, match='not an S3 URL'):
        split_bucket('/data/out')
