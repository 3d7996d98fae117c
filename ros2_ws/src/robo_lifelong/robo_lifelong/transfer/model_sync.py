"""Models down: poll the deploy pointer, fetch a new package, verify it once, make it current.

The pointer URL is Sedna's ``<job outputDir>/deploy/index.pkl`` (which our eval worker fills with
a JSON deploy pointer, never a pickle: see ``models.package``) or the inference worker's
``MODEL_URLS``; a URL naming a package directly works too. A new package is downloaded into
``<models_dir>/.staging/`` and verified there with ``load_package`` (files, schema, sha256 of
every file, content hash, and the hash the pointer names): the one hash pass of its installation
on the robot. One ``rename`` moves it to ``<models_dir>/<content_hash>/``, then
``<models_dir>/current.json`` (``models.installed``) is replaced atomically: that record is the
single channel to the perception node, which trusts it, and what both nodes go by after a
restart. A partial download or a bad package is never where the record could name it.

"Current" is whatever the pointer names, older versions included: an admin's rollback rewrites
the pointer to an earlier package, and the next poll makes it current again (from its directory
if it is still installed, verified again, else downloaded). A rejected package is not downloaded
again until the pointer changes.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from robo_lifelong.errors import ModelPackageError, StorageError
from robo_lifelong.models.installed import (
    CURRENT_FILE,
    InstalledModel,
    open_installed,
    read_installed,
)
from robo_lifelong.models.package import MANIFEST_FILE, ModelPackage, load_package
from robo_lifelong.transfer.model_store import DeploySource, download_package, read_manifest
from robo_lifelong.transfer.storage import LocalStorage, S3Config

log = logging.getLogger(__name__)

STAGING = '.staging'


def first_model_url(model_urls: str) -> str:
    """The first URL of a ``MODEL_URLS`` value (Sedna joins several with ``;``)."""
    urls = [u.strip() for u in model_urls.split(';') if u.strip()]
    if len(urls) > 1:
        log.warning('MODEL_URLS names %d URLs; using the first', len(urls))
    return urls[0] if urls else ''


class ModelSync:
    """Installs the package a deploy pointer names into ``models_dir``; not thread-safe (one
    poller)."""

    def __init__(
        self,
        pointer_url: str,
        models_dir: str | os.PathLike,
        s3: S3Config | None = None,
        data_path_prefix: str = '',
    ) -> None:
        self.pointer_url = pointer_url
        self.models_dir = Path(models_dir)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.models_dir / STAGING, ignore_errors=True)  # a crash's leftovers
        self._source = DeploySource(pointer_url, s3, data_path_prefix)
        self._record = LocalStorage(self.models_dir)
        self.current = self._read_current()
        self._rejected: tuple[str, str] | None = None  # (package URL, content hash)

    def _read_current(self) -> ModelPackage | None:
        """The package ``current.json`` names, trusted: this bridge verified it when it wrote
        the record."""
        try:
            record = read_installed(self.models_dir)
            return None if record is None else open_installed(self.models_dir, record)
        except ModelPackageError as e:
            log.warning('ignoring %s: %s', self.models_dir / CURRENT_FILE, e)
            return None

    def poll(self) -> ModelPackage | None:
        """Check the pointer once; the package it newly made current, or None if nothing changed.

        :raises ModelPackageError: the pointer or the package it names is unreadable or bad
            (the package is not installed; it is not fetched again until the pointer changes).
        """
        package_url, pointer = self._source.locate()
        wanted = (
            pointer.content_hash
            if pointer is not None
            else str(read_manifest(self._source.package_store(package_url))['content_hash'])
        )
        if self.current is not None and self.current.content_hash == wanted:
            return None
        if self._rejected == (package_url, wanted):
            return None
        try:
            package = self._reinstalled(wanted) or self._stage(package_url)
            if package.content_hash != wanted:
                raise ModelPackageError(
                    f'{self.pointer_url}: pointer names content_hash {wanted}, '
                    f'package {package_url} has {package.content_hash}'
                )
            installed = self._install(package)
        except ModelPackageError as e:
            # a failed download is retried at the next poll; a bad package only once it changes
            if not isinstance(e.__cause__, (OSError, StorageError)):
                self._rejected = (package_url, wanted)
            raise
        finally:
            shutil.rmtree(self.models_dir / STAGING, ignore_errors=True)
        older = self.current is not None and installed.version < self.current.version
        self.current = installed
        log.info(
            '%s model v%d (%s) at %s',
            'rolled back to' if older else 'installed',
            installed.version,
            installed.content_hash[:12],
            installed.path,
        )
        return installed

    def _reinstalled(self, content_hash: str) -> ModelPackage | None:
        """The package with ``content_hash`` if an earlier installation left it here (a
        rollback), verified again; None (and the copy removed) if it is not there intact."""
        final = self.models_dir / content_hash
        if not (final / MANIFEST_FILE).is_file():
            return None
        try:
            return load_package(final)
        except ModelPackageError as e:
            log.warning('installed copy %s is damaged (%s): fetching it again', final, e)
            shutil.rmtree(final, ignore_errors=True)
            return None

    def _stage(self, package_url: str) -> ModelPackage:
        """A verified copy of the package under the staging directory (hashed once)."""
        staging = self.models_dir / STAGING
        staging.mkdir(parents=True, exist_ok=True)
        try:
            if package_url.startswith('s3://'):
                # downloads into a temporary directory, verifies, renames to staging/<hash>
                return download_package(self._source.package_store(package_url), staging)
            # local packages are copied too: the cloud may replace its directory while the
            # robot still runs this one
            copy = Path(tempfile.mkdtemp(prefix='copy-', dir=staging)) / 'package'
            shutil.copytree(package_url, copy)
            return load_package(copy)
        except (OSError, StorageError) as e:
            raise ModelPackageError(f'cannot fetch model package {package_url}: {e}') from e

    def _install(self, package: ModelPackage) -> ModelPackage:
        """Move a verified package to ``<models_dir>/<content_hash>`` (unless it is there
        already) and make it current; no hash is taken again."""
        final = self.models_dir / package.content_hash
        if package.path != final:
            try:
                shutil.rmtree(final, ignore_errors=True)  # an incomplete copy (_reinstalled)
                os.rename(package.path, final)
            except OSError as e:
                raise ModelPackageError(f'cannot install {package.path} as {final}: {e}') from e
        installed = ModelPackage(final, package.manifest)
        record = InstalledModel.for_package(installed)
        try:
            self._record.write_bytes(CURRENT_FILE, record.to_bytes(self.models_dir))
        except StorageError as e:
            raise ModelPackageError(f'cannot record {final} as current: {e}') from e
        return installed
