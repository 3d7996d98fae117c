"""``robo-lifelong-job rollback --to VERSION``: deploy again a model this job deployed before.

The job's deploy history is its ``Deploy/Ready`` conditions in the state directory: each names
the eval output's pointer (``O/eval/<round>/index.json``) whose bytes the LC copied to
``O/deploy/index.pkl``. A rollback makes that copy again from the newest deployment of VERSION,
atomically, once it has checked that the package the pointer names is still there with the
content hash it names. The robot's bridge follows at its next poll (it takes whatever the pointer
names, older versions too) and records it in its ``current.json``, so every node runs VERSION
after a restart as well. A version the job never deployed is refused, naming the ones it did.

The controller stays the only writer of conditions: a rollback leaves the job's status alone,
and the job's next ``Deploy`` stage writes the pointer again as usual. S3 settings come from the
environment (``S3_ENDPOINT_URL``, ``ACCESS_KEY_ID``, ``SECRET_ACCESS_KEY`` or the AWS variables).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from robo_lifelong.errors import ConfigError, ModelPackageError, StorageError
from robo_lifelong.models.package import DeployPointer, parse_pointer
from robo_lifelong.transfer.model_store import read_manifest
from robo_lifelong.transfer.storage import S3Config, join, open_storage, split_url
from robo_lifelong_cloud.controller.conditions import ConditionType, Stage, model_urls, parse_data
from robo_lifelong_cloud.controller.runner import DEPLOY_KEY

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    """One ``Deploy/Ready`` of the job: the pointer the LC copied and the bytes it copied."""

    url: str  # the eval output's pointer
    pointer: DeployPointer
    data: bytes


def deployments(
    conditions: Sequence[Mapping[str, Any]], s3: S3Config | None = None
) -> list[Deployment]:
    """The job's deployments, oldest first; one whose pointer is unreadable now is left out
    (with a warning): it could not be deployed again anyway."""
    out = []
    for condition in conditions:
        if (condition['stage'], condition['type']) != (Stage.DEPLOY, ConditionType.READY):
            continue
        urls = model_urls((parse_data(condition) or {}).get('input') or {})
        if not urls or not urls[0]:
            continue
        try:
            parent, name = split_url(urls[0])
            data = open_storage(parent, s3).read_bytes(name)
            out.append(Deployment(urls[0], parse_pointer(data, urls[0]), data))
        except (StorageError, ModelPackageError) as e:
            log.warning('deployment %s unreadable, left out: %s', urls[0], e)
    return out


def rollback(job: Mapping[str, Any], version: int, s3: S3Config | None = None) -> Deployment:
    """Point ``<outputDir>/deploy/index.pkl`` at the newest deployment of ``version`` again.

    :raises ConfigError: the job never deployed ``version`` (the message names the versions
        it did), or that package is gone or changed.
    """
    history = deployments((job.get('status') or {}).get('conditions') or [], s3)
    chosen = next((d for d in reversed(history) if d.pointer.version == version), None)
    if chosen is None:
        deployed = sorted({d.pointer.version for d in history})
        raise ConfigError(
            f'version {version} was never deployed by job {job["metadata"]["name"]!r}; '
            f'deployed versions: {", ".join(map(str, deployed)) or "none"}'
        )
    package_url = chosen.pointer.package_url
    try:
        found = str(read_manifest(open_storage(package_url, s3))['content_hash'])
    except (StorageError, ModelPackageError) as e:
        raise ConfigError(f'cannot roll back to v{version}: its package is unreadable: {e}') from e
    if found != chosen.pointer.content_hash:
        raise ConfigError(
            f'cannot roll back to v{version}: {package_url} now holds content_hash {found}, '
            f'the deployment named {chosen.pointer.content_hash}'
        )
    output_dir = job['spec']['outputDir'].rstrip('/')
    try:
        open_storage(output_dir, s3).write_bytes(DEPLOY_KEY, chosen.data)
    except StorageError as e:
        raise ConfigError(f'cannot write {join(output_dir, DEPLOY_KEY)}: {e}') from e
    log.info(
        'rolled back: %s names v%d (%s) from %s',
        join(output_dir, DEPLOY_KEY),
        version,
        chosen.pointer.content_hash[:12],
        chosen.url,
    )
    return chosen
