"""Model packages and deploy pointers in storage: publishing, fetching into a local cache (each
download hashed once), reading and writing pointers, locating the package a URL names
(``DeploySource`` keeps its storages for a poller), and Sedna's pod path rules
(``DATA_PATH_PREFIX``).

The formats themselves (manifest, hashes, pointer body) live in ``robo_lifelong.models.package``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

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
from robo_lifelong.transfer.storage import S3Config, Storage, open_storage, split_url

# ---------------------------------------------------------------------------------------------
# Publishing and fetching through storage (local directories or s3:// URLs)


def publish_package(package: ModelPackage, url: str, s3: S3Config | None = None) -> str:
    """Upload a package directory to ``url``; the manifest goes last, so a reader that finds
    it also finds the model. Returns ``url``."""
    store = open_storage(url, s3)
    store.upload_file(package.model_path, MODEL_FILE)
    if package.weights_path is not None:
        store.upload_file(package.weights_path, WEIGHTS_FILE)
    store.upload_file(package.path / MANIFEST_FILE, MANIFEST_FILE)
    return url


def fetch_package(
    url: str, cache_dir: str | os.PathLike, s3: S3Config | None = None
) -> ModelPackage:
    """The package at ``url`` (local directory or s3:// prefix) as a verified local package;
    remote packages are downloaded into ``cache_dir/<content hash>``."""
    if not url.startswith('s3://'):
        return load_package(url)
    return download_package(open_storage(url, s3), cache_dir)


def read_manifest(store: Storage) -> dict[str, Any]:
    """The manifest of the package in ``store``, read without fetching the model (unverified:
    only to know which package it is)."""
    try:
        manifest = json.loads(store.read_bytes(MANIFEST_FILE))
        str(manifest['content_hash'])
    except (StorageError, ValueError, KeyError, TypeError) as e:
        raise ModelPackageError(f'cannot read {store.url_for(MANIFEST_FILE)}: {e}') from e
    return manifest


def download_package(store: Storage, cache_dir: str | os.PathLike) -> ModelPackage:
    """The package in ``store`` as a local copy in ``cache_dir/<content hash>``, hashed once:
    a download is verified before it is renamed into place, a copy found there is verified as
    it is (a cache directory may hold anything)."""
    manifest = read_manifest(store)
    key = str(manifest['content_hash'])
    local = Path(cache_dir) / (key if key.isalnum() else 'unknown')
    if (local / MANIFEST_FILE).is_file():
        return load_package(local)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix='.fetch-', dir=Path(cache_dir)))
    try:
        store.download_file(MODEL_FILE, tmp / MODEL_FILE)
        if manifest.get('weights'):
            store.download_file(WEIGHTS_FILE, tmp / WEIGHTS_FILE)
        store.download_file(MANIFEST_FILE, tmp / MANIFEST_FILE)
        verified = load_package(tmp)
        # named for what arrived: the cloud may have replaced the package since the first read
        local = Path(cache_dir) / verified.content_hash
        shutil.rmtree(local, ignore_errors=True)
        os.rename(tmp, local)
    except StorageError as e:
        raise ModelPackageError(f'cannot download model package {store.url}: {e}') from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ModelPackage(local, verified.manifest)


def read_pointer(url: str, s3: S3Config | None = None) -> DeployPointer:
    try:
        parent, name = split_url(url)
        data = open_storage(parent, s3).read_bytes(name)
    except StorageError as e:
        raise ModelPackageError(f'cannot read deploy pointer {url}: {e}') from e
    return parse_pointer(data, url)


def write_pointer(url: str, pointer: DeployPointer, s3: S3Config | None = None) -> None:
    parent, name = split_url(url)
    open_storage(parent, s3).write_bytes(name, pointer.to_bytes())


def resolve_local(path: str, data_path_prefix: str = '') -> str:
    """A host path as seen inside a Sedna pod: reported URLs have ``DATA_PATH_PREFIX`` stripped
    (PROTOCOL.md §4.2), so a path that is missing as written is looked up under the prefix."""
    if path.startswith('s3://') or os.path.exists(path) or not data_path_prefix:
        return path
    prefixed = data_path_prefix.rstrip('/') + '/' + path.lstrip('/')
    return prefixed if os.path.exists(prefixed) else path


def strip_data_prefix(path: str, data_path_prefix: str) -> str:
    """The host path of a path inside a Sedna pod (inverse of ``resolve_local``)."""
    prefix = data_path_prefix.rstrip('/')
    if prefix and (path == prefix or path.startswith(prefix + '/')):
        return path[len(prefix) :] or '/'
    return path


class DeploySource:
    """A deploy pointer's URL or a package URL that is read again and again (the bridge's poll).

    The storages it needs are opened at their first use and kept (the pointer's directory, the
    URL itself, the newest package's), so a poll makes requests, never new S3 clients.
    """

    def __init__(self, url: str, s3: S3Config | None = None, data_path_prefix: str = '') -> None:
        self.url = url
        self.s3 = s3
        self.data_path_prefix = data_path_prefix
        self._stores: dict[str, Storage] = {}
        self._package: tuple[str, Storage] | None = None

    def _store(self, url: str) -> Storage:
        store = self._stores.get(url)
        if store is None:
            store = self._stores[url] = open_storage(url, self.s3)
        return store

    def package_store(self, package_url: str) -> Storage:
        """The storage of the package at ``package_url``; only the newest package's is kept."""
        if self._package is None or self._package[0] != package_url:
            self._package = (package_url, open_storage(package_url, self.s3))
        return self._package[1]

    def locate(self) -> tuple[str, DeployPointer | None]:
        """``(package URL, pointer)``: the URL itself (pointer None) if it is a package, else
        the package its deploy pointer names."""
        url = resolve_local(self.url, self.data_path_prefix)
        if self._is_package(url):
            return url, None
        try:
            parent, name = split_url(url)
            data = self._store(parent).read_bytes(name)
        except StorageError as e:
            raise ModelPackageError(f'cannot read deploy pointer {url}: {e}') from e
        pointer = parse_pointer(data, url)
        return resolve_local(pointer.package_url, self.data_path_prefix), pointer

    def _is_package(self, url: str) -> bool:
        if not url.startswith('s3://'):
            return os.path.isdir(url)
        try:
            return self._store(url).exists(MANIFEST_FILE)
        except StorageError as e:
            raise ModelPackageError(f'cannot read model URL {url}: {e}') from e


def locate_package(
    url: str, s3: S3Config | None = None, data_path_prefix: str = ''
) -> tuple[str, DeployPointer | None]:
    """``(package URL, pointer)`` for a package URL (pointer None) or a deploy pointer's URL."""
    return DeploySource(url, s3, data_path_prefix).locate()


def open_located(
    package_url: str,
    pointer: DeployPointer | None,
    cache_dir: str | os.PathLike,
    s3: S3Config | None = None,
) -> ModelPackage:
    """The verified package ``locate_package`` found, checked against the pointer naming it."""
    package = fetch_package(package_url, cache_dir, s3)
    if pointer is not None and package.content_hash != pointer.content_hash:
        raise ModelPackageError(
            f'deploy pointer names content_hash {pointer.content_hash}, '
            f'package {package_url} has {package.content_hash}'
        )
    return package


def open_model(
    url: str,
    cache_dir: str | os.PathLike,
    s3: S3Config | None = None,
    data_path_prefix: str = '',
) -> ModelPackage:
    """A verified package from a package directory/prefix or a deploy pointer file's URL."""
    package_url, pointer = locate_package(url, s3, data_path_prefix)
    return open_located(package_url, pointer, cache_dir, s3)
