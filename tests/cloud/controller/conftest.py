"""Helpers for the controller tests: a job built from cloud/manifests, run against fake workers."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from robo_lifelong_cloud.controller.manifests import load_manifests
from robo_lifelong_cloud.controller.runner import Controller, ControllerConfig

REPO = Path(__file__).resolve().parents[3]
MANIFESTS = REPO / 'cloud' / 'manifests'
FAKE_WORKER = Path(__file__).with_name('fake_worker.py')
TICK_S = 0.05


def write_job(
    root: Path,
    train_mode: str = 'ok',
    eval_mode: str = 'ok',
    operator: str = '>=',
    threshold: float = 4,
    train_prob: float = 0.75,
) -> Path:
    """The repo's manifests with host paths under ``root`` and fake-worker modes; returns their
    directory."""
    docs = {p.name: yaml.safe_load(p.read_text()) for p in MANIFESTS.glob('*.yaml')}
    dataset, job = docs['dataset.yaml'], docs['lifelonglearningjob.yaml']
    dataset['spec']['url'] = str(root / 'data' / 'data.txt')
    spec = job['spec']
    spec['outputDir'] = str(root / 'out' / 'job') + '/'
    spec['dataset']['trainProb'] = train_prob
    spec['trainSpec']['trigger']['condition'].update(operator=operator, threshold=threshold)
    env_dir = root / 'envs'
    env_dir.mkdir(parents=True, exist_ok=True)
    for stage, mode in (('trainSpec', train_mode), ('evalSpec', eval_mode)):
        container = spec[stage]['template']['spec']['containers'][0]
        container['env'] = [
            *container.get('env', []),
            {'name': 'FAKE_MODE', 'value': mode},
            {'name': 'FAKE_ENV_DIR', 'value': str(env_dir)},
        ]
    out = root / 'manifests'
    out.mkdir(parents=True, exist_ok=True)
    for name in ('dataset.yaml', 'lifelonglearningjob.yaml'):
        (out / name).write_text(yaml.safe_dump(docs[name]))
    return out


def add_samples(root: Path, start: int, count: int) -> None:
    index = root / 'data' / 'data.txt'
    index.parent.mkdir(parents=True, exist_ok=True)
    with open(index, 'a') as f:
        for i in range(start, start + count):
            f.write(f'sunny/rgb/{i:06d}.png sunny/depth/{i:06d}.png sunny/label/{i:06d}.png\n')


def make_controller(root: Path, **job_kwargs) -> Controller:
    manifests = load_manifests([write_job(root, **job_kwargs)])
    config = ControllerConfig(
        state_dir=root / 'state',
        tick_s=TICK_S,
        dataset_poll_s=0.0,
        command=(sys.executable, str(FAKE_WORKER)),
    )
    return Controller(manifests, config)


def states(controller: Controller) -> list[str]:
    return [f'{c["stage"]}/{c["type"]}' for c in controller.conditions]


def tick_until(
    controller: Controller, done: Callable[[Controller], bool], timeout_s: float = 20.0
) -> None:
    """Tick (at least once) until ``done``."""
    deadline = time.monotonic() + timeout_s
    controller.tick()
    while not done(controller):
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out; conditions: {states(controller)}')
        time.sleep(TICK_S)
        controller.tick()
