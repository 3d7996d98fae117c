"""The manifest inputs: each a ``--flag``, else the first non-blank environment variable of
Sedna's robot example, else a default; and which required ones have no value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from robo_lifelong_cloud.sedna_env import UserEnv


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


def raw_values(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> dict[str, str]:
    """Setting key -> its stripped value ('' when it has none)."""
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
    values = raw_values(flags, environ)
    by_key = {s.key: s for s in SETTINGS}
    missing = [s.label() for s in SETTINGS if s.default is None and not values[s.key]]
    if not values['s3_prefix'] and not (values['data_url'] and values['output']):
        missing.append(by_key['s3_prefix'].label()[:-1] + '; or both --data-url and --output)')
    return missing
