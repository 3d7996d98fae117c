"""Parsing of the Sedna worker environment (PROTOCOL.md §3.1) and the job template's own env."""

from __future__ import annotations

import dataclasses

import pytest

from robo_lifelong.errors import ConfigError
from robo_lifelong.labels import NUM_CLASSES
from robo_lifelong.transfer.storage import S3Config
from robo_lifelong_cloud.sedna_env import SednaEnv, UserEnv

# The S3 train example of PROTOCOL.md §3.5, as GM would inject it.
TRAIN_ENV = {
    'NAMESPACE': 'default',
    'JOB_NAME': 'robo-demo',
    'WORKER_NAME': 'train-worker-b7k2q',
    'LC_SERVER': 'http://localhost:9100',
    'KB_SERVER': 'http://localhost:9020',
    'HAS_COMPLETED_INITIAL_TRAINING': 'true',
    'CLOUD_KB_INDEX': 's3://kubeedge/robo/out/job/train/1/index.pkl',
    'OUTPUT_URL': 's3://kubeedge/robo/out/job/train/2',
    'TRAIN_DATASET_URL': '/downloads/kubeedge/robo/out/job/data/train/2/data.txt',
    'ORIGINAL_DATASET_URL': '/downloads/kubeedge/robo/out/job/data/train/2/dataIndex.txt',
    'S3_ENDPOINT_URL': 'https://minio.example:9000',
    'ACCESS_KEY_ID': 'KEYID-42',
    'SECRET_ACCESS_KEY': 'SECRET-42',
    'train_ratio': '0.8',
    'BACKEND_TYPE': 'pytorch',
    'epoches': '3',
    'num_class': '24',
}

EVAL_ENV = {
    'NAMESPACE': 'default',
    'JOB_NAME': 'robo-demo',
    'WORKER_NAME': 'eval-worker-x9m4t',
    'OUTPUT_URL': '/home/data/data/ll/out/job/eval/1',
    'TEST_DATASET_URL': '/home/data/data/ll/out/job/data/eval/1/data.txt',
    'ORIGINAL_DATASET_URL': '/home/data/data/seg/data.txt',
    'MODEL_URLS': '/home/data/a/index.pkl;/home/data/b/index.pkl;',
    'DATA_PATH_PREFIX': '/home/data',
    'operator': '<',
    'model_threshold': '0',
}


def test_train_environment_is_parsed_with_types() -> None:
    env = SednaEnv.from_environ(TRAIN_ENV).require('train')
    assert env.worker_name == 'train-worker-b7k2q'
    assert env.lc_server == 'http://localhost:9100'
    assert env.has_completed_initial_training is True
    assert env.cloud_kb_index.endswith('/train/1/index.pkl')
    assert env.output_url == 's3://kubeedge/robo/out/job/train/2'
    assert env.s3 == S3Config('https://minio.example:9000', '', 'KEYID-42', 'SECRET-42')
    assert env.params == UserEnv(
        train_ratio=0.8, backend_type='PYTORCH', epochs=3, num_class=24
    )  # 'epoches' is Sedna's example spelling


def test_eval_environment_splits_model_urls() -> None:
    env = SednaEnv.from_environ(EVAL_ENV).require('eval')
    assert env.model_urls == ('/home/data/a/index.pkl', '/home/data/b/index.pkl')
    assert env.params.operator == '<'
    assert env.params.model_threshold == 0.0
    assert env.has_completed_initial_training is False


def test_defaults_follow_sedna() -> None:
    env = SednaEnv.from_environ({})
    assert env.lc_server == 'http://127.0.0.1:9100'
    assert env.data_path_prefix == '/home/data'
    assert env.model_urls == ()
    assert env.params == UserEnv()
    assert (env.params.operator, env.params.model_threshold) == ('>', 0.1)
    assert env.params.num_class == NUM_CLASSES
    assert env.s3 == S3Config()


def test_repr_hides_credentials() -> None:
    text = repr(SednaEnv.from_environ(TRAIN_ENV))
    assert 'SECRET-42' not in text and 'KEYID-42' not in text
    assert 'minio.example' in text  # the endpoint is not a secret and helps debugging


def test_require_names_every_missing_variable() -> None:
    env = SednaEnv.from_environ({'NAMESPACE': 'default', 'OUTPUT_URL': '/tmp/out'})
    with pytest.raises(ConfigError) as info:
        env.require('eval')
    for name in (
        'JOB_NAME',
        'WORKER_NAME',
        'TEST_DATASET_URL',
        'ORIGINAL_DATASET_URL',
        'MODEL_URLS',
    ):
        assert name in str(info.value)
    assert 'NAMESPACE' not in str(info.value)
    with pytest.raises(ConfigError, match='TRAIN_DATASET_URL'):
        SednaEnv.from_environ(EVAL_ENV).require('train')
    with pytest.raises(ConfigError, match='kind'):
        env.require('deploy')


@pytest.mark.parametrize(
    ('name', 'value'),
    [
        ('HAS_COMPLETED_INITIAL_TRAINING', 'yes'),
        ('train_ratio', '1.5'),
        ('train_ratio', 'nan'),
        ('epochs', 'ten'),
        ('epochs', '0'),
        ('num_class', '-1'),
        ('model_threshold', 'inf'),
        ('operator', '=>'),
        ('image_width', '1.5'),
        ('min_iterations', '-1'),
        ('update_class_balance', '2'),
    ],
)
def test_malformed_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        SednaEnv.from_environ({**TRAIN_ENV, name: value})


def test_blank_values_mean_unset_and_env_is_frozen() -> None:
    env = SednaEnv.from_environ({'LC_SERVER': '  ', 'epochs': '', 'epoches': '7'})
    assert env.lc_server == 'http://127.0.0.1:9100'
    assert env.params.epochs == 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        env.job_name = 'x'  # type: ignore[misc]


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('WORKER_NAME', 'train-worker-zzzzz')
    monkeypatch.setenv('image_height', '120')
    env = SednaEnv.from_environ()
    assert env.worker_name == 'train-worker-zzzzz'
    assert env.params.image_height == 120
    assert env.params.min_iterations == 0  # unset: the epochs alone decide
    assert SednaEnv.from_environ({'min_iterations': '300'}).params.min_iterations == 300
