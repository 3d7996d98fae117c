"""Train/eval workers as subprocesses with the environment GM injects (PROTOCOL.md §3).

``worker_env`` builds the variables of §3.1: the container template's own ``env`` first, then
GM's. Host-path mounts are emulated by a per-worker *pod view* (``PodView``): a directory that
stands for the pod's ``/home/data`` (it is the worker's ``DATA_PATH_PREFIX``) and holds, at
``<view><dir>``, a symlink to each directory GM would hostPath-mount, i.e. the parent directory
of each host-path URL of §3.2 (``OUTPUT_URL``, ``TRAIN_DATASET_URL`` / ``TEST_DATASET_URL``,
``ORIGINAL_DATASET_URL``, each ``MODEL_URLS`` entry); those URLs are rewritten to
``<view><path>`` as GM does. So an eval worker is given ``O/train/<r>/``, ``O/eval/`` and the
dataset directories, and nothing that leads to ``O/deploy/``. (A view is not a sandbox: a worker
that opened other host paths by name would still reach them; it only never gets such a name.)
Deviations, because there is no pod, mount or init container on one machine:

- ``s3://`` URLs are passed as they are, never rewritten to ``/downloads…`` (the worker reads
  them with the credentials), and a relative host path is passed as it is (GM would make it
  ``/home/data/<path>`` with no volume).
- ``ORIGINAL_DATASET_URL`` is always the Dataset's own ``spec.url``: Sedna points it at
  ``dataIndex.txt`` only when the storage initializer has downloaded the samples next to it;
  without an initializer the sample tree lives under the Dataset URL's directory.
- S3 credentials (§3.4) come from the job's Secret, else the Dataset's, when any URL the worker
  gets is ``s3://`` and the Secret has the ``s3-endpoint`` annotation.
- The process inherits the controller's environment (PATH, HOME, venv ...) minus every §3.1
  name, so nothing stale leaks into a worker.

The container ``args`` (``["train"]``/``["eval"]``) are appended to ``command`` (default
``python -m robo_lifelong_cloud``, whose entrypoint the worker image runs). Output goes to
``<log_dir>/<WORKER_NAME>.log``.
"""

from __future__ import annotations

import logging
import os
import posixpath
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robo_lifelong.transfer.storage import S3Config
from robo_lifelong_cloud.controller.conditions import Phase

log = logging.getLogger(__name__)

NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'
NAME_PREFIX = {'train': 'train-worker-', 'eval': 'eval-worker-', 'inference': 'inferworker-'}
SEDNA_VARS = (
    'NAMESPACE',
    'JOB_NAME',
    'WORKER_NAME',
    'LC_SERVER',
    'KB_SERVER',
    'HAS_COMPLETED_INITIAL_TRAINING',
    'CLOUD_KB_INDEX',
    'OUTPUT_URL',
    'TRAIN_DATASET_URL',
    'TEST_DATASET_URL',
    'ORIGINAL_DATASET_URL',
    'MODEL_URLS',
    'DATA_PATH_PREFIX',
    'S3_ENDPOINT_URL',
    'ACCESS_KEY_ID',
    'SECRET_ACCESS_KEY',
)
DEFAULT_COMMAND = (sys.executable, '-m', 'robo_lifelong_cloud')
DEFAULT_KB_SERVER = 'http://localhost:9020'  # GM's default config; no KB runs here


def worker_name(kind: str, rng: random.Random | None = None) -> str:
    """``train-worker-XXXXX`` etc. with GM's alphabet (unrelated to any process name)."""
    rng = rng or random.SystemRandom()
    return NAME_PREFIX[kind] + ''.join(rng.choice(NAME_ALPHABET) for _ in range(5))


@dataclass(frozen=True)
class StageInput:
    """What a Ready condition hands to the worker of its stage."""

    kind: str  # 'train' | 'eval'
    output_url: str
    data_url: str
    model_urls: tuple[str, ...] = ()
    has_completed_initial_training: bool = False
    cloud_kb_index: str = ''


def _host_path(url: str) -> bool:
    return posixpath.isabs(url) and '://' not in url


def host_mounts(stage: StageInput, dataset_url: str) -> list[str]:
    """The directories GM hostPath-mounts into the stage's pod: the parent directory of each
    host-path URL (§3.2; ``CLOUD_KB_INDEX`` is a plain value, not a mount)."""
    urls = [stage.output_url, stage.data_url, dataset_url]
    if stage.kind == 'eval':
        urls.extend(stage.model_urls)
    dirs = {posixpath.dirname(posixpath.normpath(u)) for u in urls if u and _host_path(u)}
    return sorted(dirs)


class PodView:
    """A worker's view of its hostPath mounts: ``root`` plays ``/home/data`` (module doc)."""

    def __init__(self, root: Path, mounts: Sequence[str]) -> None:
        self.root = root
        self.mounts = list(mounts)

    def path(self, host_path: str) -> str:
        """``host_path`` as the worker sees it."""
        return str(self.root) + posixpath.normpath(host_path)

    def create(self) -> PodView:
        """Make the view: a symlink per mount (a mount inside another one is already visible).
        Each mounted directory is created if missing (GM's ``Directory`` volumes must exist;
        Sedna's LC creates ``O/train`` and ``O/eval`` at job start)."""
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        linked: list[str] = []
        for mount in sorted(self.mounts, key=len):
            if any(mount == m or mount.startswith(m.rstrip('/') + '/') for m in linked):
                continue
            Path(mount).mkdir(parents=True, exist_ok=True)
            link = Path(self.path(mount))
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(mount, target_is_directory=True)
            linked.append(mount)
        return self

    def remove(self) -> None:
        """Remove the view (the symlinks only, never what they point to)."""
        shutil.rmtree(self.root, ignore_errors=True)


def template_env(container: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The container's own ``env`` entries with a literal ``value`` (``valueFrom`` needs k8s)."""
    out = []
    for entry in container.get('env') or []:
        if 'value' in entry:
            out.append((str(entry['name']), str(entry['value'])))
        else:
            log.warning(
                'env %r of container %r uses valueFrom: not supported, skipped',
                entry.get('name'),
                container.get('name'),
            )
    return out


def worker_env(
    container: Mapping[str, Any],
    stage: StageInput,
    namespace: str,
    job_name: str,
    name: str,
    lc_server: str,
    dataset_url: str,
    s3: S3Config,
    kb_server: str = DEFAULT_KB_SERVER,
    view: PodView | None = None,
) -> dict[str, str]:
    """The variables a worker of ``stage.kind`` gets, template env first (later names win).
    With a ``view``, host-path URLs are rewritten into it and ``DATA_PATH_PREFIX`` names it."""

    def seen(url: str) -> str:
        return view.path(url) if view is not None and url and _host_path(url) else url

    env = dict(template_env(container))
    env.update(
        {
            'NAMESPACE': namespace,
            'JOB_NAME': job_name,
            'WORKER_NAME': name,
            'LC_SERVER': lc_server,
            'KB_SERVER': kb_server,
            'OUTPUT_URL': seen(stage.output_url),
            'ORIGINAL_DATASET_URL': seen(dataset_url),
        }
    )
    urls = [stage.output_url, stage.data_url, dataset_url]
    if stage.kind == 'train':
        done = stage.has_completed_initial_training
        env['HAS_COMPLETED_INITIAL_TRAINING'] = 'true' if done else 'false'
        if done:
            env['CLOUD_KB_INDEX'] = stage.cloud_kb_index  # a plain value, not a mount
        env['TRAIN_DATASET_URL'] = seen(stage.data_url)
    else:
        env['TEST_DATASET_URL'] = seen(stage.data_url)
        env['MODEL_URLS'] = ';'.join(seen(url) for url in stage.model_urls)
        urls.extend(stage.model_urls)
    if any(url.startswith('s3://') for url in urls):
        env.update(s3.to_environ())
    if view is not None and any(url and _host_path(url) for url in urls):
        env['DATA_PATH_PREFIX'] = str(view.root)
    return env


def process_env(sedna_env: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict:
    """The controller's environment without §3.1 names, plus ``sedna_env``."""
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if k not in SEDNA_VARS}
    env.update(sedna_env)
    return env


class WorkerProcess:
    """One worker subprocess; ``phase()`` maps it to a pod phase (§8.2 item 4)."""

    def __init__(
        self,
        kind: str,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str],
        command: Sequence[str],
        log_dir: Path,
    ) -> None:
        self.kind = kind
        self.name = name
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f'{name}.log'
        argv = [*command, *args]
        with open(self.log_path, 'ab') as out:
            # own session: a Ctrl-C at the controller's terminal does not kill the worker first
            self._popen = subprocess.Popen(
                argv, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        log.info('started %s worker %s (pid %d): %s', kind, name, self._popen.pid, argv)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def phase(self) -> Phase:
        code = self._popen.poll()
        if code is None:
            return Phase.RUNNING
        return Phase.SUCCEEDED if code == 0 else Phase.FAILED

    def describe_exit(self) -> str:
        code = self._popen.poll()
        if code is None:
            return 'running'
        if code < 0:
            return f'killed by {signal.Signals(-code).name}'
        return f'exit code {code}'

    def wait(self, timeout_s: float | None = None) -> int:
        """The exit code once the process ended; TimeoutExpired after ``timeout_s``."""
        return self._popen.wait(timeout_s)

    def send_signal(self, sig: int) -> None:
        self._popen.send_signal(sig)

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; reaps the process."""
        if self._popen.poll() is not None:
            return
        self._popen.terminate()
        try:
            self._popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait()
