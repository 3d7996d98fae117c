"""The model a candidate is judged against, carried inside the candidate's own train output.

Why: the eval worker must compare the candidate with the model that is deployed, but a Sedna eval
pod sees only its mounts (PROTOCOL.md §3.1-3.2; GM mounts the *parent directory* of each host
path): ``dirname`` of each ``MODEL_URLS`` entry (the train output ``O/train/<r>/``), the
directories of ``TEST_DATASET_URL`` and ``ORIGINAL_DATASET_URL``, and ``dirname(OUTPUT_URL)`` =
``O/eval/``. ``O/deploy/`` and the other rounds' outputs are not there. The train pod mounts
``dirname(OUTPUT_URL)`` = ``O/train/``, which holds ``CLOUD_KB_INDEX`` (the previous round's train
output) and every earlier train output. So the train worker, which can see the lineage, puts the
reference model into the candidate's output, and the eval worker judges with that alone.

Layout of a train output ``T`` (the train worker's ``OUTPUT_URL``; a host path or ``s3://``):

``T/index.json``    deploy pointer to ``T/package`` (what the train worker reports)
``T/package/``      the candidate package (model.onnx, manifest.json, weights.safetensors)
``T/reference/``    byte copy of the reference package, verified by content hash (absent when
                    the candidate has no reference)
``T/verdict.json``  written by the eval worker that judged the candidate: which model it reported
                    for deployment (the one train workers of later rounds then know is deployed)

The candidate manifest records the reference in ``training.reference`` =
``{version, content_hash, package_url, copy}`` (``package_url``: where the reference was
published originally, as reported to the LC, i.e. what a rejection re-deploys; ``copy``: the
directory next to the candidate package holding the copy), or null when there is nothing to
protect. The record is covered by the candidate's content hash, so a missing, swapped or corrupt
copy is detected. ``training.parent`` = ``{version, content_hash}`` names the parent.

Which model is the reference (train worker, from what ``O/train/`` shows): the parent
(``CLOUD_KB_INDEX``) if the eval worker reported the parent for deployment (its ``verdict.json``
says so); otherwise the parent's own reference, because a parent that was rejected, refused or
never judged did not replace what was deployed (a ``failed`` eval report deploys nothing, a
rejection re-deploys the reference); null for an initial candidate, or when the parent had none
(then nothing is deployed). A parent from an older train worker (no ``reference`` in its
manifest) that was never judged is taken as the reference itself, with a warning.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robo_lifelong.errors import ModelPackageError, StorageError
from robo_lifelong.models import package as mp
from robo_lifelong.transfer import model_store
from robo_lifelong.transfer.storage import S3Config, join, open_storage, parent_of

log = logging.getLogger(__name__)

REFERENCE_DIR = 'reference'
VERDICT_FILE = 'verdict.json'
VERDICT_KIND = 'robo-lifelong-eval-verdict'


@dataclass(frozen=True)
class ReferenceRecord:
    """``training.reference`` of a candidate manifest."""

    version: int
    content_hash: str
    package_url: str  # as originally published (host path without DATA_PATH_PREFIX, or s3://)
    copy: str = REFERENCE_DIR  # next to the candidate package

    def to_json(self) -> dict[str, Any]:
        return {
            'version': self.version,
            'content_hash': self.content_hash,
            'package_url': self.package_url,
            'copy': self.copy,
        }

    @property
    def pointer(self) -> mp.DeployPointer:
        """The pointer that deploys the reference where it was deployed from."""
        return mp.DeployPointer(self.package_url, self.version, self.content_hash)


@dataclass(frozen=True)
class Reference:
    """A verified reference package and where it came from."""

    package: mp.ModelPackage
    record: ReferenceRecord
    url: str  # where this copy was read from


_MISSING = object()


def parse_record(manifest: Mapping[str, Any], where: str) -> ReferenceRecord | None | object:
    """``training.reference`` of ``manifest``: a record, None (nothing to protect) or
    ``_MISSING`` (a manifest of an older train worker). ModelPackageError if malformed."""
    raw = manifest.get('training', {}).get('reference', _MISSING)
    if raw is _MISSING or raw is None:
        return raw
    try:
        if not isinstance(raw, dict):
            raise TypeError('not an object')
        copy = str(raw.get('copy', REFERENCE_DIR))
        if not copy or '/' in copy or copy in ('.', '..'):
            raise ValueError(f'copy {copy!r} must be a directory name')
        return ReferenceRecord(
            int(raw['version']), str(raw['content_hash']), str(raw['package_url']), copy
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ModelPackageError(f'{where}: field training/reference malformed ({e})') from e


def _fetch(url: str, expected: str, cache: Path, s3: S3Config | None) -> mp.ModelPackage:
    package = model_store.fetch_package(url, cache, s3)
    if package.content_hash != expected:
        raise ModelPackageError(
            f'{url} holds v{package.version} with content_hash {package.content_hash}, '
            f'expected {expected}'
        )
    return package


# ---------------------------------------------------------------------------------------------
# Verdicts (eval writes, train reads)


def write_verdict(
    candidate_dir: str,
    candidate: mp.ModelPackage,
    reported: mp.DeployPointer | None,
    decision_url: str,
    created: str,
    s3: S3Config | None = None,
) -> str:
    """Record next to the candidate which model the eval worker reported for deployment
    (None: nothing). Returns the verdict's URL."""
    body = {
        'kind': VERDICT_KIND,
        'schema_version': mp.SCHEMA_VERSION,
        'created': created,
        'candidate': {'version': candidate.version, 'content_hash': candidate.content_hash},
        'deploy': reported is not None and reported.content_hash == candidate.content_hash,
        'reported': None
        if reported is None
        else {
            'package_url': reported.package_url,
            'version': reported.version,
            'content_hash': reported.content_hash,
        },
        'decision': decision_url,
    }
    data = json.dumps(body, indent=1, sort_keys=True, allow_nan=False).encode() + b'\n'
    open_storage(candidate_dir, s3).write_bytes(VERDICT_FILE, data)
    return join(candidate_dir, VERDICT_FILE)


def read_verdict(
    candidate_dir: str, candidate: mp.ModelPackage, s3: S3Config | None = None
) -> dict[str, Any] | None:
    """The verdict on ``candidate`` in ``candidate_dir``, or None if it was never judged (a
    verdict about another package there is ignored, with a warning)."""
    where = join(candidate_dir, VERDICT_FILE)
    try:
        store = open_storage(candidate_dir, s3)
        if not store.exists(VERDICT_FILE):
            return None
        body = json.loads(store.read_bytes(VERDICT_FILE))
    except (StorageError, ValueError) as e:
        raise ModelPackageError(f'{where}: unreadable eval verdict ({e})') from e
    if not isinstance(body, dict) or body.get('kind') != VERDICT_KIND:
        raise ModelPackageError(f'{where}: not an eval verdict (kind must be {VERDICT_KIND!r})')
    judged = (body.get('candidate') or {}).get('content_hash')
    if judged != candidate.content_hash:
        log.warning('%s judged %s, not %s: ignored', where, judged, candidate.content_hash)
        return None
    reported = body.get('reported')
    if reported is not None and not (
        isinstance(reported, dict)
        and isinstance(reported.get('content_hash'), str)
        and isinstance(reported.get('package_url'), str)
    ):
        raise ModelPackageError(f'{where}: field reported/content_hash missing')
    return body


# ---------------------------------------------------------------------------------------------
# Train side


def choose_reference(
    parent_url: str,
    parent: mp.ModelPackage,
    cache: Path,
    s3: S3Config | None = None,
    data_path_prefix: str = '',
) -> Reference | None:
    """The model deployed while the candidate trained from ``parent`` is judged (module doc).

    ``parent_url``: ``CLOUD_KB_INDEX`` (a pointer or a package URL). Reads only the parent's
    train output (pointer, package, ``verdict.json``) and the reference it names.
    """
    package_url, _ = model_store.locate_package(parent_url, s3, data_path_prefix)
    parent_dir = parent_of(package_url)
    verdict = read_verdict(parent_dir, parent, s3)
    reported = None if verdict is None else verdict['reported']
    record = parse_record(parent.manifest, str(parent.path / mp.MANIFEST_FILE))
    published = model_store.strip_data_prefix(package_url, data_path_prefix)
    itself = Reference(
        parent, ReferenceRecord(parent.version, parent.content_hash, published), package_url
    )
    if reported is not None and reported['content_hash'] == parent.content_hash:
        log.info('parent v%d was deployed: it is the reference', parent.version)
        return itself
    if record is _MISSING:  # a parent of an older train worker
        if verdict is None:
            log.warning(
                'parent v%d records no reference and was never judged: judging against it',
                parent.version,
            )
            return itself
        if parent.manifest['parent_version'] is None and reported is None:
            return None  # a rejected initial model: nothing is deployed
        raise ModelPackageError(
            f'parent v{parent.version} was not deployed and records no reference: '
            'cannot tell which model is deployed'
        )
    if reported is not None and (
        record is None or reported['content_hash'] != record.content_hash
    ):
        raise ModelPackageError(
            f'{join(parent_dir, VERDICT_FILE)}: reported {reported["content_hash"]}, which is '
            f'neither the parent v{parent.version} nor its recorded reference'
        )
    # rejected, refused (nothing reported) or never judged: what was deployed stays deployed
    log.info(
        'parent v%d was %s: its reference %s stays deployed',
        parent.version,
        'never judged' if verdict is None else 'not deployed',
        'none' if record is None else f'v{record.version}',
    )
    if record is None:
        return None
    assert isinstance(record, ReferenceRecord)
    # where it was published (O/train/<k>/package: inside the train pod's mount), else the
    # parent's copy of it
    original = model_store.resolve_local(record.package_url, data_path_prefix)
    copy = join(parent_dir, record.copy)
    errors = []
    for url in (original, copy):
        try:
            return Reference(_fetch(url, record.content_hash, cache, s3), record, url)
        except ModelPackageError as e:
            errors.append(str(e))
    raise ModelPackageError(
        f'the reference v{record.version} ({record.content_hash[:12]}) of parent '
        f'v{parent.version} is unreadable: {"; ".join(errors)}'
    )


def training_fields(parent: mp.ModelPackage | None, reference: Reference | None) -> dict:
    """The ``training`` entries of a candidate manifest naming its parent and reference."""
    return {
        'parent': None
        if parent is None
        else {'version': parent.version, 'content_hash': parent.content_hash},
        'reference': None if reference is None else reference.record.to_json(),
    }


def publish_reference(
    reference: Reference,
    output_url: str,
    cache: Path,
    s3: S3Config | None = None,
) -> str:
    """Copy the reference package to ``OUTPUT_URL/reference`` and verify the copy."""
    url = join(output_url, reference.record.copy)
    model_store.publish_package(reference.package, url, s3)
    _fetch(url, reference.record.content_hash, cache / 'verify', s3)
    log.info('reference v%d copied to %s', reference.package.version, url)
    return url


# ---------------------------------------------------------------------------------------------
# Eval side


def open_reference(
    candidate: mp.ModelPackage,
    candidate_package_url: str,
    cache: Path,
    s3: S3Config | None = None,
) -> tuple[Reference | None, str | None]:
    """``(reference, None)``, ``(None, None)`` when there is nothing to protect, or
    ``(None, why)`` when the candidate must not be judged: it has a parent but no usable copy of
    its reference. Reads only the candidate's train output (next to its package)."""
    where = f'{candidate_package_url}/{mp.MANIFEST_FILE}'
    try:
        record = parse_record(candidate.manifest, where)
    except ModelPackageError as e:
        return None, str(e)
    if record is _MISSING:
        if candidate.manifest['parent_version'] is None:
            return None, None  # an initial candidate of an older train worker
        return None, (
            f'candidate v{candidate.version} (parent v{candidate.manifest["parent_version"]}) '
            'records no reference model (made by an older train worker): nothing to judge '
            'its old tasks against'
        )
    if record is None:
        return None, None
    assert isinstance(record, ReferenceRecord)
    url = join(parent_of(candidate_package_url), record.copy)
    try:
        package = _fetch(url, record.content_hash, cache, s3)
    except ModelPackageError as e:
        return None, (
            f'the copy of reference v{record.version} ({record.content_hash[:12]}) next to '
            f'candidate v{candidate.version} is missing or corrupt: {e}'
        )
    return Reference(package, record, url), None
