"""Model packages and deploy pointers in storage: publishing, fetching into a local cache,
reading and writing pointers, and Sedna's pod path rules (``DATA_PATH_PREFIX``).

The formats themselves (manifest, hashes, pointer body) live in ``robo_lifelong.models.package``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from robo_lifelong.errors import ModelPackageError, StorageError
from robo_lifelong.models.package import (
    MANIFEST_FILE,
    MODEL_FILE,
    WEIGHTS_FILE,
    DeployPointer,
    ModelPackage,
    load_package,
    parse_pointer,
)
from robo_lifelong.transfer.storage import open_storage

# ---------------------------------------------------------------------------------------------
# Publishing and fetching through storage (local directories or s3:// URLs)


def publish_package(
    package: ModelPackage, url: str, environ: Mapping[str, str] | None = None
) -> str:
    """Upload a package directory to ``url``; the manifest goes last, so a reader that finds
    it also finds the model. Returns ``url``."""
    store = open_storage(url, environ)
    store.upload_file(package.model_path, MODEL_FILE)
    if package.weights_path is not None:
        store.upload_file(package.weights_path, WEIGHTS_FILE)
    store.upload_file(package.path / MANIFEST_FILE, MANIFEST_FILE)
    return url


def fetch_package(
    url: str, cache_dir: str | os.PathLike, environ: Mapping[str, str] | None = None
) -> ModelPackage:
    """The package at ``url`` (local directory or s3:// prefix) as a verified local package;
    remote packages are downloaded into ``cache_dir/<content hash>``."""
    if not url.startswith('s3://'):
        return load_package(url)
    store = open_storage(url, environ)
    try:
        manifest = json.loads(store.read_bytes(MANIFEST_FILE))
        key = str(manifest['content_hash'])
    except (StorageError, ValueError, KeyError, TypeError) as e:
        raise ModelPackageError(f'cannot read {url}/{MANIFEST_FILE}: {e}') from e
    local = Path(cache_dir) / (key if key.isalnum() else 'unknown')
    if not (local / MANIFEST_FILE).is_file():
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix='.fetch-', dir=Path(cache_dir)))
        try:
            store.download_file(MODEL_FILE, tmp / MODEL_FILE)
            if manifest.get('weights'):
                store.download_file(WEIGHTS_FILE, tmp / WEIGHTS_FILE)
            store.download_file(MANIFEST_FILE, tmp / MANIFEST_FILE)
            load_package(tmp)
            shutil.rmtree(local, ignore_errors=True)
            os.rename(tmp, local)
        except StorageError as e:
            raise ModelPackageError(f'cannot download model package {url}: {e}') from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return load_package(local)


def _split(url: str) -> tuple[str, str]:
    parent, name = str(PurePosixPath(url).parent), PurePosixPath(url).name
    if url.startswith('s3://'):
        parent = 's3://' + str(PurePosixPath(url[len('s3://') :]).parent)
    return parent, name


def read_pointer(url: str, environ: Mapping[str, str] | None = None) -> DeployPointer:
    parent, name = _split(url)
    try:
        data = open_storage(parent, environ).read_bytes(name)
    except StorageError as e:
        raise ModelPackageError(f'cannot read deploy pointer {url}: {e}') from e
    return parse_pointer(data, url)


def write_pointer(
    url: str, pointer: DeployPointer, environ: Mapping[str, str] | None = None
) -> None:
    parent, name = _split(url)
    open_storage(parent, environ).write_bytes(name, pointer.to_bytes())


def resolve_local(path: str, data_path_prefix: str = '') -> str:
    """A host path as seen inside a Sedna pod: reported URLs have ``DATA_PATH_PREFIX`` stripped
    (PROTOCOL.md §4.2), so a path that is missing as written is looked up under the prefix."""
    if path.startswith('s3://') or os.path.exists(path) or not data_path_prefix:
        return path
    prefixed = data_path_prefix.rstrip('/') + '/' + path.lstrip('/')
    return prefixed if os.path.exists(prefixed) else path


def _is_package(url: str, environ: Mapping[str, str] | None) -> bool:
    if not url.startswith('s3://'):
        return os.path.isdir(url)
    try:
        return open_storage(url, environ).exists(MANIFEST_FILE)
    except StorageError as e:
        raise ModelPackageError(f'cannot read model URL {url}: {e}') from e


def strip_data_prefix(path: str, data_path_prefix: str) -> str:
    """The host path of a path inside a Sedna pod (inverse of ``resolve_local``)."""
    prefix = data_path_prefix.rstrip('/')
    if prefix and (path == prefix or path.startswith(prefix + '/')):
        return path[len(prefix) :] or '/'
    return path


def locate_package(
    url: str, environ: Mapping[str, str] | None = None, data_path_prefix: str = ''
) -> tuple[str, DeployPointer | None]:
    """``(package URL, pointer)`` for a package URL (pointer None) or a deploy pointer's URL."""
    url = resolve_local(url, data_path_prefix)
    if _is_package(url, environ):
        return url, None
    pointer = read_pointer(url, environ)
    return resolve_local(pointer.package_url, data_path_prefix), pointer


def open_model(
    url: str,
    cache_dir: str | os.PathLike,
    environ: Mapping[str, str] | None = None,
    data_path_prefix: str = '',
) -> ModelPackage:
    """A verified package from a package directory/prefix or a deploy pointer file's URL."""
    package_url, pointer = locate_package(url, environ, data_path_prefix)
    package = fetch_package(package_url, cache_dir, environ)
    if pointer is not None and package.content_hash != pointer.content_hash:
        raise ModelPackageError(
            f'{url}: pointer names content_hash {pointer.content_hash}, '
            f'package {pointer.package_url} has {package.content_hash}'
        )
    return package
