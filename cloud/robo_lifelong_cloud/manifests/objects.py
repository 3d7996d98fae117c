"""The Secret, Dataset and LifelongLearningJob objects (plain dicts) of a ``ManifestConfig``."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from robo_lifelong_cloud.manifests.config import ManifestConfig

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
