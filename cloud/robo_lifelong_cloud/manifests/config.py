"""The validated manifest settings (``ManifestConfig``) resolved from flags and environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from robo_lifelong.errors import ConfigError
from robo_lifelong.transfer.storage import parent_of
from robo_lifelong_cloud.manifests.settings import missing_settings, raw_values
from robo_lifelong_cloud.sedna_env import UserEnv

_DNS_SUBDOMAIN = re.compile(r'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')


@dataclass(frozen=True)
class ManifestConfig:
    """Validated values of every setting (derived defaults filled in)."""

    s3_endpoint: str  # host[:port], no scheme (what Sedna's s3-endpoint annotation wants)
    s3_usehttps: bool
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    data_url: str
    output_dir: str  # OUTPUT/job_name, as in the seed
    job_name: str
    namespace: str
    dataset_name: str
    secret_name: str
    cloud_image: str
    edge_image: str
    data_node: str
    train_node: str
    eval_node: str
    infer_node: str
    robot_id: str
    storage_url: str
    train_prob: float
    sample_threshold: float
    worker_env: UserEnv  # train_ratio, epochs, num_class, operator, model_threshold


def _s3_endpoint(raw: str, usehttps: str) -> tuple[str, bool]:
    if usehttps not in ('', '0', '1'):
        raise ConfigError(f'S3_USEHTTPS={usehttps!r}: must be 0 or 1')
    if '://' not in raw:
        if '/' in raw:
            raise ConfigError(f'S3 endpoint {raw!r}: give host[:port] or an http(s):// URL')
        return raw, usehttps != '0'
    parts = urlsplit(raw)
    if parts.scheme not in ('http', 'https') or not parts.netloc or parts.path not in ('', '/'):
        raise ConfigError(f'S3 endpoint {raw!r}: give host[:port] or an http(s):// URL')
    if usehttps and (usehttps == '1') != (parts.scheme == 'https'):
        raise ConfigError(f'S3 endpoint {raw!r} contradicts S3_USEHTTPS={usehttps!r}')
    return parts.netloc, parts.scheme == 'https'


def _s3_url(raw: str, what: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme != 's3' or not parts.netloc or not parts.path.strip('/'):
        raise ConfigError(f'{what} {raw!r}: must be s3://bucket/path (the Secret is for S3)')
    return raw.rstrip('/')


def _name(raw: str, what: str) -> str:
    if len(raw) > 253 or not _DNS_SUBDOMAIN.fullmatch(raw):
        raise ConfigError(f'{what} {raw!r}: must be a Kubernetes name (lower-case a-z, 0-9, -, .)')
    return raw


def _number(raw: str, what: str, low: float, high: float) -> float:
    try:
        value = float(raw)
    except ValueError as e:
        raise ConfigError(f'{what}={raw!r}: not a number') from e
    if not low <= value <= high:
        raise ConfigError(f'{what}={raw!r}: must be in [{low}, {high}]')
    return value


def config_from(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> ManifestConfig:
    """Resolve flags and env into a validated config; ConfigError names the offending setting."""
    missing = missing_settings(flags, environ)
    if missing:
        raise ConfigError('missing required settings: ' + ', '.join(missing))
    v = raw_values(flags, environ)
    prefix = v['s3_prefix'].rstrip('/')
    data_url = _s3_url(v['data_url'] or f'{prefix}/sedna_data/data.txt', 'data URL')
    output = _s3_url(v['output'] or f'{prefix}/lifelonglearningjob/output', 'output')
    endpoint, usehttps = _s3_endpoint(v['s3_endpoint'], v['s3_usehttps'])
    job_name = _name(v['job_name'], 'job name')
    train_node = v['train_node'] or v['data_node']
    # The worker's own env parser validates what the worker will read.
    worker_env = UserEnv.from_environ(
        {
            'train_ratio': v['train_ratio'],
            'epochs': v['epochs'],
            'min_iterations': v['min_iterations'],
            'num_class': v['num_class'],
            'operator': v['eval_operator'],
            'model_threshold': v['model_threshold'],
        }
    )
    return ManifestConfig(
        s3_endpoint=endpoint,
        s3_usehttps=usehttps,
        access_key_id=v['access_key_id'],
        secret_access_key=v['secret_access_key'],
        data_url=data_url,
        output_dir=f'{output}/{job_name}',
        job_name=job_name,
        namespace=_name(v['namespace'], 'namespace') if v['namespace'] else '',
        dataset_name=_name(v['dataset_name'], 'dataset name'),
        secret_name=_name(v['secret_name'], 'secret name'),
        cloud_image=v['cloud_image'],
        edge_image=v['edge_image'],
        data_node=v['data_node'],
        train_node=train_node,
        eval_node=v['eval_node'] or train_node,
        infer_node=v['infer_node'],
        robot_id=v['robot_id'] or v['infer_node'],
        storage_url=v['storage_url'] or parent_of(data_url),
        train_prob=_number(v['train_prob'], 'train_prob', 0.0, 1.0),
        sample_threshold=_number(v['sample_threshold'], 'sample_threshold', 0.0, float('inf')),
        worker_env=worker_env,
    )
