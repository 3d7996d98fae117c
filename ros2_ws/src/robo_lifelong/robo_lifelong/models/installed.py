"""The robot's one record of which model is current: ``<models_dir>/current.json``.

The bridge (``transfer.model_sync``) is its only writer: it verifies a package once, renames it
to ``<models_dir>/<content_hash>/`` and then replaces this record atomically (temp file, fsync,
rename). The perception node (``models.watch``) only reads it and loads the package it names
without hashing it again. So "current" is whatever the record says, after a restart of either
node too: never the highest version on disk, never a message that may have been missed. A
rollback is the record naming an older package.

The package is found by its content hash under the directory holding the record (not by the
``path`` written for people), so both nodes may see ``models_dir`` at different mount points.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from robo_lifelong.errors import ModelPackageError
from robo_lifelong.models.package import ModelPackage, read_package

CURRENT_FILE = 'current.json'
_HASH_RE = re.compile(r'^[0-9a-f]{64}$')


@dataclass(frozen=True)
class InstalledModel:
    """What ``current.json`` holds: the installed package's content hash and version."""

    content_hash: str
    version: int

    @classmethod
    def for_package(cls, package: ModelPackage) -> InstalledModel:
        return cls(package.content_hash, package.version)

    def package_dir(self, models_dir: str | os.PathLike) -> Path:
        return Path(models_dir) / self.content_hash

    def to_bytes(self, models_dir: str | os.PathLike) -> bytes:
        body = {
            'content_hash': self.content_hash,
            'version': self.version,
            'path': str(self.package_dir(models_dir)),  # for people; readers use the hash
        }
        return json.dumps(body, sort_keys=True).encode('utf-8') + b'\n'


def read_installed(models_dir: str | os.PathLike) -> InstalledModel | None:
    """The record in ``models_dir``; None when there is none (nothing was installed yet).

    :raises ModelPackageError: the record is unreadable or malformed.
    """
    where = Path(models_dir) / CURRENT_FILE
    try:
        data = where.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ModelPackageError(f'{where}: unreadable ({e})') from e
    return parse_installed(data, str(where))


def parse_installed(data: bytes, where: str) -> InstalledModel:
    """The record in ``data``; ModelPackageError naming what is wrong with it."""
    try:
        body = json.loads(data)
    except ValueError as e:
        raise ModelPackageError(f'{where}: not a JSON record ({e})') from e
    try:
        record = InstalledModel(str(body['content_hash']), int(body['version']))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelPackageError(f'{where}: field {e} missing or malformed') from e
    if not _HASH_RE.match(record.content_hash):
        raise ModelPackageError(
            f'{where}: content_hash {record.content_hash!r} is not a sha256 hex digest'
        )
    return record


def open_installed(models_dir: str | os.PathLike, record: InstalledModel) -> ModelPackage:
    """The package ``record`` names, read without hashing (it was verified when installed).

    :raises ModelPackageError: it is missing, its manifest is invalid or names another hash.
    """
    package = read_package(record.package_dir(models_dir))
    if package.content_hash != record.content_hash:
        raise ModelPackageError(
            f'{package.path}: manifest says content_hash {package.content_hash}, '
            f'{CURRENT_FILE} names {record.content_hash}'
        )
    return package
