"""Model packages (``model.onnx`` + ``manifest.json``) and the deploy pointer that names one.

A package is a directory; ``manifest.json`` follows ``schemas/model_manifest.schema.json``. It
records ``model_sha256`` (of model.onnx) and ``content_hash`` = sha256 of the manifest's canonical
JSON without ``content_hash`` (sorted keys, no spaces), so the hash covers both files and a robot
can tell two packages apart by it. Cloud-made packages also carry ``weights.safetensors`` (the
training weights an incremental update starts from; hashed in the manifest, ignored by robots).
Nothing here is ever unpickled.

Deploy pointer and Sedna's ``index.pkl`` quirk: Sedna's LocalController copies the bytes at the
eval report's ``models[0].url`` to ``<outputDir>/deploy/index.pkl`` and GM hands that path to the
inference worker as ``MODEL_URLS``; the name is fixed whatever the file holds. Our workers report
a small JSON pointer (package URL, version, content hash) instead of a pickle, so that file is JSON
despite its name. Sedna's own KB server and inference worker would fail to unpickle it; we use
neither. The LC's host-path copy does not truncate its destination (PROTOCOL.md §8.3 item 3), so a
pointer is read as the first JSON value of the file and trailing stale bytes are ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from robo_lifelong.errors import ModelPackageError
from robo_lifelong.models.unseen import UnseenCalibration

log = logging.getLogger(__name__)

# 2: the graph outputs full-resolution labels (``outputs.labels``)
SCHEMA_VERSION = 2
MODEL_FILE = 'model.onnx'
MANIFEST_FILE = 'manifest.json'
WEIGHTS_FILE = 'weights.safetensors'  # optional: training weights for incremental updates
POINTER_KIND = 'robo-lifelong-deploy-pointer'
_SCHEMA_PATH = Path(__file__).parent.parent / 'schemas' / 'model_manifest.schema.json'
_HASHED_FIELDS = ('content_hash', 'model_sha256')


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(_SCHEMA_PATH.read_text()))


def canonical_json(value: Any) -> bytes:
    """The byte form hashes are taken over: sorted keys, no whitespace, finite numbers only."""
    return json.dumps(
        value, sort_keys=True, separators=(',', ':'), ensure_ascii=True, allow_nan=False
    ).encode('ascii')


def content_hash(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != 'content_hash'}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def validate_manifest(manifest: Any, where: str = MANIFEST_FILE) -> None:
    """ModelPackageError naming the first schema violation (field path and reason)."""
    error = jsonschema.exceptions.best_match(_validator().iter_errors(manifest))
    if error is not None:
        field = '/'.join(str(p) for p in error.absolute_path) or '(top level)'
        raise ModelPackageError(f'{where}: field {field}: {error.message}')
    channels = manifest['input']['channels']
    for key in ('mean', 'std'):
        if len(manifest['input'][key]) != channels:
            raise ModelPackageError(
                f'{where}: field input/{key}: {len(manifest["input"][key])} values '
                f'for {channels} channels'
            )
    ids = [c['id'] for c in manifest['classes']]
    if ids != list(range(len(ids))):
        raise ModelPackageError(f'{where}: field classes: ids must be 0..{len(ids) - 1} in order')


@dataclass(frozen=True)
class ModelPackage:
    path: Path
    manifest: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def version(self) -> int:
        return int(self.manifest['version'])

    @property
    def content_hash(self) -> str:
        return str(self.manifest['content_hash'])

    @property
    def weights_path(self) -> Path | None:
        return None if self.manifest['weights'] is None else self.path / WEIGHTS_FILE

    @property
    def num_classes(self) -> int:
        return len(self.manifest['classes'])

    @property
    def known_tasks(self) -> tuple[str, ...]:
        return tuple(self.manifest['known_tasks'])

    def unseen_calibration(self) -> UnseenCalibration | None:
        raw = self.manifest['unseen']
        if raw is None:
            return None
        try:
            return UnseenCalibration.from_json(raw)
        except ValueError as e:  # ConfigError
            raise ModelPackageError(f'{self.path / MANIFEST_FILE}: field unseen: {e}') from e


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def seal_manifest(
    onnx_bytes: bytes, manifest: Mapping[str, Any], weights: bytes | None = None
) -> dict[str, Any]:
    """``manifest`` with ``model_sha256``, the weights' sha256 and ``content_hash`` filled in,
    validated. ``manifest['weights']`` must be None or hold the weights' ``architecture``."""
    sealed = {k: v for k, v in manifest.items() if k not in _HASHED_FIELDS}
    sealed['model_sha256'] = hashlib.sha256(onnx_bytes).hexdigest()
    if weights is None:
        sealed['weights'] = None
    else:
        architecture = (manifest.get('weights') or {}).get('architecture', {})
        sha = hashlib.sha256(weights).hexdigest()
        sealed['weights'] = {'file': WEIGHTS_FILE, 'sha256': sha, 'architecture': architecture}
    sealed['content_hash'] = content_hash(sealed)
    validate_manifest(sealed)
    return sealed


def write_package(
    directory: str | os.PathLike,
    onnx_bytes: bytes,
    manifest: Mapping[str, Any],
    weights: bytes | None = None,
) -> ModelPackage:
    """Write a package atomically: the files go to a temporary sibling directory that is then
    renamed into place (an existing package there is replaced whole, never mixed)."""
    target = Path(directory)
    sealed = seal_manifest(onnx_bytes, manifest, weights)
    files = [(MODEL_FILE, onnx_bytes), (MANIFEST_FILE, _manifest_bytes(sealed))]
    if weights is not None:
        files.append((WEIGHTS_FILE, weights))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{target.name}.tmp-', dir=target.parent))
    try:
        for name, data in files:
            with open(tmp / name, 'wb') as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        old = None
        if target.exists():
            old = target.with_name(f'.{target.name}.old-{uuid.uuid4().hex[:8]}')
            os.rename(target, old)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    log.info(
        'wrote model package v%d (%s) to %s',
        sealed['version'],
        sealed['content_hash'][:12],
        target,
    )
    return ModelPackage(target, sealed)


def _manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    return json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False).encode('utf-8') + b'\n'


def read_package(directory: str | os.PathLike) -> ModelPackage:
    """Read a package whose files were verified when it was installed: files present, schema
    valid, no hashes taken (the robot's bridge verifies each package once, ``load_package``)."""
    path = Path(directory)
    if not path.is_dir():
        what = 'not a directory' if path.exists() else 'the directory does not exist'
        raise ModelPackageError(f'model package {path}: {what}')
    for name in (MANIFEST_FILE, MODEL_FILE):
        if not (path / name).is_file():
            raise ModelPackageError(f'model package {path}: missing file {name}')
    where = str(path / MANIFEST_FILE)
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text('utf-8'))
    except (UnicodeDecodeError, ValueError) as e:
        raise ModelPackageError(f'{where}: not valid JSON ({e})') from e
    validate_manifest(manifest, where)
    return ModelPackage(path, manifest)


def load_package(directory: str | os.PathLike) -> ModelPackage:
    """Read and verify a package directory: files present, schema valid, hashes match."""
    package = read_package(directory)
    path, manifest = package.path, package.manifest
    where = str(path / MANIFEST_FILE)
    actual = _sha256_file(path / MODEL_FILE)
    if actual != manifest['model_sha256']:
        raise ModelPackageError(
            f'{path / MODEL_FILE}: sha256 mismatch: manifest expects '
            f'{manifest["model_sha256"]}, file has {actual}'
        )
    if manifest['weights'] is not None:
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise ModelPackageError(f'model package {path}: missing file {WEIGHTS_FILE}')
        actual = _sha256_file(weights)
        if actual != manifest['weights']['sha256']:
            raise ModelPackageError(
                f'{weights}: sha256 mismatch: manifest expects '
                f'{manifest["weights"]["sha256"]}, file has {actual}'
            )
    actual = content_hash(manifest)
    if actual != manifest['content_hash']:
        raise ModelPackageError(
            f'{where}: content_hash mismatch: manifest says {manifest["content_hash"]}, '
            f'its content hashes to {actual}'
        )
    return package


# ---------------------------------------------------------------------------------------------
# Deploy pointer


@dataclass(frozen=True)
class DeployPointer:
    package_url: str
    version: int
    content_hash: str

    def to_bytes(self) -> bytes:
        body = {
            'kind': POINTER_KIND,
            'schema_version': SCHEMA_VERSION,
            'package_url': self.package_url,
            'version': self.version,
            'content_hash': self.content_hash,
        }
        return json.dumps(body, indent=1, sort_keys=True).encode('utf-8') + b'\n'

    @classmethod
    def for_package(cls, package: ModelPackage, package_url: str) -> DeployPointer:
        return cls(package_url, package.version, package.content_hash)


def parse_pointer(data: bytes, where: str) -> DeployPointer:
    """The pointer in ``data``: its first JSON value (stale trailing bytes are ignored)."""
    try:
        body, _ = json.JSONDecoder().raw_decode(data.decode('utf-8', 'replace').lstrip())
    except ValueError as e:
        raise ModelPackageError(f'{where}: not a JSON deploy pointer ({e})') from e
    if not isinstance(body, dict) or body.get('kind') != POINTER_KIND:
        raise ModelPackageError(f'{where}: not a deploy pointer (kind must be {POINTER_KIND!r})')
    try:
        pointer = DeployPointer(
            str(body['package_url']), int(body['version']), str(body['content_hash'])
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ModelPackageError(f'{where}: deploy pointer field {e} missing or malformed') from e
    return pointer
