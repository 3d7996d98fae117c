"""One lifelong-learning cycle on one machine, end to end (the product's main job).

0. The simulator renders an initial dataset of the known tasks into the Dataset's directory.
1. The local controller runs the job from ``cloud/manifests/demo``: the trigger fires on the
   initial samples, Train (fine-tuning the base model shipped with the robot package) -> Eval ->
   Deploy; the deploy pointer lands in ``O/deploy/index.pkl``.
2. The robot (sim camera, perception, bridge as ROS 2 processes) drives the route known ->
   unseen -> known with the deployed model: alarms, samples spooled and uploaded.
3. The uploaded samples are annotated from the SIMULATOR'S GROUND TRUTH (the stand-in for a
   human labeller) and appended to the Dataset's ``data.txt``: the trigger fires again.
4. Incremental training, eval against the deploy rule, deploy; the bridge downloads the new
   package and perception hot-swaps it (the nodes keep running).
5. The same route again; the observer's timelines of both drives feed the report.

With ``rounds`` > 2 steps 2-4 repeat, each drive passing the tasks the next round learns
(``ROUND_TASKS``), and the last drive passes every task a round learned. The package deployed after
each round is kept for the report's matrix (``rounds.py``).

``run_demo`` returns the paths of everything it wrote; the outcome is judged in ``report``.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from robo_lifelong.errors import RoboLifelongError
from robo_lifelong.offline.annotation import annotate_pending, ground_truth_source
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.cli import write_dataset
from robo_lifelong.sim.route import parse_schedule, schedule_seconds
from robo_lifelong.sim.tasks import KNOWN_TASKS
from robo_lifelong.transfer import model_store
from robo_lifelong.transfer.storage import S3Config, join, open_storage
from robo_lifelong_cloud.controller.conditions import ConditionType, Stage, last
from robo_lifelong_cloud.controller.manifests import load_manifests, with_overrides
from robo_lifelong_cloud.controller.runner import DEPLOY_KEY, Controller, ControllerConfig
from robo_lifelong_cloud.demo import timeline
from robo_lifelong_cloud.demo.backend import Backend, upload_tree, with_credentials
from robo_lifelong_cloud.demo.robot import Robot, RobotConfig, wait_for

log = logging.getLogger(__name__)

MANIFEST_DIR = Path(__file__).resolve().parents[2] / 'manifests'
NEW_CLASS_TASK = 'construction'  # the unseen task with new classes (barrier, traffic cone)
# What each round learns: round 1 the known tasks (the initial dataset), each later one the tasks
# of the route's unseen stretch its drive collected samples on. Night changes the whole image; the
# construction site only adds objects (the new classes); snow comes a round later, so one task
# stays unseen while others are learned; dusk (low sun, long shadows, haze) last.
ROUND_TASKS: tuple[tuple[str, ...], ...] = (
    KNOWN_TASKS,
    ('night', NEW_CLASS_TASK),
    ('snow',),
    ('dusk',),
)
ANNOTATION_TOLERANCE_NS = 1_000_000
MIN_SAMPLES = 13  # floor(trainProb 0.8 * 13) = 10 new training lines > 9, the demo trigger
ALARM_LEVELS = {0: 'OK', 1: 'WARN', 2: 'ERROR', 3: 'STALE'}  # DiagnosticStatus levels
_EPOCH_RE = re.compile(r'epoch (\d+) it \d+: loss ([\d.]+) val mIoU ([\d.]+)')


class DemoError(RoboLifelongError):
    """The demo could not complete a step (named in the message)."""


@dataclass(frozen=True)
class DemoConfig:
    out: Path
    quick: bool = False
    storage: str = 'local'  # or 's3' (see backend.py)
    domain_id: int = 0  # 0: a random private domain
    rounds: int = 2  # round 1 the initial model, then one update per round (ROUND_TASKS)

    def __post_init__(self) -> None:
        if not 2 <= self.rounds <= len(ROUND_TASKS):
            later = ' / '.join('+'.join(tasks) for tasks in ROUND_TASKS[1:])
            raise DemoError(
                f'rounds must be 2..{len(ROUND_TASKS)} (round 1 learns the known tasks, the '
                f'later ones {later}), got {self.rounds}'
            )

    @property
    def width(self) -> int:
        return 212 if self.quick else 424

    @property
    def height(self) -> int:
        return 120 if self.quick else 240

    rate_hz: float = 15.0  # the camera's

    @property
    def worker_env(self) -> dict[str, str]:
        """The job's worker variables the run overrides: the quick run trains at its half size
        from an untrained net (the shipped base model, trained at 240x424, segments half-size
        frames poorly: fine-tuned there for the quick run's 300 steps it lost 5 points on an old
        task in round 2 and the update was refused), and its updates weigh rare classes as its
        initial training does (a cone is a few pixels there: with the default 0.25 a CI run's
        update reached cone IoU 0.15)."""
        if not self.quick:
            return {}
        return {
            'image_height': str(self.height),
            'image_width': str(self.width),
            'initial_model': '',
            'update_class_balance': '0.5',
        }

    @property
    def frames_per_task(self) -> int:
        return 30 if self.quick else 80

    @property
    def _stretch_seconds(self) -> tuple[int, int]:
        return (6, 8) if self.quick else (15, 20)  # a known and an unseen stretch

    def route(self, unseen: tuple[str, ...]) -> str:
        # known -> unseen -> known; the second known task is another one, so "not forgotten"
        # is measured on two old tasks.
        known_s, unseen_s = self._stretch_seconds
        stretch = [f'{task}:{unseen_s}' for task in unseen]
        return ','.join([f'sunny:{known_s}', *stretch, f'overcast:{known_s}'])

    @property
    def schedules(self) -> tuple[str, ...]:
        """The route of each drive: drive k (before round k + 2) passes the tasks that round
        learns. The last drive (after the last round) is the first drive's route, then the
        later rounds' tasks and known ground again: the simulator renders a frame from its route
        time alone, so the report compares the first and last models on the same images
        (docs/design.md, Demo), and the drives that collect samples stay as they are."""
        before = tuple(self.route(ROUND_TASKS[k]) for k in range(1, self.rounds))
        later = [task for tasks in ROUND_TASKS[2 : self.rounds] for task in tasks]
        if not later:
            return (*before, before[0])
        known_s, unseen_s = self._stretch_seconds
        tail = [f'{task}:{unseen_s}' for task in later] + [f'sunny:{known_s}']
        return (*before, ','.join([before[0], *tail]))

    @property
    def schedule(self) -> str:
        """The first drive's route (the one the report compares the last drive with)."""
        return self.schedules[0]

    @property
    def matrix_frames_per_task(self) -> int:
        """Fresh frames per task of the rounds' mIoU matrix (``rounds.py``)."""
        return 8 if self.quick else 20

    @property
    def timeout_s(self) -> float:
        # A stall guard, not a speed target: waiting for a deploy it counts from the job's last
        # progress (condition or training epoch). The quick run's first training takes ~40 s on
        # an idle 2-core machine and took > 600 s in all with the machine loaded ~8 times over.
        return 600.0


@dataclass(frozen=True)
class DemoPaths:
    out: Path
    storage_url: str  # the Dataset's directory = the bridge's storage root
    output_dir: str  # the job's outputDir
    state: Path
    robot: Path
    # observer output of each drive: before each update, then after the last one
    drives: tuple[Path, ...]

    s3: S3Config | None  # S3 endpoint and keys; None for local storage

    @classmethod
    def make(cls, out: Path, backend: Backend, rounds: int = 2) -> DemoPaths:
        return cls(
            out,
            backend.storage_url,
            backend.output_dir,
            out / 'state',
            out / 'robot',
            tuple(out / f'drive_{k}' for k in range(1, rounds + 1)),  # drive k: round k's model
            backend.s3,
        )

    @property
    def rounds_dir(self) -> Path:
        """The package deployed after each round, ``<rounds_dir>/<round>/``."""
        return self.out / 'rounds'


class Progress:
    """Live progress lines in the terminal, each prefixed with the time since the start."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say_fn = say
        self.start = time.monotonic()
        self.stage_times: dict[str, float] = {}
        self._stage: str | None = None
        self._stage_start = self.start

    def say(self, text: str) -> None:
        self.say_fn(f'[{time.monotonic() - self.start:6.1f}s] {text}')

    def stage(self, name: str) -> None:
        """Start timing the demo step ``name`` (the previous one ends)."""
        now = time.monotonic()
        if self._stage is not None:
            self.stage_times[self._stage] = round(now - self._stage_start, 1)
        self._stage, self._stage_start = name, now
        self.say(f'== {name}')

    def finish(self) -> None:
        self.stage('done')


class JobRunner:
    """The local controller in a background thread, and waits on its conditions."""

    def __init__(
        self,
        worker_env: dict[str, str],
        paths: DemoPaths,
        backend: Backend,
        progress: Progress,
    ) -> None:
        """``worker_env``: set in the train and eval workers' env, over the job manifest's."""
        manifests = load_manifests(
            [
                MANIFEST_DIR / 'secret.yaml',
                MANIFEST_DIR / 'dataset.yaml',
                MANIFEST_DIR / 'demo' / 'lifelonglearningjob.yaml',
            ]
        )
        manifests = with_overrides(
            with_credentials(manifests, backend),
            join(paths.storage_url, 'data.txt'),
            paths.output_dir,
            worker_env,
        )
        config = ControllerConfig(state_dir=paths.state, tick_s=1.0, dataset_poll_s=2.0)
        self.controller = Controller(manifests, config)
        self.progress = progress
        self._stop = threading.Event()
        self._lock = threading.Lock()  # held: the controller does not tick
        self._thread = threading.Thread(target=self._run, name='controller', daemon=True)
        self._seen = 0
        self._epoch_line = ''

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self.controller.tick()
            self._stop.wait(self.controller.config.tick_s)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No tick inside: the LC sees a batch of annotations at once, not its first lines
        (a trigger on a partial batch would train on a few samples and leave the rest for a
        third round)."""
        with self._lock:
            yield

    def start(self) -> None:
        self.controller.start()
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30.0)
        self.controller.stop()

    def deploys(self) -> int:
        return sum(
            1
            for c in list(self.controller.conditions)
            if (c['stage'], c['type']) == (Stage.DEPLOY, ConditionType.READY)
        )

    def _report_progress(self) -> bool:
        """Say what is new (job conditions, the last training epoch); True if anything was."""
        seen_before, epoch_before = self._seen, self._epoch_line
        self._say_progress()
        return (self._seen, self._epoch_line) != (seen_before, epoch_before)

    def _say_progress(self) -> None:
        conditions = list(self.controller.conditions)
        for c in conditions[self._seen :]:
            reason = f' ({c.get("message") or c.get("reason")})' if c.get('reason') else ''
            self.progress.say(f'job: {c["stage"]}/{c["type"]}{reason}')
            if c['type'] == ConditionType.FAILED:
                self.progress.say(f'worker log: {self._worker_log(Stage(c["stage"]))}')
        self._seen = len(conditions)
        worker = self.controller.worker(Stage.TRAIN)
        state = last(conditions)
        if worker is None or state != (Stage.TRAIN, ConditionType.RUNNING):
            return
        log_path = self.controller.state.log_dir / f'{worker.name}.log'
        try:
            lines = log_path.read_text(encoding='utf-8', errors='replace').splitlines()
        except OSError:
            return
        epochs = [m for line in lines if (m := _EPOCH_RE.search(line))]
        if epochs and epochs[-1].group(0) != self._epoch_line:
            self._epoch_line = epochs[-1].group(0)
            m = epochs[-1]
            self.progress.say(
                f'training: epoch {m.group(1)}, loss {m.group(2)}, val mIoU {m.group(3)}'
            )

    def _worker_log(self, stage: Stage) -> str:
        worker = self.controller.worker(stage)
        return str(self.controller.state.log_dir / f'{worker.name}.log') if worker else '(none)'

    def wait_deployed(self, count: int, timeout_s: float, robot: Robot | None = None) -> None:
        """Until ``count`` deploys happened and the job is back in Train/Waiting.

        ``timeout_s`` is a stall guard: it counts from the last progress (a new job condition or
        training epoch), so a loaded machine that trains slowly is never cut off.
        """
        deadline = time.monotonic() + timeout_s
        failures_before = self._failures()
        while True:
            if self._report_progress():
                deadline = time.monotonic() + timeout_s
            conditions = list(self.controller.conditions)
            back_to_train = last(conditions) == (Stage.TRAIN, ConditionType.WAITING)
            if self.deploys() >= count and back_to_train:
                return
            if self._failures() > failures_before:
                raise DemoError(
                    f'the job failed at {last(conditions)}; see {self.controller.state.log_dir}'
                )
            if robot is not None:
                robot.check()
            if time.monotonic() > deadline:
                raise DemoError(
                    f'no deploy #{count}: no progress for {timeout_s:.0f} s; '
                    f'job at {last(conditions)}, '
                    f'samples {self.controller.dataset.get("status", {})}'
                )
            time.sleep(0.5)

    def _failures(self) -> int:
        conditions = list(self.controller.conditions)
        return sum(1 for c in conditions if c['type'] == ConditionType.FAILED)


def _fresh(paths: DemoPaths) -> None:
    """A demo run starts from nothing: its own subdirectories of ``out`` are removed."""
    for path in (paths.state, paths.robot, paths.rounds_dir, *paths.drives):
        shutil.rmtree(path, ignore_errors=True)
    for url in (paths.storage_url, paths.output_dir):
        if not url.startswith('s3://'):
            shutil.rmtree(url, ignore_errors=True)


def _ground_truth_frames(robot: Robot) -> int:
    return len(list(robot.cfg.ground_truth_dir.glob('*.json')))


def deployed_version(paths: DemoPaths) -> str:
    """``model/version`` of the package the deploy pointer names (model_watch's format)."""
    pointer = model_store.read_pointer(join(paths.output_dir, DEPLOY_KEY), paths.s3)
    return f'v{pointer.version}-{pointer.content_hash[:12]}'


def drive(
    robot: Robot, out_dir: Path, version: str, schedule: str, progress: Progress, timeout_s: float
) -> None:
    """One pass of the route ``schedule`` once perception runs ``version``, recorded by the
    observer."""
    robot.start_observer(out_dir)
    wait_for(
        lambda: timeline.model_version(timeline.read_timeline(out_dir)) == version,
        timeout_s,
        f'the perception node to run model {version}',
        robot,
    )
    progress.say(f'robot: perception runs model {version}; driving {schedule}')
    frames_before = _ground_truth_frames(robot)
    route_frames = round(schedule_seconds(parse_schedule(schedule)) * robot.cfg.rate_hz)
    robot.start('sim_camera', ['-p', f'schedule:={schedule}'])
    task = level = None
    # the camera writes each frame's ground truth before publishing it: stop after one route
    while _ground_truth_frames(robot) - frames_before < route_frames:
        robot.check()
        records = timeline.read_timeline(out_dir)
        tasks = timeline.of(records, 'sim/task')
        alarms = timeline.of(records, 'alarm')
        samples = len(timeline.of(records, 'unseen/sample'))
        now_task = tasks[-1]['data'] if tasks else None
        now_level = ALARM_LEVELS.get(alarms[-1]['level'], '?') if alarms else None
        if (now_task, now_level) != (task, level):
            task, level = now_task, now_level
            progress.say(f'robot: task {task}, alarm {level}, samples collected {samples}')
        time.sleep(0.2)
    robot.stop('sim_camera')
    # the bridge empties the spool before the drive counts as done
    wait_for(
        lambda: timeline.upload_backlog(timeline.read_timeline(out_dir)) == 0,
        timeout_s,
        'the bridge to upload the spooled samples',
        robot,
    )
    time.sleep(1.5)  # a last bridge status after the final upload
    robot.stop('observer')
    records = timeline.read_timeline(out_dir)
    progress.say(
        f'robot: drive done: {len(timeline.of(records, "segmentation/labels"))} frames segmented, '
        f'{len(timeline.of(records, "unseen/sample"))} samples collected and uploaded'
    )


def _initial_dataset(cfg: DemoConfig, backend: Backend, progress: Progress) -> int:
    camera = CameraModel(width=cfg.width, height=cfg.height)
    tasks = list(KNOWN_TASKS)
    if backend.s3 is None:
        return write_dataset(Path(backend.storage_url), tasks, cfg.frames_per_task, 0, camera)
    local = cfg.out / 'initial_dataset'
    shutil.rmtree(local, ignore_errors=True)
    frames = write_dataset(local, tasks, cfg.frames_per_task, 0, camera)
    files = upload_tree(local, backend)
    progress.say(f'uploaded {files} files to {backend.storage_url}')
    return frames


def run_demo(
    cfg: DemoConfig, backend: Backend, say: Callable[[str], None]
) -> tuple[DemoPaths, dict]:
    """Run the whole cycle on ``backend`` (see ``backend.open_backend``); returns the paths and
    the step wall times and counts."""
    progress = Progress(say)
    paths = DemoPaths.make(cfg.out.resolve(), backend, cfg.rounds)
    _fresh(paths)
    progress.stage('initial dataset (simulator)')
    frames = _initial_dataset(cfg, backend, progress)
    progress.say(f'{frames} frames of {", ".join(KNOWN_TASKS)} in {paths.storage_url}')
    counts = _cycle(cfg, paths, backend, progress)
    counts['initial_frames'] = frames
    return paths, counts


def read_decision(paths: DemoPaths, number: int) -> dict:
    """The eval worker's decision record of round ``number`` (``O/eval/<number>/``)."""
    storage = open_storage(paths.output_dir, paths.s3)
    return json.loads(storage.read_bytes(f'eval/{number}/decision.json'))


def _finish_round(
    paths: DemoPaths, number: int, tasks: tuple[str, ...], started: float, progress: Progress
) -> dict:
    """Keep the package deployed after round ``number`` and the eval worker's verdict on it."""
    package = model_store.open_model(
        join(paths.output_dir, DEPLOY_KEY), paths.rounds_dir / str(number), paths.s3
    )
    decision = read_decision(paths, number)['decision']
    verdict = 'deployed' if decision['deploy'] else 'refused (the deployed model stays)'
    progress.say(f'round {number}: candidate {verdict}; the robot runs v{package.version}')
    return {
        'round': number,
        'tasks': list(tasks),
        'package_dir': str(package.path),
        'candidate_deployed': bool(decision['deploy']),
        'reasons': list(decision['reasons']),
        'seconds': round(time.monotonic() - started, 1),
    }


def _annotate(job: JobRunner, backend: Backend, robot: Robot, progress: Progress) -> int:
    with job.paused():
        report = annotate_pending(
            backend.storage(),
            ground_truth_source(robot.cfg.ground_truth_dir, ANNOTATION_TOLERANCE_NS),
        )
    progress.say(
        f'annotated {len(report.annotated)} uploaded samples from the SIMULATOR GROUND '
        f'TRUTH (stand-in for a human labeller); appended to {backend.storage_url}/data.txt'
    )
    if len(report.annotated) < MIN_SAMPLES:
        raise DemoError(
            f'only {len(report.annotated)} samples were collected and annotated; the '
            f"demo job's trigger needs {MIN_SAMPLES}"
        )
    return len(report.annotated)


def _cycle(cfg: DemoConfig, paths: DemoPaths, backend: Backend, progress: Progress) -> dict:
    robot_cfg = RobotConfig(
        robot_dir=paths.robot,
        storage_url=paths.storage_url,
        model_url=join(paths.output_dir, DEPLOY_KEY),
        schedule=cfg.schedule,
        domain_id=cfg.domain_id or random.randint(1, 100),
        width=cfg.width,
        height=cfg.height,
        rate_hz=cfg.rate_hz,
        s3=backend.s3,
    )
    job = JobRunner(cfg.worker_env, paths, backend, progress)
    counts: dict = {'annotated': 0, 'rounds': []}
    with Robot(robot_cfg) as robot:
        job.start()
        try:
            started = time.monotonic()
            progress.stage('round 1: initial training -> eval -> deploy')
            job.wait_deployed(1, cfg.timeout_s)
            counts['rounds'].append(_finish_round(paths, 1, ROUND_TASKS[0], started, progress))
            robot.start('perception')
            robot.start('bridge')
            for number in range(2, cfg.rounds + 1):
                started = time.monotonic()
                k = number - 2  # the drive that collects this round's samples
                progress.stage(f'round {number}: drive (collection)')
                version = deployed_version(paths)
                drive(robot, paths.drives[k], version, cfg.schedules[k], progress, cfg.timeout_s)
                progress.stage(f'round {number}: annotation (simulator ground truth)')
                counts['annotated'] += _annotate(job, backend, robot, progress)
                progress.stage(f'round {number}: retraining -> eval -> deploy')
                job.wait_deployed(number, cfg.timeout_s, robot)
                tasks = ROUND_TASKS[number - 1]
                counts['rounds'].append(_finish_round(paths, number, tasks, started, progress))
            progress.stage('drive after the last update')
            version = deployed_version(paths)
            drive(robot, paths.drives[-1], version, cfg.schedules[-1], progress, cfg.timeout_s)
        finally:
            job.close()
    progress.finish()
    counts['stage_seconds'] = progress.stage_times
    counts['total_seconds'] = round(time.monotonic() - progress.start, 1)
    return counts
