"""Models down: poll the deploy pointer, fetch a new package, verify it, install it atomically.

The pointer URL is Sedna's ``<job outputDir>/deploy/index.pkl`` (which our eval worker fills with
a JSON deploy pointer, never a pickle: see ``model_package``) or the inference worker's
``MODEL_URLS``; a URL naming a package directly works too. A new package is downloaded into
``<models_dir>/.staging/`` and verified with ``load_package`` (files, schema, sha256 of every
file, content hash, and the hash the pointer names) before one ``rename`` moves it to
``<models_dir>/<content_hash>/``; so a partial download or a bad package is never where the
perception node could be told to load it. ``<models_dir>/current.json`` records the installed
package, so a restarted robot does not announce it again. A rejected package is not downloaded
again until the pointer changes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from robo_lifelong.errors import ModelPackageError, StorageError
from robo_lifelong.models.package import MANIFEST_FILE, ModelPackage, load_package
from robo_lifelong.transfer.model_store import fetch_package, locate_package
from robo_lifelong.transfer.storage import LocalStorage, open_storage

log = logging.getLogger(__name__)

STAGING = '.staging'
CURRENT = 'current.json'


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
        environ: Mapping[str, str] | None = None,
        data_path_prefix: str = '',
    ) -> None:
        self.pointer_url = pointer_url
        self.models_dir = Path(models_dir)
        self.environ = environ
        self.data_path_prefix = data_path_prefix
        self.models_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.models_dir / STAGING, ignore_errors=True)  # a crash's leftovers
        self.current = self._read_current()
        self._rejected: tuple[str, str] | None = None  # (package URL, content hash)

    def _read_current(self) -> ModelPackage | None:
        try:
            record = json.loads((self.models_dir / CURRENT).read_text())
            return load_package(self.models_dir / record['content_hash'])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, ModelPackageError) as e:
            log.warning('ignoring %s: %s', self.models_dir / CURRENT, e)
            return None

    def poll(self) -> ModelPackage | None:
        """Check the pointer once; the newly installed package, or None if nothing is new.

        :raises ModelPackageError: the pointer or the package it names is unreadable or bad
            (the package is not installed; it is not fetched again until the pointer changes).
        """
        package_url, pointer = locate_package(
            self.pointer_url, self.environ, self.data_path_prefix
        )
        wanted = pointer.content_hash if pointer is not None else self._manifest_hash(package_url)
        if self.current is not None and self.current.content_hash == wanted:
            return None
        if self._rejected == (package_url, wanted):
            return None
        try:
            package = self._stage(package_url)
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
        self.current = installed
        log.info(
            'installed model v%d (%s) at %s',
            installed.version,
            installed.content_hash[:12],
            installed.path,
        )
        return installed

    def _manifest_hash(self, package_url: str) -> str:
        """The content hash a package's manifest declares (read without fetching the model)."""
        try:
            manifest = json.loads(
                open_storage(package_url, self.environ).read_bytes(MANIFEST_FILE)
            )
            return str(manifest['content_hash'])
        except (StorageError, ValueError, KeyError, TypeError) as e:
            raise ModelPackageError(f'cannot read {package_url}/{MANIFEST_FILE}: {e}') from e

    def _stage(self, package_url: str) -> ModelPackage:
        """A verified copy of the package under the staging directory."""
        staging = self.models_dir / STAGING
        staging.mkdir(parents=True, exist_ok=True)
        try:
            if package_url.startswith('s3://'):
                # downloads into a temporary directory, verifies, renames to staging/<hash>
                return fetch_package(package_url, staging, self.environ)
            # local packages are copied too: the cloud may replace its directory while the
            # robot still runs this one
            copy = Path(tempfile.mkdtemp(prefix='copy-', dir=staging)) / 'package'
            shutil.copytree(package_url, copy)
            return load_package(copy)
        except (OSError, StorageError) as e:
            raise ModelPackageError(f'cannot fetch model package {package_url}: {e}') from e

    def _install(self, staged: ModelPackage) -> ModelPackage:
        final = self.models_dir / staged.content_hash
        if not final.exists():  # else installed before: an older pointer named it again
            try:
                os.rename(staged.path, final)
            except OSError as e:
                raise ModelPackageError(f'cannot install {staged.path} as {final}: {e}') from e
        package = load_package(final)
        record = {
            'content_hash': package.content_hash,
            'version': package.version,
            'path': str(package.path),
        }
        LocalStorage(self.models_dir).write_bytes(CURRENT, json.dumps(record).encode())
        return package
