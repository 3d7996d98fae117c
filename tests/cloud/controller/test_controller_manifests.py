"""Loading and validating the Sedna manifests against the CRD schemas."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from robo_lifelong.errors import ConfigError
from robo_lifelong_cloud.controller.manifests import (
    CRD_FILES,
    load_manifests,
    schema_for,
    schema_from_crd,
    with_overrides,
)
from tests.cloud.controller.conftest import MANIFESTS, REPO

SHARED_CRDS = REPO.parent / 'shared' / 'sedna' / 'crds'


def _docs() -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in MANIFESTS.glob('*.yaml')}


def _write(tmp_path: Path, docs: dict[str, dict]) -> Path:
    for stem, doc in docs.items():
        (tmp_path / f'{stem}.yaml').write_text(yaml.safe_dump(doc))
    return tmp_path


def test_repo_manifests_load() -> None:
    manifests = load_manifests([MANIFESTS])
    assert manifests.job_name == 'robo-demo' and manifests.namespace == 'default'
    spec = manifests.job['spec']
    assert spec['trainSpec']['template']['spec']['containers'][0]['args'] == ['train']
    assert spec['evalSpec']['template']['spec']['containers'][0]['args'] == ['eval']
    assert manifests.dataset['spec']['url'].startswith('/')
    assert 'replace-me' not in repr(manifests.secrets['s3-cred'])


@pytest.mark.skipif(not SHARED_CRDS.is_dir(), reason='Sedna CRD files (../shared) not present')
@pytest.mark.parametrize('kind', sorted(CRD_FILES))
def test_packaged_schemas_are_the_crd_schemas(kind: str) -> None:
    crd = yaml.load(
        (SHARED_CRDS / CRD_FILES[kind][0]).read_text(),
        Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader),
    )
    assert schema_for(kind) == schema_from_crd(crd)


def test_schema_from_crd_keeps_fields_named_description() -> None:
    crd = {
        'spec': {
            'versions': [
                {
                    'name': 'v1alpha1',
                    'schema': {
                        'openAPIV3Schema': {
                            'description': 'prose',
                            'x-kubernetes-preserve-unknown-fields': True,
                            'properties': {'description': {'type': 'string'}},
                        }
                    },
                }
            ]
        }
    }
    assert schema_from_crd(crd) == {'properties': {'description': {'type': 'string'}}}


@pytest.mark.parametrize(
    ('stem', 'edit', 'expected'),
    [
        (
            'lifelonglearningjob',
            lambda d: d['spec']['dataset'].update(trainProb='0.8'),
            r'spec\.dataset\.trainProb: .0\.8. is not of type .number.',
        ),
        (
            'lifelonglearningjob',
            lambda d: d['spec'].pop('outputDir'),
            r'spec: .outputDir. is a required property',
        ),
        (
            'lifelonglearningjob',
            lambda d: d['spec']['trainSpec']['trigger']['condition'].pop('metric'),
            r'spec\.trainSpec\.trigger\.condition: .metric. is a required property',
        ),
        (
            'lifelonglearningjob',
            lambda d: d['spec']['trainSpec']['template']['spec']['containers'][0].update(args='x'),
            r'spec\.trainSpec\.template\.spec\.containers\[0\]\.args: .x. is not of type .array.',
        ),
        (
            'dataset',
            lambda d: d['spec'].pop('nodeName'),
            r'dataset\.yaml document 1: Dataset .*\n  spec: .nodeName. is a required property',
        ),
        ('dataset', lambda d: d.update(apiVersion='sedna.io/v1'), r'apiVersion'),
        ('dataset', lambda d: d['spec'].update(url='relative/data.txt'), r'must be absolute'),
        ('dataset', lambda d: d['spec'].update(format='json'), r'spec\.format'),
        ('dataset', lambda d: d['metadata'].update(name='other'), r'names no Dataset'),
        (
            'lifelonglearningjob',
            lambda d: d['spec'].update(credentialName='nope'),
            r"credentialName 'nope': no such Secret",
        ),
        (
            'lifelonglearningjob',
            lambda d: d['spec'].update(outputDir='gs://b/o'),
            r'only s3:// or a host path',
        ),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, stem: str, edit, expected: str) -> None:
    docs = _docs()
    edit(docs[stem])
    with pytest.raises(ConfigError, match=expected) as info:
        load_manifests([_write(tmp_path, docs)])
    assert str(tmp_path) in str(info.value)


def test_missing_and_duplicate_objects(tmp_path: Path) -> None:
    docs = _docs()
    del docs['dataset']
    with pytest.raises(ConfigError, match='expected exactly one Dataset, found 0'):
        load_manifests([_write(tmp_path, docs)])
    multi = tmp_path / 'multi.yaml'
    multi.write_text(yaml.safe_dump_all([_docs()['dataset']] * 2))
    with pytest.raises(ConfigError, match='exactly one Dataset, found 2'):
        load_manifests([MANIFESTS / 'lifelonglearningjob.yaml', multi])
    with pytest.raises(ConfigError, match='no such file'):
        load_manifests([tmp_path / 'nope.yaml'])


def test_secret_data_and_s3_environment(tmp_path: Path) -> None:
    docs = _docs()
    secret = docs['secret']
    secret.pop('stringData')
    secret['data'] = {
        'ACCESS_KEY_ID': base64.b64encode(b'ak').decode(),
        'SECRET_ACCESS_KEY': base64.b64encode(b'sk').decode(),
    }
    manifests = load_manifests([_write(tmp_path, docs)])
    assert manifests.secrets['s3-cred'].s3_config().to_environ() == {
        'S3_ENDPOINT_URL': 'http://127.0.0.1:8333',
        'ACCESS_KEY_ID': 'ak',
        'SECRET_ACCESS_KEY': 'sk',
    }
    del secret['metadata']['annotations']['s3-usehttps']
    manifests = load_manifests([_write(tmp_path, docs)])
    assert manifests.secrets['s3-cred'].s3_config().endpoint_url.startswith('https://')
    del secret['metadata']['annotations']['s3-endpoint']
    assert load_manifests([_write(tmp_path, docs)]).secrets['s3-cred'].s3_config() is None


def test_overrides_are_checked() -> None:
    manifests = with_overrides(load_manifests([MANIFESTS]), '/d/data.txt', 's3://b/out')
    assert manifests.dataset['spec']['url'] == '/d/data.txt'
    assert manifests.job['spec']['outputDir'] == 's3://b/out'
    with pytest.raises(ConfigError, match='must be absolute'):
        with_overrides(manifests, output_dir='out')


def test_worker_env_overrides_replace_or_add_in_both_workers() -> None:
    manifests = load_manifests([MANIFESTS])
    changed = with_overrides(manifests, worker_env={'epochs': '2', 'image_width': '212'})
    for stage in ('trainSpec', 'evalSpec'):
        (container,) = changed.job['spec'][stage]['template']['spec']['containers']
        env = [(e['name'], e['value']) for e in container['env']]
        names = [name for name, _ in env]
        assert len(names) == len(set(names)), env  # replaced, not doubled
        assert ('epochs', '2') in env and ('image_width', '212') in env
    before = manifests.job['spec']['trainSpec']['template']['spec']['containers'][0]['env']
    assert ('epochs', '2') not in [(e['name'], e['value']) for e in before]  # a copy
    assert with_overrides(manifests).job == manifests.job
