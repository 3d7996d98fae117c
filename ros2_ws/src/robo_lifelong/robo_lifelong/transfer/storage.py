"""One object-store interface for local directories and ``s3://bucket/prefix`` URLs.

Keys are relative posix paths below the URL the store was opened with. Writes are atomic
(local: temp file + fsync + rename; S3: one PUT), and shared index files are updated with
conditional writes (``read_with_etag`` / ``write_if``), so concurrent robots appending to the same
``data.txt`` never lose or duplicate a line (``append_line_once``).

S3 endpoint and keys are an ``S3Config``, read once from the environment
(``S3Config.from_environ``): the variables Sedna injects into workers (``S3_ENDPOINT_URL`` with
scheme, ``ACCESS_KEY_ID``, ``SECRET_ACCESS_KEY``), else the standard AWS variables
(``AWS_ENDPOINT_URL[_S3]``, ``AWS_ACCESS_KEY_ID`` ...), else boto3's own chain (config files,
instance roles). ``split_url``, ``parent_of`` and ``join`` are the one place URLs are taken apart
and put together. boto3 is imported only when an ``s3://`` URL is opened.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import logging
import os
import random
import re
import shutil
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from robo_lifelong.errors import ObjectMissing, PreconditionFailed, StorageError

log = logging.getLogger(__name__)

# botocore's own retries (tries, not retries: `max_attempts` would count retries only), for
# callers without a retry loop of their own; a caller that has one (the uploader) opens its store
# with attempts=1, so botocore's backoff is not stacked on its own
S3_TOTAL_ATTEMPTS = 3
S3_CONNECT_TIMEOUT_S = 3.0
S3_READ_TIMEOUT_S = 30.0
# append_line_once: conditional-write rounds before giving up, and its jittered backoff
APPEND_ATTEMPTS = 60
APPEND_BACKOFF_S = 0.02
APPEND_BACKOFF_CAP_S = 1.0

S3_SCHEME = 's3://'
_BUCKET_RE = re.compile(r'^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$')
# Local bookkeeping files next to the objects; never listed as objects.
_LOCK_SUFFIX = '.robo-lock'
_TMP_MARK = '.robo-tmp-'


def join(url: str, *parts: str) -> str:
    """``url`` with ``parts`` appended by single slashes (no ``//`` in the key part)."""
    out = url.rstrip('/')
    for part in parts:
        part = part.strip('/')
        if part:
            out = f'{out}/{part}'
    return out


def split_url(url: str) -> tuple[str, str]:
    """``(parent, name)`` of an object URL: ``s3://b/p/k`` -> ``('s3://b/p', 'k')``,
    ``/d/f`` -> ``('/d', 'f')``, ``f`` -> ``('.', 'f')``; trailing slashes are ignored, so the
    name of a directory URL is its last segment.

    :raises StorageError: ``url`` is a bare ``s3://bucket``, which has no parent.
    """
    scheme = S3_SCHEME if url.startswith(S3_SCHEME) else ''
    head, _, name = url[len(scheme) :].rstrip('/').rpartition('/')
    if scheme:
        if not head or not name:
            raise StorageError(f'{url!r} names a bucket, not an object below one')
        return scheme + head.rstrip('/'), name
    return head.rstrip('/') or ('/' if url.startswith('/') else '.'), name


def parent_of(url: str) -> str:
    """The URL of the directory (or S3 prefix) holding ``url``; see ``split_url``."""
    return split_url(url)[0]


def split_bucket(url: str) -> tuple[str, str]:
    """``(bucket, key prefix)`` of an ``s3://bucket[/prefix]`` URL, prefix without edge slashes."""
    if not url.startswith(S3_SCHEME):
        raise StorageError(f'not an S3 URL: {url!r}')
    bucket, _, prefix = url[len(S3_SCHEME) :].partition('/')
    return bucket, prefix.strip('/')


@dataclass(frozen=True)
class S3Config:
    """Where S3 is and who we are to it; empty strings mean "not set" (boto3's chain decides).

    Built once from the environment (``from_environ``) and passed down to ``open_storage``;
    ``to_environ`` gives the variables back for a process that is launched with them. The keys
    never appear in ``repr``/``str`` (so neither in logs nor in test output).
    """

    endpoint_url: str = ''  # with scheme (http:// or https://); '': AWS itself
    region: str = ''  # '': boto3's configured region, else us-east-1
    access_key_id: str = field(default='', repr=False)
    secret_access_key: str = field(default='', repr=False)
    session_token: str = field(default='', repr=False)  # temporary AWS credentials only

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> S3Config:
        """Sedna's names first (PROTOCOL.md §3.4), then the AWS ones."""

        def first(*names: str) -> str:
            return next((v for n in names if (v := environ.get(n, '').strip())), '')

        sedna_keys = bool(first('ACCESS_KEY_ID') and first('SECRET_ACCESS_KEY'))
        return cls(
            endpoint_url=first('S3_ENDPOINT_URL', 'AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL'),
            region=first('AWS_REGION', 'AWS_DEFAULT_REGION'),
            access_key_id=first('ACCESS_KEY_ID', 'AWS_ACCESS_KEY_ID'),
            secret_access_key=first('SECRET_ACCESS_KEY', 'AWS_SECRET_ACCESS_KEY'),
            # a token belongs to the AWS key pair it was issued with, never to Sedna's keys
            session_token='' if sedna_keys else first('AWS_SESSION_TOKEN'),
        )

    @property
    def has_keys(self) -> bool:
        return bool(self.access_key_id and self.secret_access_key)

    def to_environ(self) -> dict[str, str]:
        """The variables ``from_environ`` reads this config back from (unset ones left out):
        Sedna's names, or the AWS ones for a key pair with a session token."""
        aws = bool(self.session_token)
        values = {
            'S3_ENDPOINT_URL': self.endpoint_url,
            'AWS_REGION': self.region,
            'AWS_ACCESS_KEY_ID' if aws else 'ACCESS_KEY_ID': self.access_key_id,
            'AWS_SECRET_ACCESS_KEY' if aws else 'SECRET_ACCESS_KEY': self.secret_access_key,
            'AWS_SESSION_TOKEN': self.session_token,
        }
        return {name: value for name, value in values.items() if value}


class Storage(ABC):
    """An object store rooted at ``url``; every method takes keys relative to that root."""

    url: str

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """Content of ``key``; ObjectMissing (a StorageError) if there is none."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Atomically create or replace ``key``."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = '') -> list[str]:
        """Sorted keys starting with ``prefix`` (a key prefix, not necessarily a directory)."""

    @abstractmethod
    def download_file(self, key: str, path: str | os.PathLike) -> None:
        """Copy ``key`` to the local file ``path`` (parent directories are created)."""

    @abstractmethod
    def upload_file(self, path: str | os.PathLike, key: str) -> None: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is not an error."""

    @abstractmethod
    def read_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        """``(content, etag)``, or ``(None, None)`` if ``key`` does not exist."""

    @abstractmethod
    def write_if(self, key: str, data: bytes, etag: str | None) -> str:
        """Write ``key`` only if its etag is still ``etag`` (``None``: only if it does not exist).

        Returns the new etag; raises PreconditionFailed if the object changed meanwhile.
        """

    def url_for(self, key: str) -> str:
        return join(self.url, _check_key(key))

    def append_line_once(
        self,
        key: str,
        line: str,
        line_id: str,
        attempts: int = APPEND_ATTEMPTS,
    ) -> bool:
        """Append ``line`` to the text object ``key`` unless a line with token ``line_id`` exists.

        ``line_id`` must be one of the whitespace-separated tokens of ``line`` (a data.txt line's
        rgb path, for instance); a line "exists" when any stored line has that token. Each round
        reads the object with its etag and writes it back conditionally; a lost race re-reads.
        Because the check runs on every round, a PUT that landed although its reply was lost (its
        retry answers 412) is found on the next read instead of being appended twice.
        Returns True if this call appended the line, False if it was already there.
        """
        if '\n' in line or '\r' in line:
            raise ValueError(f'line must be a single line, got {line!r}')
        if line_id not in line.split():
            raise ValueError(f'line_id {line_id!r} is not a token of line {line!r}')
        for attempt in range(attempts):
            data, etag = self.read_with_etag(key)
            text = (data or b'').decode('utf-8')
            if any(line_id in stored.split() for stored in text.splitlines()):
                return False
            if text and not text.endswith('\n'):
                text += '\n'
            try:
                self.write_if(key, (text + line + '\n').encode('utf-8'), etag)
                return True
            except PreconditionFailed:
                delay = random.uniform(0, min(APPEND_BACKOFF_CAP_S, APPEND_BACKOFF_S * 2**attempt))
                log.debug('append to %s lost a race (round %d); retrying', key, attempt + 1)
                time.sleep(delay)
        raise StorageError(
            f'could not append {line_id!r} to {self.url_for(key)!r}: '
            f'{attempts} conditional writes lost the race'
        )


def open_storage(
    url: str, s3: S3Config | None = None, attempts: int = S3_TOTAL_ATTEMPTS
) -> Storage:
    """Storage for a local path (or ``file://`` URL) or ``s3://bucket[/prefix]``.

    ``s3`` (default: ``S3Config.from_environ(os.environ)``, read when an ``s3://`` URL is
    opened) is the endpoint and keys; ``attempts`` is how often botocore tries each S3 request
    (1: no retries, the caller retries).
    """
    if not isinstance(url, str) or not url.strip():
        raise StorageError(f'storage URL must be a non-empty string, got {url!r}')
    if url.startswith(S3_SCHEME):
        return S3Storage(url, S3Config.from_environ(os.environ) if s3 is None else s3, attempts)
    if url.startswith('file://'):
        return LocalStorage(url[len('file://') :])
    if re.match(r'^[A-Za-z][A-Za-z0-9+.-]*://', url):
        raise StorageError(f'unsupported storage URL {url!r}: use s3://bucket/prefix or a path')
    return LocalStorage(url)


def _check_key(key: str) -> str:
    parts = key.split('/')
    if not key or key.startswith('/') or '..' in parts or '' in parts[:-1] or '\\' in key:
        raise StorageError(f'bad key {key!r}: a relative posix path without ".." or "//"')
    return key


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalStorage(Storage):
    """A directory; conditional writes hold a lock file and compare a content hash."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)

    def __repr__(self) -> str:
        return f'LocalStorage({self.url!r})'

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as e:
            raise ObjectMissing(f'no object at {str(path)!r}') from e
        except OSError as e:
            raise StorageError(f'cannot read {str(path)!r}: {e}') from e

    def write_bytes(self, key: str, data: bytes) -> None:
        self._atomic_write(self._path(key), lambda f: f.write(data))

    def _atomic_write(self, path: Path, fill) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}{_TMP_MARK}', dir=path.parent)
            try:
                with os.fdopen(fd, 'wb') as f:
                    fill(f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            # the rename itself must reach the disk too, or a crash can undo it
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as e:
            raise StorageError(f'cannot write {str(path)!r}: {e}') from e

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = '') -> list[str]:
        start = self.root / prefix.rpartition('/')[0] if '/' in prefix else self.root
        if not start.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                if name.endswith(_LOCK_SUFFIX) or _TMP_MARK in name:
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def download_file(self, key: str, path: str | os.PathLike) -> None:
        src = self._path(key)
        if not src.is_file():
            raise ObjectMissing(f'no object at {str(src)!r}')
        with src.open('rb') as f_in:
            self._atomic_write(Path(path), lambda f_out: shutil.copyfileobj(f_in, f_out))

    def upload_file(self, path: str | os.PathLike, key: str) -> None:
        try:
            f_in = open(path, 'rb')  # noqa: SIM115 - closed below, after the atomic write
        except OSError as e:
            raise StorageError(f'cannot read {str(path)!r} for upload: {e}') from e
        with f_in:
            self._atomic_write(self._path(key), lambda f_out: shutil.copyfileobj(f_in, f_out))

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as e:
            raise StorageError(f'cannot delete {self.url_for(key)!r}: {e}') from e

    def read_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as e:
            raise StorageError(f'cannot read {self.url_for(key)!r}: {e}') from e
        return data, _hash(data)

    def write_if(self, key: str, data: bytes, etag: str | None) -> str:
        path = self._path(key)
        lock_path = path.with_name(path.name + _LOCK_SUFFIX)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StorageError(f'cannot lock {str(path)!r}: {e}') from e
        try:
            # flock is per open file description, so threads of one process exclude each other too
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            _data, current = self.read_with_etag(key)
            if current != etag:
                raise PreconditionFailed(
                    f'{str(path)!r} changed: expected etag {etag!r}, found {current!r}'
                )
            self.write_bytes(key, data)
            return _hash(data)
        finally:
            os.close(lock_fd)  # closing releases the lock


class S3Storage(Storage):
    """``s3://bucket[/prefix]`` through boto3 (path-style addressing for custom endpoints)."""

    def __init__(self, url: str, s3: S3Config, attempts: int = S3_TOTAL_ATTEMPTS) -> None:
        if attempts < 1:
            raise StorageError(f'S3 attempts must be >= 1, got {attempts!r}')
        bucket, self.prefix = split_bucket(url)
        if not _BUCKET_RE.match(bucket):
            raise StorageError(
                f'bad S3 URL {url!r}: bucket {bucket!r} must be 3-63 characters of a-z 0-9 . -'
            )
        self.bucket = bucket
        self.url = join(f'{S3_SCHEME}{bucket}', self.prefix)
        self.endpoint_url = s3.endpoint_url or None
        if self.endpoint_url and not re.match(r'^https?://', self.endpoint_url):
            raise StorageError(
                f'S3_ENDPOINT_URL must include the scheme (http:// or https://), '
                f'got {self.endpoint_url!r}'
            )
        self._s3, self._attempts = s3, attempts
        self._boto_client = None
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:
        return f'S3Storage({self.url!r}, endpoint_url={self.endpoint_url!r})'

    @property
    def _client(self):
        """The boto3 client, made at the first request and reused by every later one (making
        one costs far more than a request): one client per storage object."""
        if self._boto_client is None:
            with self._client_lock:  # the uploader's threads share one store
                if self._boto_client is None:
                    self._boto_client = _make_client(self._s3, self._attempts)
        return self._boto_client

    def _key(self, key: str) -> str:
        return join(self.prefix, _check_key(key)) if self.prefix else _check_key(key)

    def _op(self, operation: str, key: str, **kwargs):
        """Run the boto3 ``operation`` on ``key`` with failures mapped to our errors."""
        call = getattr(self._client, operation)
        return self._guarded(
            operation,
            self.url_for(key),
            lambda: call(Bucket=self.bucket, Key=self._key(key), **kwargs),
        )

    def _get(self, key: str) -> tuple[bytes, str]:
        """``(body, etag)`` of ``key``; the body is read inside the guard, because a connection
        that breaks mid-body fails in ``read()``, long after get_object returned."""

        def fetch() -> tuple[bytes, str]:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            body = response['Body']  # not `with`: its __enter__ gives the raw urllib3 stream
            try:
                return body.read(), response['ETag']
            finally:
                body.close()

        return self._guarded('get_object', self.url_for(key), fetch)

    def _guarded(self, operation: str, target: str, fn):
        """``fn()``; its failures become StorageError naming the URL (never the credentials).

        The one path of every S3 call, streaming reads and s3transfer's file transfers included:
        whatever botocore, boto3, s3transfer, urllib3 or the socket raise on the way is mapped
        here, so callers only ever see StorageError (or its subclasses).
        """
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
        from urllib3.exceptions import HTTPError as URLLib3Error

        try:
            return fn()
        except ClientError as e:
            error = e.response.get('Error', {})
            code = str(error.get('Code', ''))
            status = e.response.get('ResponseMetadata', {}).get('HTTPStatusCode')
            # real S3 answers 409 ConditionalRequestConflict for a concurrent conditional write
            if code in ('PreconditionFailed', 'ConditionalRequestConflict') or status in (
                409,
                412,
            ):
                raise PreconditionFailed(f'{operation} {target!r}: object changed ({code})') from e
            if code in ('NoSuchKey', '404', 'NotFound'):
                raise ObjectMissing(f'no object at {target!r}') from e
            if code == 'NoSuchBucket':
                raise StorageError(f'{operation} {target!r}: no bucket {self.bucket!r}') from e
            message = error.get('Message', '')
            raise StorageError(f'{operation} {target!r} failed: {code} {message}') from e
        except NoCredentialsError as e:
            raise StorageError(
                f'{operation} {target!r}: no S3 credentials (set ACCESS_KEY_ID and '
                'SECRET_ACCESS_KEY, or the AWS variables)'
            ) from e
        except (
            BotoCoreError,
            URLLib3Error,
            http.client.HTTPException,
            ConnectionError,
            TimeoutError,
        ) as e:
            # refused, reset or timed out, or cut off mid-body (after botocore's own tries)
            endpoint = self.endpoint_url or '(AWS default)'
            raise StorageError(
                f'{operation} {target!r}: S3 endpoint {endpoint!r} unreachable or failing: '
                f'{_reason(e)}'
            ) from e
        except (Boto3Error, OSError) as e:
            # s3transfer's file transfers (retries exhausted, an upload's ClientError wrapped),
            # a local file they write or read, or a socket error of no kind above
            raise StorageError(f'{operation} {target!r} failed: {_reason(e)}') from e

    def read_bytes(self, key: str) -> bytes:
        return self._get(key)[0]

    def write_bytes(self, key: str, data: bytes) -> None:
        self._op('put_object', key, Body=data)

    def exists(self, key: str) -> bool:
        try:
            self._op('head_object', key)
        except ObjectMissing:
            return False
        return True

    def list(self, prefix: str = '') -> list[str]:
        root = f'{self.prefix}/' if self.prefix else ''
        paginator = self._client.get_paginator('list_objects_v2')

        def collect() -> list[str]:
            keys = []
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix):
                keys.extend(obj['Key'][len(root) :] for obj in page.get('Contents', []))
            return keys

        return sorted(self._guarded('list', join(self.url, prefix), collect))

    def download_file(self, key: str, path: str | os.PathLike) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._op('download_file', key, Filename=str(path))

    def upload_file(self, path: str | os.PathLike, key: str) -> None:
        if not Path(path).is_file():
            raise StorageError(f'cannot upload {str(path)!r}: no such file')
        self._op('upload_file', key, Filename=str(path))

    def delete(self, key: str) -> None:
        self._op('delete_object', key)

    def read_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        try:
            return self._get(key)
        except ObjectMissing:
            return None, None

    def write_if(self, key: str, data: bytes, etag: str | None) -> str:
        condition = {'IfNoneMatch': '*'} if etag is None else {'IfMatch': etag}
        return self._op('put_object', key, Body=data, **condition)['ETag']


def _reason(error: BaseException) -> str:
    """One line naming the error type (a bare 'Max Retries Exceeded' says little) and, for a
    wrapped one such as s3transfer's, the causes that are the real reason."""
    parts: list[str] = []
    current: BaseException | None = error
    while current is not None and len(parts) < 3:
        parts.append(f'{type(current).__name__}: {" ".join(str(current).split())}')
        current = getattr(current, 'last_exception', None) or current.__cause__
    return ' <- '.join(parts)


def _make_client(s3: S3Config, attempts: int):
    try:
        import boto3
        from botocore.config import Config
    except ImportError as e:
        raise StorageError(
            's3:// URLs need boto3: pip install boto3 (pinned in requirements/robot.txt)'
        ) from e
    config = Config(
        connect_timeout=S3_CONNECT_TIMEOUT_S,
        read_timeout=S3_READ_TIMEOUT_S,
        retries={'mode': 'standard', 'total_max_attempts': attempts},
        # S3-compatible stores differ in virtual-host DNS and in the newer default checksums
        s3={'addressing_style': 'path'} if s3.endpoint_url else None,
        request_checksum_calculation='when_required',
        response_checksum_validation='when_required',
    )
    session = boto3.session.Session()
    credentials = (
        {
            'aws_access_key_id': s3.access_key_id,
            'aws_secret_access_key': s3.secret_access_key,
            'aws_session_token': s3.session_token or None,
        }
        if s3.has_keys
        else {}  # boto3's own chain: AWS variables, config files, instance roles
    )
    return session.client(
        's3',
        endpoint_url=s3.endpoint_url or None,
        region_name=s3.region or session.region_name or 'us-east-1',
        config=config,
        **credentials,
    )
