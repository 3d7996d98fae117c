"""GM + LC of one LifelongLearningJob on one machine: the tick loop (PROTOCOL.md §1.5, §2, §8.2).

Every tick (``ControllerConfig.tick_s``, Sedna's fixed 10 s by default; ``checkPeriodSeconds``
is ignored as in Sedna) the controller, the only writer of conditions:

1. notes the phase of each stage's newest worker process, then appends the worker reports that
   arrived (so a report sent before the process exited is always seen before its exit);
2. runs GM syncs until nothing changes: ``Ready`` → start the worker, ``Starting``; process alive
   → ``Running``; report/exit → ``Completed``/``Failed``; ``Completed`` → next stage ``Waiting``;
   ``Failed`` → ``Train/Waiting``; ``Deploy/Ready`` → ``Deploy/Completed``;
3. runs the LC: polls the dataset index (every ``dataset_poll_s``, Sedna 60 s), splits new lines,
   fires the train trigger in ``Train/Waiting``, the eval trigger in ``Eval/Waiting`` and the
   deploy copy in ``Deploy/Waiting``; then GM syncs again.

Deviations from Sedna (also written to the job's ``robo-lifelong.io/deviations`` annotation):

- A worker that exits 0 without having reported makes the stage ``Failed`` (reason
  ``ExitedWithoutReport``) instead of GM's data-less ``Completed``: that one would re-deploy an
  older model or stall the eval trigger (§8.3 item 6). Reports are appended before the exit is
  looked at, so Sedna's report/exit race cannot happen here.
- A crash (non-zero exit, signal) makes the stage ``Failed`` at once (Sedna's ``OnFailure`` pods
  would restart in place, §8.3 item 9).
- No inference worker is started at ``Deploy/Ready`` (the robot's perception node consumes
  ``O/deploy/index.pkl`` through the bridge); ``Deploy/Completed`` follows at once, as in GM.
- ``O/deploy/index.pkl`` is replaced atomically (Sedna writes in place without truncation,
  §8.3 item 3).
- Host-path mounts are emulated by a per-worker view under ``<state>/pods/<WORKER_NAME>/``
  (symlinks to the directories GM would mount; it is the worker's ``DATA_PATH_PREFIX`` instead
  of ``/home/data``, see ``workers.py``); ``s3://`` URLs are not rewritten to ``/downloads``.
- On restart, a ``Starting``/``Running`` stage whose worker died with the old controller becomes
  ``Failed`` (reason ``WorkerLost``), so the job goes back to ``Train/Waiting`` (GM would wait
  for a pod forever). Workers are stopped when the controller stops.
- Conditions carry a ``reason`` on those controller-made failures (Sedna leaves it empty).
"""

from __future__ import annotations

import copy
import logging
import queue
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robo_lifelong.errors import ConfigError, StorageError
from robo_lifelong.transfer.storage import S3Config, join, open_storage, split_url
from robo_lifelong_cloud.controller.conditions import (
    ConditionType,
    Phase,
    Stage,
    condition_data,
    gm_step,
    has_completed,
    knowledge_base,
    last,
    latest_output_models,
    make_condition,
    model_urls,
    now_rfc3339,
    parse_data,
)
from robo_lifelong_cloud.controller.lc_server import LCServer, Report
from robo_lifelong_cloud.controller.manifests import Manifests
from robo_lifelong_cloud.controller.samples import SampleState, sample_lines, write_round
from robo_lifelong_cloud.controller.status import StateDir
from robo_lifelong_cloud.controller.trigger import Trigger
from robo_lifelong_cloud.controller.workers import (
    DEFAULT_COMMAND,
    DEFAULT_KB_SERVER,
    PodView,
    StageInput,
    WorkerProcess,
    host_mounts,
    process_env,
    worker_env,
    worker_name,
)

log = logging.getLogger(__name__)

DEVIATIONS_ANNOTATION = 'robo-lifelong.io/deviations'
DEVIATIONS = (
    'local controller (GM+LC in one process); worker exit 0 without report -> Failed; '
    'crash -> Failed (no OnFailure restart); no inference worker at Deploy; atomic deploy copy; '
    'Starting/Running without a live worker after restart -> Failed; host-path mounts '
    'emulated by a per-worker view of symlinks (DATA_PATH_PREFIX = the view, not /home/data), '
    's3 URLs not rewritten to /downloads; ORIGINAL_DATASET_URL = Dataset spec.url; '
    'tick configurable (checkPeriodSeconds ignored as in Sedna)'
)
DEPLOY_KEY = 'deploy/index.pkl'
PODS_DIR = 'pods'  # in the state dir: one view of its mounts per worker
KIND_OF_STAGE = {Stage.TRAIN: 'train', Stage.EVAL: 'eval'}
SPEC_OF_STAGE = {Stage.TRAIN: 'trainSpec', Stage.EVAL: 'evalSpec', Stage.DEPLOY: 'deploySpec'}
MAX_SYNCS = 20  # GM syncs per tick; each appends at most one condition


@dataclass(frozen=True)
class ControllerConfig:
    state_dir: Path
    tick_s: float = 10.0  # Sedna's LC job tick
    dataset_poll_s: float = 60.0  # Sedna's LC dataset poll
    command: tuple[str, ...] = DEFAULT_COMMAND  # the container args are appended to this
    kb_server: str = DEFAULT_KB_SERVER
    host: str = '127.0.0.1'
    port: int = 0  # 0: an ephemeral port for the report endpoint


@dataclass
class _LC:
    """LC state kept across restarts (Sedna's LC database) and the per-cycle trigger flags."""

    round: int = 0
    samples: SampleState = field(default_factory=SampleState)
    eval_sent: bool = False
    deploy_sent: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {'round': self.round, 'samples': self.samples.to_dict()}


class Controller:
    """Runs one job; ``start()``, then ``tick()`` repeatedly (or ``run()``), then ``stop()``."""

    def __init__(self, manifests: Manifests, config: ControllerConfig) -> None:
        self.m = manifests
        self.config = config
        self.state = StateDir(config.state_dir)
        self.trigger = Trigger.from_spec(manifests.job['spec']['trainSpec']['trigger'])
        self.output_dir = manifests.job['spec']['outputDir'].rstrip('/')
        self._reports: queue.Queue[Report] = queue.Queue()
        self._workers: dict[Stage, WorkerProcess] = {}
        self._views: dict[Stage, PodView] = {}
        self._lines: list[str] | None = None
        self._header: str | None = None
        self._last_poll = float('-inf')
        self._dirty = False
        self.job, self.dataset, self.lc = self._load()
        self.server = LCServer(
            manifests.namespace, manifests.job_name, self._reports.put, config.host, config.port
        )

    # ---- state -------------------------------------------------------------------------

    def _load(self) -> tuple[dict[str, Any], dict[str, Any], _LC]:
        job = copy.deepcopy(self.m.job)
        dataset = copy.deepcopy(self.m.dataset)
        for doc in (job, dataset):
            meta = doc.setdefault('metadata', {})
            meta.setdefault('namespace', 'default')
            meta.setdefault('uid', str(uuid.uuid4()))
            meta.setdefault('creationTimestamp', now_rfc3339())
        saved_job = self.state.read_job()
        if saved_job is not None:
            name = saved_job.get('metadata', {}).get('name')
            if name != job['metadata']['name']:
                raise ConfigError(
                    f'state dir {str(self.state.root)!r} holds job {name!r}, '
                    f'not {job["metadata"]["name"]!r}: use another --state directory'
                )
            # the manifest's spec wins (like `kubectl apply`); metadata and status persist
            for key in ('uid', 'creationTimestamp'):
                job['metadata'][key] = saved_job['metadata'][key]
            job['status'] = saved_job.get('status') or {}
        saved_dataset = self.state.read_dataset()
        if saved_dataset is not None and saved_dataset.get('status'):
            dataset['status'] = saved_dataset['status']
        lc = _LC()
        saved_lc = self.state.read_lc_state()
        if saved_lc is not None:
            lc.round = int(saved_lc.get('round', 0))
            lc.samples = SampleState.from_dict(saved_lc.get('samples', {}))
        job['metadata'].setdefault('annotations', {})[DEVIATIONS_ANNOTATION] = DEVIATIONS
        return job, dataset, lc

    def save(self) -> None:
        self.state.write(self.job, self.dataset, self.lc.to_dict())
        self._dirty = False

    @property
    def conditions(self) -> list[dict[str, Any]]:
        return self.job.setdefault('status', {}).setdefault('conditions', [])

    def _append(
        self,
        stage: Stage,
        type_: ConditionType,
        data: str = '',
        from_lc: bool = False,
        reason: str = '',
        message: str = '',
    ) -> None:
        self.conditions.append(make_condition(stage, type_, data, from_lc, reason, message))
        self._dirty = True
        log.info('%s: %s/%s%s', self.m.job_name, stage, type_, f' ({message})' if message else '')

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> Controller:
        shutil.rmtree(self.state.root / PODS_DIR, ignore_errors=True)  # views of dead workers
        self.server.start()
        state = last(self.conditions)
        if state is not None and state[1] in (ConditionType.STARTING, ConditionType.RUNNING):
            self._append(
                state[0],
                ConditionType.FAILED,
                reason='WorkerLost',
                message='worker lost: the controller was restarted',
            )
        self.save()
        log.info(
            'controller for %s/%s: reports to %s, state in %s',
            self.m.namespace,
            self.m.job_name,
            self.server.url,
            self.state.root,
        )
        return self

    def stop(self) -> None:
        for worker in self._workers.values():
            worker.stop()
        for view in self._views.values():
            view.remove()
        self.server.stop()
        self.save()

    def __enter__(self) -> Controller:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def run(
        self,
        stop: threading.Event | None = None,
        until: Callable[[Controller], bool] | None = None,
    ) -> None:
        """Tick every ``tick_s`` until ``stop`` is set or ``until(self)`` is true."""
        stop = stop or threading.Event()
        while not stop.is_set():
            self.tick()
            if until is not None and until(self):
                return
            stop.wait(self.config.tick_s)

    @property
    def worker_names(self) -> dict[Stage, str]:
        return {stage: w.name for stage, w in self._workers.items()}

    def worker(self, stage: Stage) -> WorkerProcess | None:
        return self._workers.get(stage)

    # ---- one tick ----------------------------------------------------------------------

    def tick(self) -> None:
        phases = {stage: w.phase() for stage, w in self._workers.items()}
        self._drain_reports()
        started: set[str] = set()
        self.tick_gm(phases, started)
        self._tick_lc()
        self.tick_gm(phases, started)
        if self._dirty:
            self.save()

    def _drain_reports(self) -> None:
        while True:
            try:
                report = self._reports.get_nowait()
            except queue.Empty:
                return
            if report.models:
                self.job['status']['knowledgeBase'] = knowledge_base(report.models)
            self._append(report.stage, report.type, report.data, from_lc=True)

    def tick_gm(self, phases: dict[Stage, Phase], started: set[Stage]) -> None:
        """GM syncs until nothing changes; ``started``: stages whose worker began this tick
        (seen Running whatever the process did since, so an unread report is never missed)."""
        if not self.conditions:
            self.job['status']['startTime'] = now_rfc3339()
            self._append(Stage.TRAIN, ConditionType.WAITING)
        for _ in range(MAX_SYNCS):
            stage, type_ = last(self.conditions)
            if type_ == ConditionType.READY:
                if stage == Stage.DEPLOY:
                    self._append(Stage.DEPLOY, ConditionType.COMPLETED)
                elif self._start_worker(stage):
                    started.add(stage)
                    self._append(stage, ConditionType.STARTING)
                else:
                    return
                continue
            phase = Phase.RUNNING if stage in started else phases.get(stage, Phase.NONE)
            step = gm_step(self.conditions, phase)
            if step is None:
                return
            if step[1] == ConditionType.COMPLETED:  # exit 0 without a report: see module doc
                self._append(
                    stage,
                    ConditionType.FAILED,
                    reason='ExitedWithoutReport',
                    message='worker exited 0 without reporting to the LC',
                )
            elif step[1] == ConditionType.FAILED:
                self._append(
                    stage,
                    ConditionType.FAILED,
                    reason='WorkerFailed',
                    message=f'worker {self._workers[stage].describe_exit()}',
                )
            else:
                if step[1] == ConditionType.RUNNING:
                    annotations = self.job['metadata'].setdefault('annotations', {})
                    annotations[f'sedna.io/{stage}'] = socket.gethostname()
                self._append(*step)

    def _start_worker(self, stage: Stage) -> bool:
        """Start the stage's worker for the last (Ready) condition; False: retry next tick."""
        current = self._workers.get(stage)
        if current is not None and current.phase() is Phase.RUNNING:
            log.warning(
                '%s worker %s still running: following it (as GM does)', stage, current.name
            )
            return True
        data = parse_data(self.conditions[-1])
        part = (data or {}).get('input')
        if not isinstance(part, dict):
            log.error('%s/Ready has no input data; cannot start a worker (retrying)', stage)
            return False
        kind = KIND_OF_STAGE[stage]
        train_models = latest_output_models(self.conditions, Stage.TRAIN)
        stage_input = StageInput(
            kind=kind,
            output_url=part.get('outputDir', ''),
            data_url=part.get('dataURL', ''),
            model_urls=tuple(model_urls(part)),
            has_completed_initial_training=has_completed(self.conditions, Stage.TRAIN),
            cloud_kb_index=train_models[0].get('url', '') if train_models else '',
        )
        template = self.m.job['spec'][SPEC_OF_STAGE[stage]]['template']
        container = template['spec']['containers'][0]
        name = worker_name(kind)
        dataset_url = self.m.dataset['spec']['url']
        old_view = self._views.pop(stage, None)
        if old_view is not None:  # its worker has exited (checked above)
            old_view.remove()
        view = PodView(self.state.root / PODS_DIR / name, host_mounts(stage_input, dataset_url))
        try:
            view.create()
        except OSError as e:
            log.error('cannot make the mounts of the %s worker %s: %s (retrying)', kind, name, e)
            view.remove()
            return False
        self._views[stage] = view
        env = worker_env(
            container,
            stage_input,
            self.m.namespace,
            self.m.job_name,
            name,
            self.server.url,
            dataset_url,
            self._s3(self.m.job, self.m.dataset),
            self.config.kb_server,
            view,
        )
        try:
            self._workers[stage] = WorkerProcess(
                kind,
                name,
                container.get('args') or [],
                process_env(env),
                self.config.command,
                self.state.log_dir,
            )
        except OSError as e:
            log.error('cannot start the %s worker %s: %s (retrying)', kind, name, e)
            return False
        return True

    # ---- LC ----------------------------------------------------------------------------

    def _s3(self, *objs: dict[str, Any]) -> S3Config:
        """S3 of the first object whose Secret has an S3 endpoint (first set wins, §3.4); else
        no endpoint or keys, as GM injects none then."""
        for obj in objs:
            secret = self.m.secret(obj['spec'].get('credentialName'))
            config = None if secret is None else secret.s3_config()
            if config is not None:
                return config
        return S3Config()

    def _poll_dataset(self) -> None:
        now = time.monotonic()
        if now - self._last_poll < self.config.dataset_poll_s:
            return
        self._last_poll = now
        url = self.m.dataset['spec']['url']
        try:
            parent, name = split_url(url)
            data = open_storage(parent, self._s3(self.m.dataset)).read_bytes(name)
        except StorageError as e:
            log.warning('dataset index %s unreadable: %s', url, e)
            return
        self._lines, self._header = sample_lines(data, self.m.dataset['spec']['format'])
        status = self.dataset.setdefault('status', {})
        if status.get('numberOfSamples') != len(self._lines):
            status['numberOfSamples'] = len(self._lines)
            status['updateTime'] = now_rfc3339()
            self._dirty = True

    def _tick_lc(self) -> None:
        self._poll_dataset()
        if self._lines is None:
            return  # the dataset is not known yet (LC acts only once it is)
        if self.lc.samples.split(self._lines, self.m.job['spec']['dataset']['trainProb']):
            self._dirty = True
        stage, type_ = last(self.conditions)
        if type_ != ConditionType.WAITING:
            return
        if stage == Stage.TRAIN:
            self.lc.eval_sent = self.lc.deploy_sent = False
            self._train_trigger()
        elif stage == Stage.EVAL and not self.lc.eval_sent:
            self._eval_trigger()
        elif stage == Stage.DEPLOY and not self.lc.deploy_sent:
            self._deploy()

    def _write(self, kind: str, lines: list[str]) -> tuple[str, str]:
        spec = self.m.dataset['spec']
        return write_round(
            self.output_dir,
            kind,
            self.lc.round,
            lines,
            spec['url'],
            spec['format'],
            self._header,
            self._s3(self.m.job, self.m.dataset),
        )

    def _train_trigger(self) -> None:
        if not self.trigger.ready({'num_of_samples': len(self.lc.samples.train)}):
            return
        self.lc.round += 1
        try:
            data_url, index_url = self._write('train', self.lc.samples.train)
        except StorageError as e:
            self.lc.round -= 1
            log.error('cannot write the train list of round %d: %s', self.lc.round + 1, e)
            return
        self.lc.samples.take_train()
        output = join(self.output_dir, 'train', str(self.lc.round))
        part = {'dataURL': data_url, 'dataIndexURL': index_url, 'outputDir': output}
        self._append(Stage.TRAIN, ConditionType.READY, condition_data(input_=part), from_lc=True)

    def _eval_trigger(self) -> None:
        self.lc.eval_sent = True
        models = latest_output_models(self.conditions, Stage.TRAIN)
        if models is None:
            # Sedna sends a null message and stalls here until the next Train/Waiting
            log.error('no Train/Completed with output models: eval cannot start (job stalls)')
            return
        try:
            data_url, index_url = self._write('eval', self.lc.samples.eval_list)
        except StorageError as e:
            self.lc.eval_sent = False
            log.error('cannot write the eval list of round %d: %s', self.lc.round, e)
            return
        self.lc.samples.after_eval_trigger()
        output = join(self.output_dir, 'eval', str(self.lc.round))
        part = {
            'models': models,
            'dataURL': data_url,
            'dataIndexURL': index_url,
            'outputDir': output,
        }
        self._append(Stage.EVAL, ConditionType.READY, condition_data(input_=part), from_lc=True)

    def _deploy(self) -> None:
        models = latest_output_models(self.conditions, Stage.EVAL)
        if not models:
            self.lc.deploy_sent = True
            self._append(Stage.DEPLOY, ConditionType.COMPLETED, from_lc=True)
            return
        url = models[0].get('url', '')
        s3 = self._s3(self.m.job)
        try:
            parent, name = split_url(url)
            data = open_storage(parent, s3).read_bytes(name)
            open_storage(self.output_dir, s3).write_bytes(DEPLOY_KEY, data)
        except StorageError as e:
            log.error('deploy copy %s -> %s failed: %s (retrying)', url, DEPLOY_KEY, e)
            return
        self.lc.deploy_sent = True
        deployed = [{'format': models[0].get('format', ''), 'url': url}]
        deploy_ready = condition_data(input_={'models': deployed})
        self._append(Stage.DEPLOY, ConditionType.READY, deploy_ready, from_lc=True)
