"""Load the Sedna YAML a user would ``kubectl apply`` and validate it like the API server would.

``load_manifests(paths)`` reads every document of the given files (or of every ``*.yaml`` in a
directory), keeps one ``Dataset``, one ``LifelongLearningJob`` and the ``Secret``s, and validates
the two Sedna kinds against the ``openAPIV3Schema`` of their CRDs (PROTOCOL.md §1.1/§1.2). Errors
are ConfigErrors naming the file, the document and the field path.

The schemas come from ``crds/*.schema.json`` next to this module: the CRD schemas of
``../shared/sedna/crds/`` reduced by ``schema_from_crd`` (``x-kubernetes-*`` keys and prose
``description``s removed; jsonschema ignores both anyway). To refresh them after a CRD update::

    python -c 'from robo_lifelong_cloud.controller.manifests import write_schemas; \
write_schemas("../shared/sedna/crds")'
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from robo_lifelong.errors import ConfigError
from robo_lifelong.transfer.storage import S3Config

SCHEMA_DIR = Path(__file__).with_name('crds')
# kind -> (CRD file in Sedna's build/crds, packaged schema file)
CRD_FILES = {
    'Dataset': ('sedna.io_datasets.yaml', 'dataset.schema.json'),
    'LifelongLearningJob': (
        'sedna.io_lifelonglearningjobs.yaml',
        'lifelonglearningjob.schema.json',
    ),
}
API_VERSION = 'sedna.io/v1alpha1'


def _strip(node: Any, in_properties: bool = False) -> Any:
    """Schema without ``x-kubernetes-*`` and ``description`` keywords (property names kept)."""
    if isinstance(node, dict):
        if in_properties:  # keys are field names here, any of them may be called 'description'
            return {k: _strip(v) for k, v in node.items()}
        return {
            k: _strip(v, in_properties=(k == 'properties'))
            for k, v in node.items()
            if k != 'description' and not k.startswith('x-kubernetes-')
        }
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def schema_from_crd(crd: dict[str, Any], version: str = 'v1alpha1') -> dict[str, Any]:
    """The reduced ``openAPIV3Schema`` of ``version`` in a CustomResourceDefinition document."""
    for entry in crd.get('spec', {}).get('versions', []):
        if entry.get('name') == version:
            return _strip(entry['schema']['openAPIV3Schema'])
    raise ConfigError(f'CRD {crd.get("metadata", {}).get("name")!r} has no version {version!r}')


def write_schemas(crd_dir: str | Path) -> None:
    """Regenerate the packaged schema files from Sedna's CRD YAML files in ``crd_dir``."""
    for crd_name, schema_name in CRD_FILES.values():
        with open(Path(crd_dir) / crd_name, encoding='utf-8') as f:
            crd = yaml.load(f, Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader))
        text = json.dumps(schema_from_crd(crd), sort_keys=True, separators=(',', ':'))
        (SCHEMA_DIR / schema_name).write_text(text + '\n', encoding='utf-8')


@cache
def schema_for(kind: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / CRD_FILES[kind][1]).read_text(encoding='utf-8'))


def _field(path: Sequence[Any]) -> str:
    out = ''
    for part in path:
        out += f'[{part}]' if isinstance(part, int) else (f'.{part}' if out else str(part))
    return out or '(document)'


def validate(kind: str, doc: dict[str, Any], where: str) -> None:
    """ConfigError listing every schema violation of ``doc`` with its field path."""
    validator = jsonschema.Draft7Validator(schema_for(kind))
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f'  {_field(e.absolute_path)}: {e.message}' for e in errors]
        raise ConfigError(f'{where}: {kind} does not match its CRD schema:\n' + '\n'.join(lines))


@dataclass(frozen=True)
class Secret:
    """A Kubernetes Secret as Sedna reads it for S3 (PROTOCOL.md §3.4); values kept out of repr."""

    name: str
    annotations: dict[str, str]
    data: dict[str, str]

    def __repr__(self) -> str:
        keys = list(self.data)
        return f'Secret(name={self.name!r}, annotations={self.annotations!r}, keys={keys})'

    def s3_config(self) -> S3Config | None:
        """The endpoint (``s3-endpoint`` with the scheme ``s3-usehttps`` picks) and keys GM
        injects; None without an endpoint (GM then injects nothing either)."""
        endpoint = self.annotations.get('s3-endpoint', '')
        if not endpoint:
            return None
        scheme = 'http' if self.annotations.get('s3-usehttps') == '0' else 'https'
        return S3Config(
            endpoint_url=f'{scheme}://{endpoint}',
            access_key_id=self.data.get('ACCESS_KEY_ID', ''),
            secret_access_key=self.data.get('SECRET_ACCESS_KEY', ''),
        )


def _secret(doc: dict[str, Any], where: str) -> Secret:
    meta = doc.get('metadata') or {}
    name = meta.get('name')
    if not isinstance(name, str) or not name:
        raise ConfigError(f'{where}: Secret needs metadata.name')
    data: dict[str, str] = {}
    for key, value in (doc.get('data') or {}).items():
        try:
            data[key] = base64.b64decode(str(value), validate=True).decode('utf-8')
        except ValueError as e:
            raise ConfigError(f'{where}: Secret {name!r} data.{key} is not base64') from e
    data.update({k: str(v) for k, v in (doc.get('stringData') or {}).items()})
    annotations = {k: str(v) for k, v in (meta.get('annotations') or {}).items()}
    return Secret(name, annotations, data)


@dataclass(frozen=True)
class Manifests:
    """The validated objects of one job; ``source`` names the files they came from."""

    dataset: dict[str, Any]
    job: dict[str, Any]
    secrets: dict[str, Secret]
    source: str

    @property
    def job_name(self) -> str:
        return self.job['metadata']['name']

    @property
    def namespace(self) -> str:
        return self.job['metadata'].get('namespace') or 'default'

    def secret(self, name: str | None) -> Secret | None:
        return self.secrets.get(name) if name else None


def _files(paths: Sequence[str | Path]) -> list[Path]:
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix in ('.yaml', '.yml')))
        elif path.is_file():
            out.append(path)
        else:
            raise ConfigError(f'manifest {str(path)!r}: no such file or directory')
    return out


def _documents(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding='utf-8')))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f'{path}: cannot read YAML: {e}') from e
    out = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ConfigError(f'{path} document {i + 1}: not a mapping')
        out.append((f'{path} document {i + 1}', doc))
    return out


def _check_sedna(kind: str, doc: dict[str, Any], where: str) -> None:
    if doc.get('apiVersion') != API_VERSION:
        raise ConfigError(f'{where}: apiVersion of a {kind} must be {API_VERSION!r}')
    validate(kind, doc, where)
    name = (doc.get('metadata') or {}).get('name')
    if not isinstance(name, str) or not name:
        raise ConfigError(f'{where}: metadata.name: required for a {kind}')


def _one(found: list[tuple[str, dict[str, Any]]], kind: str, names: str) -> tuple[str, dict]:
    if len(found) != 1:
        where = ', '.join(w for w, _ in found) or names
        raise ConfigError(f'{where}: expected exactly one {kind}, found {len(found)}')
    return found[0]


def load_manifests(paths: Sequence[str | Path]) -> Manifests:
    """Read and validate the Secret(s), the Dataset and the LifelongLearningJob in ``paths``."""
    files = _files(paths)
    names = ', '.join(map(str, files)) or '(no manifest files)'
    by_kind: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for path in files:
        for where, doc in _documents(path):
            by_kind.setdefault(str(doc.get('kind')), []).append((where, doc))
    secrets = {}
    for where, doc in by_kind.get('Secret', []):
        secret = _secret(doc, where)
        secrets[secret.name] = secret
    for kind in CRD_FILES:
        for where, doc in by_kind.get(kind, []):
            _check_sedna(kind, doc, where)
    ds_where, dataset = _one(by_kind.get('Dataset', []), 'Dataset', names)
    job_where, job = _one(by_kind.get('LifelongLearningJob', []), 'LifelongLearningJob', names)
    _check_references(dataset, ds_where, job, job_where, secrets)
    return Manifests(dataset, job, secrets, names)


def _check_references(
    dataset: dict, ds_where: str, job: dict, job_where: str, secrets: dict[str, Secret]
) -> None:
    """What GM/LC would fail on later, reported now with the field that causes it."""
    spec = job['spec']
    if spec['dataset']['name'] != dataset['metadata']['name']:
        raise ConfigError(
            f'{job_where}: spec.dataset.name {spec["dataset"]["name"]!r} names no Dataset '
            f'(found {dataset["metadata"]["name"]!r})'
        )
    if not 0.0 <= spec['dataset']['trainProb'] <= 1.0:
        raise ConfigError(f'{job_where}: spec.dataset.trainProb must be in [0, 1]')
    if dataset['spec']['format'].lower() not in ('txt', 'csv'):
        raise ConfigError(f'{ds_where}: spec.format must be txt or csv (LC reads no other)')
    for where, field, url in (
        (ds_where, 'spec.url', dataset['spec']['url']),
        (job_where, 'spec.outputDir', spec['outputDir']),
    ):
        if '://' in url and not url.startswith('s3://'):
            raise ConfigError(f'{where}: {field} {url!r}: only s3:// or a host path')
        if '://' not in url and not url.startswith('/'):
            raise ConfigError(f'{where}: {field} {url!r}: a host path must be absolute')
    for where, obj in ((ds_where, dataset), (job_where, job)):
        name = obj['spec'].get('credentialName')
        if name and name not in secrets:
            raise ConfigError(f'{where}: spec.credentialName {name!r}: no such Secret given')
    for stage in ('trainSpec', 'evalSpec', 'deploySpec'):
        containers = spec[stage]['template'].get('spec', {}).get('containers') or []
        if not containers:
            raise ConfigError(f'{job_where}: spec.{stage}.template.spec.containers: none given')


def with_overrides(
    manifests: Manifests,
    dataset_url: str | None = None,
    output_dir: str | None = None,
    worker_env: Mapping[str, str] | None = None,
) -> Manifests:
    """A copy with the Dataset's ``spec.url`` and/or the job's ``spec.outputDir`` replaced and
    re-checked (the local default manifests point at fixed host paths); ``worker_env`` sets
    these variables in the train and eval workers' containers (added or replaced)."""
    dataset = copy.deepcopy(manifests.dataset)
    job = copy.deepcopy(manifests.job)
    if dataset_url:
        dataset['spec']['url'] = dataset_url
    if output_dir:
        job['spec']['outputDir'] = output_dir
    for stage in ('trainSpec', 'evalSpec') if worker_env else ():
        for container in job['spec'][stage]['template'].get('spec', {}).get('containers') or []:
            env = [e for e in container.get('env', []) if e['name'] not in worker_env]
            env += [{'name': k, 'value': v} for k, v in worker_env.items()]
            container['env'] = env
    where = f'{manifests.source} (with command-line overrides)'
    _check_references(dataset, where, job, where, manifests.secrets)
    return Manifests(dataset, job, manifests.secrets, manifests.source)
