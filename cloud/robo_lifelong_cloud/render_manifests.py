"""Render the Sedna manifests for one robot: S3 Secret, Dataset and LifelongLearningJob.

``robo-lifelong-manifests --out DIR`` writes three files for ``kubectl apply -f DIR`` (numbered so
that kubectl creates the Secret first). Every setting comes from a flag or, failing that, from the
environment variable of Sedna's robot example (``S3_ENDPOINT``, ``S3_PREFIX``, ``DATA_NODE`` ...).
The objects are dicts dumped with PyYAML, so no value can change the structure of the YAML.
The S3 keys are read only from the environment (a flag would leave them in shell history and in
``ps``) and are written only into the Secret file, which is created mode 0600.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from robo_lifelong.errors import ConfigError
from robo_lifelong_cloud.sedna_env import UserEnv

PROG = 'robo-lifelong-manifests'
SEDNA_API = 'sedna.io/v1alpha1'
SECRET_FILE = '00-secret.yaml'
DATASET_FILE = '10-dataset.yaml'
JOB_FILE = '20-lifelonglearningjob.yaml'

# The cloud image's ENTRYPOINT is robo-lifelong-worker; these args select the worker.
TRAIN_ARGS = ('train',)
EVAL_ARGS = ('eval',)
# The edge image's default command, plus launch arguments that Kubernetes fills in from the
# container's env (`$(VAR)` in args), so the robot id and storage URL stay visible as env.
EDGE_COMMAND = ('ros2', 'launch', 'robo_lifelong', 'robot.launch.py')
EDGE_LAUNCH_ARGS = {'robot_id': 'ROBOT_ID', 'storage_url': 'STORAGE_URL'}

# LC ignores checkPeriodSeconds (fixed 10 s tick, PROTOCOL.md §8.3 item 4); kept as in the seed.
CHECK_PERIOD_SECONDS = 30
TIMER = {'start': '00:00', 'end': '24:00'}
# Resources of the seed's train/eval workers; the robot's pod only requests, because a CPU
# limit throttles the perception loop in bursts.
CLOUD_RESOURCES = {
    'limits': {'cpu': '6', 'memory': '6Gi'},
    'requests': {'cpu': '3', 'memory': '3Gi'},
}
EDGE_RESOURCES = {'requests': {'cpu': '2', 'memory': '1Gi'}}
# torch's DataLoader workers (train) and Fast DDS's shared-memory segments (edge, 32 MiB per
# participant) live in /dev/shm, which Kubernetes caps at 64 MiB unless a memory volume is mounted.
TRAIN_SHM = '128Mi'
EDGE_SHM = '512Mi'

# YAML 1.1 readers take an unquoted 24:00 for the base-60 integer 1440; HH:MM is always quoted.
_CLOCK = re.compile(r'\d+:\d+')
_DNS_SUBDOMAIN = re.compile(r'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')


@dataclass(frozen=True)
class Setting:
    """One input: its ``--flag``, else the first non-blank env variable, else the default.

    ``default=None`` means required; ``''`` means derived from other settings when blank.
    """

    key: str
    envs: tuple[str, ...]
    help: str
    default: str | None = None
    env_only: bool = False

    @property
    def flag(self) -> str:
        return '--' + self.key.replace('_', '-')

    def label(self) -> str:
        names = ' or '.join(f'${name}' for name in self.envs)
        return names if self.env_only else f'{self.flag} (or {names})'


_USER_DEFAULTS = UserEnv()
SETTINGS: tuple[Setting, ...] = (
    Setting('s3_endpoint', ('S3_ENDPOINT',), 'S3 host[:port]; an http(s):// URL also sets TLS'),
    Setting('s3_usehttps', ('S3_USEHTTPS',), '1 = https (default), 0 = http', default=''),
    Setting('access_key_id', ('ACCESS_KEY_ID',), 'S3 access key', env_only=True),
    Setting('secret_access_key', ('SECRET_ACCESS_KEY',), 'S3 secret key', env_only=True),
    Setting(
        's3_prefix',
        ('S3_PREFIX', 's3_prefix'),
        's3://bucket/prefix; default root of --data-url and --output',
        default='',
    ),
    Setting('data_url', ('DATA_URL', 'data_url'), 'default S3_PREFIX/sedna_data/data.txt', ''),
    Setting('output', ('OUTPUT',), 'default S3_PREFIX/lifelonglearningjob/output', default=''),
    Setting('job_name', ('JOB_NAME', 'job_name'), 'LifelongLearningJob name', 'robo-demo'),
    Setting('namespace', ('NAMESPACE',), 'namespace of all three objects', default=''),
    Setting('dataset_name', ('DATASET_NAME',), 'Dataset name', default='lifelong-dataset-robo'),
    Setting('secret_name', ('SECRET_NAME',), 'S3 Secret name', default='robo-lifelong-s3'),
    Setting('cloud_image', ('CLOUD_IMAGE', 'cloud_image'), 'train/eval image'),
    Setting('edge_image', ('EDGE_IMAGE', 'edge_image'), 'robot (inference) image'),
    Setting('data_node', ('DATA_NODE',), 'node whose LC watches the dataset'),
    Setting('train_node', ('TRAIN_NODE',), 'default DATA_NODE', default=''),
    Setting('eval_node', ('EVAL_NODE',), 'default TRAIN_NODE', default=''),
    Setting('infer_node', ('INFER_NODE',), 'the robot: node of the inference pod'),
    Setting('robot_id', ('ROBOT_ID',), 'default INFER_NODE', default=''),
    Setting('storage_url', ('STORAGE_URL',), 'robot upload root; default dir of data_url', ''),
    Setting('train_prob', ('TRAIN_PROB',), 'share of new samples sent to training', '0.8'),
    Setting('train_ratio', ('TRAIN_RATIO',), 'train/val split', str(_USER_DEFAULTS.train_ratio)),
    Setting('epochs', ('EPOCHS',), 'training epochs', str(_USER_DEFAULTS.epochs)),
    Setting('min_iterations', ('MIN_ITERATIONS',), 'training steps at least per round', '300'),
    Setting('num_class', ('NUM_CLASS',), 'classes of the model', str(_USER_DEFAULTS.num_class)),
    Setting('sample_threshold', ('SAMPLE_THRESHOLD',), 'train when num_of_samples > this', '100'),
    Setting('eval_operator', ('EVAL_OPERATOR',), 'eval deploy filter operator', '<'),
    Setting('model_threshold', ('MODEL_THRESHOLD',), 'eval deploy filter threshold', '0'),
)


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


def _raw_values(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> dict[str, str]:
    values = {}
    for setting in SETTINGS:
        value = None if setting.env_only else flags.get(setting.key)
        if value is None or not value.strip():
            value = next((environ[n] for n in setting.envs if environ.get(n, '').strip()), None)
        if value is None:
            value = setting.default or ''
        values[setting.key] = value.strip()
    return values


def missing_settings(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> list[str]:
    """Labels (flag and env names) of every required setting that has no value."""
    values = _raw_values(flags, environ)
    by_key = {s.key: s for s in SETTINGS}
    missing = [s.label() for s in SETTINGS if s.default is None and not values[s.key]]
    if not values['s3_prefix'] and not (values['data_url'] and values['output']):
        missing.append(by_key['s3_prefix'].label()[:-1] + '; or both --data-url and --output)')
    return missing


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
    v = _raw_values(flags, environ)
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
        storage_url=v['storage_url'] or data_url.rsplit('/', 1)[0],
        train_prob=_number(v['train_prob'], 'train_prob', 0.0, 1.0),
        sample_threshold=_number(v['sample_threshold'], 'sample_threshold', 0.0, float('inf')),
        worker_env=worker_env,
    )


class _Dumper(yaml.SafeDumper):
    """Plain YAML for kubectl: no anchors/aliases, clock times quoted."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "'" if _CLOCK.fullmatch(value) else None
    return dumper.represent_scalar('tag:yaml.org,2002:str', value, style=style)


_Dumper.add_representer(str, _represent_str)


def _metadata(config: ManifestConfig, name: str, **extra: object) -> dict:
    meta: dict = {'name': name}
    if config.namespace:
        meta['namespace'] = config.namespace
    meta.update(extra)
    return meta


def _env(pairs: Mapping[str, object]) -> list[dict[str, str]]:
    return [{'name': name, 'value': str(value)} for name, value in pairs.items()]


def _shm_volume(size: str) -> dict:
    return {'name': 'dshm', 'emptyDir': {'medium': 'Memory', 'sizeLimit': size}}


def _container(name: str, image: str, args: Sequence[str], env: Mapping[str, object]) -> dict:
    return {
        'name': name,
        'image': image,
        'imagePullPolicy': 'IfNotPresent',
        'args': list(args),
        'env': _env(env),
        'securityContext': {'runAsNonRoot': True, 'allowPrivilegeEscalation': False},
    }


def _pod(node: str, containers: list[dict], shm: str | None = None, **spec: object) -> dict:
    pod: dict = {'nodeName': node, 'dnsPolicy': 'ClusterFirstWithHostNet', **spec}
    if shm:
        for container in containers:
            container['volumeMounts'] = [{'name': 'dshm', 'mountPath': '/dev/shm'}]
        pod['volumes'] = [_shm_volume(shm)]
    pod['containers'] = containers
    return {'spec': pod}


def secret_manifest(config: ManifestConfig) -> dict:
    annotations = {
        's3-endpoint': config.s3_endpoint,
        's3-usehttps': '1' if config.s3_usehttps else '0',
    }
    return {
        'apiVersion': 'v1',
        'kind': 'Secret',
        'metadata': _metadata(config, config.secret_name, annotations=annotations),
        'type': 'Opaque',
        'stringData': {
            'ACCESS_KEY_ID': config.access_key_id,
            'SECRET_ACCESS_KEY': config.secret_access_key,
        },
    }


def dataset_manifest(config: ManifestConfig) -> dict:
    return {
        'apiVersion': SEDNA_API,
        'kind': 'Dataset',
        'metadata': _metadata(config, config.dataset_name),
        'spec': {
            'url': config.data_url,
            'format': 'txt',
            'nodeName': config.data_node,
            'credentialName': config.secret_name,
        },
    }


def job_manifest(config: ManifestConfig) -> dict:
    user = config.worker_env
    train = _container(
        'train-worker',
        config.cloud_image,
        TRAIN_ARGS,
        {
            'train_ratio': user.train_ratio,
            'BACKEND_TYPE': 'PYTORCH',
            'epochs': user.epochs,
            'min_iterations': user.min_iterations,
            'num_class': user.num_class,
        },
    )
    train['resources'] = copy.deepcopy(CLOUD_RESOURCES)
    evaluate = _container(
        'eval-worker',
        config.cloud_image,
        EVAL_ARGS,
        {
            'operator': user.operator,
            'model_threshold': user.model_threshold,
            'BACKEND_TYPE': 'PYTORCH',
        },
    )
    evaluate['resources'] = copy.deepcopy(CLOUD_RESOURCES)
    launch_args = [f'{arg}:=$({var})' for arg, var in EDGE_LAUNCH_ARGS.items()]
    infer = _container(
        'infer-worker',
        config.edge_image,
        [*EDGE_COMMAND, *launch_args],
        {'ROBOT_ID': config.robot_id, 'STORAGE_URL': config.storage_url},
    )
    infer['resources'] = copy.deepcopy(EDGE_RESOURCES)
    return {
        'apiVersion': SEDNA_API,
        'kind': 'LifelongLearningJob',
        'metadata': _metadata(config, config.job_name),
        'spec': {
            'dataset': {'name': config.dataset_name, 'trainProb': config.train_prob},
            'trainSpec': {
                'template': _pod(config.train_node, [train], shm=TRAIN_SHM),
                'trigger': {
                    'checkPeriodSeconds': CHECK_PERIOD_SECONDS,
                    'timer': dict(TIMER),
                    'condition': {
                        'operator': '>',
                        'threshold': config.sample_threshold,
                        'metric': 'num_of_samples',
                    },
                },
            },
            'evalSpec': {'template': _pod(config.eval_node, [evaluate])},
            'deploySpec': {
                'template': _pod(config.infer_node, [infer], shm=EDGE_SHM, hostNetwork=True)
            },
            'credentialName': config.secret_name,
            'outputDir': config.output_dir,
        },
    }


def build_manifests(config: ManifestConfig) -> dict[str, dict]:
    """File name -> object, in the order kubectl should create them."""
    return {
        SECRET_FILE: secret_manifest(config),
        DATASET_FILE: dataset_manifest(config),
        JOB_FILE: job_manifest(config),
    }


def write_manifests(manifests: Mapping[str, dict], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, obj in manifests.items():
        path = out / name
        text = f'# Rendered by {PROG}; apply with: kubectl apply -f {out}\n' + yaml.dump(
            obj, Dumper=_Dumper, sort_keys=False
        )
        # 0600 from creation on: the Secret file holds the S3 keys.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(text)
        written.append(path)
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Render the Sedna Secret, Dataset and LifelongLearningJob for the robot. '
        'Each flag falls back to the environment variable named in its help; the S3 keys '
        'come only from $ACCESS_KEY_ID and $SECRET_ACCESS_KEY.',
    )
    parser.add_argument(
        '--out', metavar='DIR', help='directory to write the manifests to (required)'
    )
    for setting in SETTINGS:
        if setting.env_only:
            continue
        default = f'; default {setting.default}' if setting.default else ''
        parser.add_argument(
            setting.flag,
            dest=setting.key,
            metavar='VALUE',
            help=f'{setting.help} (env {", ".join(setting.envs)}{default})',
        )
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = os.environ if environ is None else environ
    flags = vars(args)
    missing = ([] if args.out else ['--out DIR']) + missing_settings(flags, env)
    if missing:
        print(f'{PROG}: missing required settings: {", ".join(missing)}', file=sys.stderr)
        return 2
    try:
        config = config_from(flags, env)
    except ConfigError as e:
        print(f'{PROG}: {e}', file=sys.stderr)
        return 2
    for path in write_manifests(build_manifests(config), Path(args.out)):
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
