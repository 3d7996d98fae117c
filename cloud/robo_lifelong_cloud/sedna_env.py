"""The environment Sedna injects into LifelongLearningJob workers (PROTOCOL.md §3.1), read once.

``SednaEnv.from_environ()`` parses every variable GM sets plus the job template's own env
(``UserEnv``: ``train_ratio``, ``epochs`` ...) into frozen dataclasses, so the rest of the worker
never touches ``os.environ``; the S3 variables become one ``S3Config`` (kept out of ``repr``)
that every storage call of the worker is given. ``require('train' | 'eval')`` checks what that
worker needs and names every missing variable at once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from robo_lifelong.errors import ConfigError
from robo_lifelong.labels import NUM_CLASSES
from robo_lifelong.transfer.storage import S3Config

# Sedna's python defaults when the variable is unset (lib/sedna/common/config.py)
DEFAULT_LC_SERVER = 'http://127.0.0.1:9100'
DEFAULT_DATA_PATH_PREFIX = '/home/data'
# Sedna's eval filter defaults (PROTOCOL.md §2.5); ">" with 0.1 drops every task above 0.1
DEFAULT_OPERATOR = '>'
DEFAULT_MODEL_THRESHOLD = 0.1
OPERATORS = ('>', '<', '=', '>=', '<=')

# What each worker kind cannot run without (PROTOCOL.md §8.1).
REQUIRED: dict[str, tuple[str, ...]] = {
    'train': (
        'NAMESPACE',
        'JOB_NAME',
        'WORKER_NAME',
        'OUTPUT_URL',
        'TRAIN_DATASET_URL',
        'ORIGINAL_DATASET_URL',
    ),
    'eval': (
        'NAMESPACE',
        'JOB_NAME',
        'WORKER_NAME',
        'OUTPUT_URL',
        'TEST_DATASET_URL',
        'ORIGINAL_DATASET_URL',
        'MODEL_URLS',
    ),
}

T = TypeVar('T')


def _parse(environ: Mapping[str, str], names: tuple[str, ...], default: T, kind: Callable) -> T:
    """The first of ``names`` set to a non-blank value, converted by ``kind``; else ``default``."""
    for name in names:
        raw = environ.get(name, '').strip()
        if raw:
            try:
                return kind(raw)
            except ValueError as e:
                raise ConfigError(f'{name}={raw!r}: {e}') from e
    return default


def _finite(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError('must be a finite number')
    return value


def _ratio(raw: str) -> float:
    value = _finite(raw)
    if not 0.0 < value <= 1.0:
        raise ValueError('must be in (0, 1]')
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError('must be a positive integer')
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError('must be a non-negative integer')
    return value


def _operator(raw: str) -> str:
    if raw not in OPERATORS:
        raise ValueError(f'must be one of {OPERATORS}')
    return raw


def _bool(raw: str) -> bool:
    # GM writes exactly "true"/"false"; anything else is a typo worth stopping for
    lowered = raw.lower()
    if lowered not in ('true', 'false'):
        raise ValueError('must be "true" or "false"')
    return lowered == 'true'


@dataclass(frozen=True)
class UserEnv:
    """The job template's own env (set by the user in the pod template, not by GM).

    Names follow Sedna's robot/cityscapes example; ``epoches`` (its spelling) is read when
    ``epochs`` is not set.
    """

    train_ratio: float = 0.9  # share of TRAIN_DATASET_URL used for training, rest validation
    backend_type: str = 'PYTORCH'  # BACKEND_TYPE; only PyTorch exists here
    model_threshold: float = DEFAULT_MODEL_THRESHOLD  # eval deploy filter (PROTOCOL.md §2.5)
    operator: str = DEFAULT_OPERATOR
    max_task_drop: float = 0.01  # our deploy rule: largest mIoU loss allowed on a known task
    epochs: int = 5
    # optimizer steps at least (0: epochs alone decide); a small incremental batch of new
    # samples is a few steps per epoch
    min_iterations: int = 0
    num_class: int = NUM_CLASSES
    image_height: int = 240  # training/inference input size (the robot camera's 424x240)
    image_width: int = 424
    # What the initial training starts from: '' a seeded untrained net; ``base`` the base model
    # shipped with the robot package (share/robo_lifelong/models/base); else a model package or
    # deploy pointer (directory or s3:// URL). The job's first round then fine-tunes it on the
    # initial dataset (a robot's own labelled frames) instead of learning the known tasks anew.
    initial_model: str = ''
    # An update weighs its classes (median / frequency) ** this (the initial training 0.5):
    # replaying the demo's round 2 at 240x424 (night + construction on the fine-tuned base
    # model), the old tasks moved -5.3 / -3.7 / -3.4 mIoU points on fresh frames with 0.5 and
    # -4.6 / +1.6 / -1.9 with 0.25, the new tasks learned as much (barrier IoU 0.92, cone
    # 0.70 / 0.68). Small nets at low resolution, where a cone is a few pixels, need 0.5.
    update_class_balance: float = 0.25

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> UserEnv:
        d = cls()
        return cls(
            train_ratio=_parse(environ, ('train_ratio',), d.train_ratio, _ratio),
            backend_type=_parse(environ, ('BACKEND_TYPE',), d.backend_type, str.upper),
            model_threshold=_parse(environ, ('model_threshold',), d.model_threshold, _finite),
            operator=_parse(environ, ('operator',), d.operator, _operator),
            max_task_drop=_parse(environ, ('max_task_drop',), d.max_task_drop, _ratio),
            epochs=_parse(environ, ('epochs', 'epoches'), d.epochs, _positive_int),
            min_iterations=_parse(
                environ, ('min_iterations',), d.min_iterations, _non_negative_int
            ),
            num_class=_parse(environ, ('num_class',), d.num_class, _positive_int),
            image_height=_parse(environ, ('image_height',), d.image_height, _positive_int),
            image_width=_parse(environ, ('image_width',), d.image_width, _positive_int),
            initial_model=_parse(environ, ('initial_model',), d.initial_model, str.strip),
            update_class_balance=_parse(
                environ, ('update_class_balance',), d.update_class_balance, _ratio
            ),
        )


@dataclass(frozen=True)
class SednaEnv:
    """Every variable of PROTOCOL.md §3.1, typed; empty string means "not set"."""

    namespace: str = ''
    job_name: str = ''
    worker_name: str = ''
    lc_server: str = DEFAULT_LC_SERVER
    kb_server: str = ''
    has_completed_initial_training: bool = False
    cloud_kb_index: str = ''  # may stay empty even after the initial training (§8.3 item 6)
    output_url: str = ''
    train_dataset_url: str = ''
    test_dataset_url: str = ''
    original_dataset_url: str = ''
    model_urls: tuple[str, ...] = ()
    data_path_prefix: str = DEFAULT_DATA_PATH_PREFIX
    s3: S3Config = field(default_factory=S3Config)  # S3_ENDPOINT_URL, ACCESS_KEY_ID, ...
    params: UserEnv = field(default_factory=UserEnv)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SednaEnv:
        """Parse ``environ`` (default ``os.environ``); ConfigError names a malformed variable."""
        env = os.environ if environ is None else environ

        def text(name: str, default: str = '') -> str:
            return env.get(name, '').strip() or default

        model_urls = tuple(url.strip() for url in env.get('MODEL_URLS', '').split(';'))
        return cls(
            namespace=text('NAMESPACE'),
            job_name=text('JOB_NAME'),
            worker_name=text('WORKER_NAME'),
            lc_server=text('LC_SERVER', DEFAULT_LC_SERVER),
            kb_server=text('KB_SERVER'),
            has_completed_initial_training=_parse(
                env, ('HAS_COMPLETED_INITIAL_TRAINING',), False, _bool
            ),
            cloud_kb_index=text('CLOUD_KB_INDEX'),
            output_url=text('OUTPUT_URL'),
            train_dataset_url=text('TRAIN_DATASET_URL'),
            test_dataset_url=text('TEST_DATASET_URL'),
            original_dataset_url=text('ORIGINAL_DATASET_URL'),
            model_urls=tuple(url for url in model_urls if url),
            data_path_prefix=text('DATA_PATH_PREFIX', DEFAULT_DATA_PATH_PREFIX),
            s3=S3Config.from_environ(env),
            params=UserEnv.from_environ(env),
        )

    def require(self, kind: str) -> SednaEnv:
        """Check the variables a ``train`` or ``eval`` worker needs; returns self."""
        if kind not in REQUIRED:
            raise ConfigError(f'unknown worker kind {kind!r}; expected one of {tuple(REQUIRED)}')
        missing = [name for name in REQUIRED[kind] if not getattr(self, name.lower())]
        if missing:
            raise ConfigError(
                f'the {kind} worker needs these environment variables (Sedna injects them): '
                + ', '.join(missing)
            )
        return self
