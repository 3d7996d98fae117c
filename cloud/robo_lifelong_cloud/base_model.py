"""The base model that ships with the robot package: known-task segmentation trained from scratch
on simulator frames by one seeded recipe (``make base-model``).

Three disjoint frame sets come from the simulator, each from worlds (street layouts) of its own:
training frames from ``train_worlds``, unseen-calibration frames from ``calibration_worlds``,
validation frames from ``validation_seed``. Several training worlds teach the net streets rather
than one street plan; calibrating on layouts it never trained on keeps the unseen threshold
honest on the streets a robot drives (fitted on training-world frames, known streets elsewhere
scored over it: a false alarm on every new campus). In each world, ``route_share`` of the frames
are seen from poses along the route a robot walks (``sim.route``: it weaves to the curb line),
the rest from the simulator's random poses, which never stand at the curb line: trained and
calibrated on random poses only, the net took every approach to the curb for an unseen task.

The package (ONNX + manifest + safetensors) records the recipe: command, config, seed, source
commit; its ``metrics`` are the robot runtime's per-task and per-class IoU on the validation
frames, which ``tests/cloud/test_base_model.py`` regenerates from the seed and re-measures.
``MODEL_CARD.md`` beside the package is written from the same numbers.

Why a shipped model: a new robot has no model until the first Sedna round deploys one; with this
package ``ros2 launch robo_lifelong robot.launch.py`` segments the known tasks out of the box, and
the first incremental round starts from it.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from robo_lifelong.labels import KNOWN_CLASS_IDS
from robo_lifelong.models import package as mp
from robo_lifelong.models.runtime import SegmentationRuntime
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.route import Route
from robo_lifelong.sim.tasks import KNOWN_TASKS
from robo_lifelong.sim.world import CampusWorld
from robo_lifelong_cloud.calibration import fit_calibration
from robo_lifelong_cloud.data import Frame
from robo_lifelong_cloud.eval import runtime_report
from robo_lifelong_cloud.export import check_parity, export_onnx
from robo_lifelong_cloud.model import SegNetConfig, build_model, num_parameters, weights_bytes
from robo_lifelong_cloud.train import package_manifest
from robo_lifelong_cloud.train_loop import TrainConfig, embed_and_logits, train

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
# The package inside the ROS package's source tree; setup.py installs it to share/robo_lifelong/.
DEFAULT_OUT = REPO / 'ros2_ws' / 'src' / 'robo_lifelong' / 'models' / 'base'
CARD_FILE = 'MODEL_CARD.md'
COMMAND = 'make base-model'
CALIBRATION_START = 1_000_000  # calibration frames' indices: never a training frame's
# Route frames: every ROUTE_STEP_S seconds of the walk (prime to the route's 40 s weave and 17 s
# look-around, so the poses spread over both); calibration frames further down the street.
ROUTE_STEP_S = 2.9
ROUTE_CALIBRATION_START_S = 2000.0


@dataclass(frozen=True)
class BaseModelConfig:
    seed: int = 0  # training seed (weights, batches, augmentation)
    train_worlds: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 8)  # layouts of the training frames
    calibration_worlds: tuple[int, ...] = (20, 21, 22, 23)  # layouts of the calibration frames
    validation_seed: int = 7  # world of the validation frames (the model card's numbers)
    height: int = 240
    width: int = 424
    channels: int = 4  # RGB-D: the robot's camera gives depth (without it the model sees 0 m)
    width_mult: float = 1.0
    tasks: tuple[str, ...] = KNOWN_TASKS
    train_per_world: int = 50  # frames per task and training world
    calibration_per_world: int = 15  # frames per task and calibration world
    route_share: float = 0.5  # of those: seen from poses along the route (module doc)
    validation_per_task: int = 20
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=10_000, max_iters=2500, batch_size=8)
    )


def render(world: CampusWorld, task: str, start: int, n: int) -> list[Frame]:
    out = []
    for i in range(start, start + n):
        f = world.random_frame(task, i)
        out.append(Frame(f.rgb, f.depth_mm, f.labels, task))
    return out


def render_route(route: Route, task: str, start_s: float, n: int) -> list[Frame]:
    """``n`` frames of ``task`` along ``route`` (a route's frames depend on route time only)."""
    out = []
    for i in range(n):
        t = start_s + i * ROUTE_STEP_S
        f = route.world.render(route.pose_at(t), task, noise_seed=int(t * 1000))
        out.append(Frame(f.rgb, f.depth_mm, f.labels, task))
    return out


def validation_frames(config: BaseModelConfig) -> Iterator[Frame]:
    """The model card's validation frames, regenerated from the recorded seed (one at a time:
    the test that re-measures the card needs no more memory than one frame)."""
    world = CampusWorld(config.validation_seed, CameraModel(config.width, config.height))
    for task in config.tasks:
        for i in range(config.validation_per_task):
            f = world.random_frame(task, i)
            yield Frame(f.rgb, f.depth_mm, f.labels, task)


def measure(package: mp.ModelPackage, frames: Sequence[Frame] | Iterator[Frame]) -> dict:
    """The robot runtime's ``metrics.iou_report`` of ``package`` on labelled frames."""
    runtime = SegmentationRuntime(package)
    return runtime_report(runtime, ((f.task, f.rgb, f.depth_mm, f.labels) for f in frames))


def card_metrics(report: dict) -> dict:
    """What the manifest records: mIoU overall and per task, per-class IoU per task."""
    return {
        'miou': round(report['miou'], 4),
        'per_task': {
            task: {
                'miou': round(r['miou'], 4),
                'per_class': {c: round(v, 4) for c, v in r['per_class'].items()},
            }
            for task, r in report['per_task'].items()
        },
    }


def source_commit() -> str:
    """``git describe``-like record of the tree the recipe ran on (``+dirty`` if modified)."""
    try:
        head = subprocess.run(
            ['git', 'rev-parse', 'HEAD'], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ['git', 'status', '--porcelain', '--', 'cloud', 'ros2_ws/src/robo_lifelong'],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown (not a git checkout)'
    return head + ('+dirty' if dirty else '')


def recipe_frames(config: BaseModelConfig) -> tuple[list[Frame], list[Frame]]:
    """The recipe's (training, calibration) frames: the known tasks, each set from its worlds."""
    camera = CameraModel(config.width, config.height)

    def frames(worlds: tuple[int, ...], start: int, start_s: float, per_world: int) -> list[Frame]:
        on_route = round(per_world * config.route_share)
        out: list[Frame] = []
        for seed in worlds:
            route = Route(((config.tasks[0], 1.0),), seed, camera)
            for task in config.tasks:
                out += render(route.world, task, start, per_world - on_route)
                out += render_route(route, task, start_s, on_route)
        return out

    train_frames = frames(config.train_worlds, 0, 0.0, config.train_per_world)
    calibration = frames(
        config.calibration_worlds,
        CALIBRATION_START,
        ROUTE_CALIBRATION_START_S,
        config.calibration_per_world,
    )
    return train_frames, calibration


def build(config: BaseModelConfig, out: Path) -> mp.ModelPackage:
    start = time.monotonic()
    train_frames, calibration = recipe_frames(config)
    log.info('rendered %d training and %d calibration frames', len(train_frames), len(calibration))
    model = build_model(
        SegNetConfig(len(KNOWN_CLASS_IDS), config.channels, config.width_mult), seed=config.seed
    )
    cfg = config.train
    if cfg.seed != config.seed:
        cfg = TrainConfig(**{**asdict(cfg), 'seed': config.seed})
    result = train(model, train_frames, [], cfg)
    onnx_bytes = export_onnx(model, config.height, config.width)
    check_parity(model, onnx_bytes)
    embeddings, logits = embed_and_logits(model, calibration)
    unseen = fit_calibration(embeddings, [f.task for f in calibration], logits)
    weights, architecture = weights_bytes(model)
    training = {
        'samples_per_task': {
            t: len(config.train_worlds) * config.train_per_world for t in config.tasks
        },
        'held_out_per_task': {
            t: len(config.calibration_worlds) * config.calibration_per_world for t in config.tasks
        },
        'epochs': cfg.epochs,
        'iterations': result.iterations,
        'seconds': round(result.seconds, 1),
        'incremental': False,
        'recipe': {
            'command': COMMAND,
            'seed': config.seed,
            'source_commit': source_commit(),
            'config': asdict(config),
            'parameters': num_parameters(model),
        },
    }
    body = package_manifest(
        model,
        config.height,
        config.width,
        None,
        list(config.tasks),
        unseen.to_json(),
        training,
        {},
        weights={'architecture': architecture},
    )
    with tempfile.TemporaryDirectory(prefix='base-model-') as tmp:
        unmeasured = mp.write_package(Path(tmp) / 'package', onnx_bytes, body, weights)
        metrics = card_metrics(measure(unmeasured, validation_frames(config)))
    package = mp.write_package(out, onnx_bytes, dict(body, metrics=metrics), weights)
    (out.parent / CARD_FILE).write_text(model_card(package))
    log.info('base model v%d in %.0f s: %s', package.version, time.monotonic() - start, metrics)
    return package


def model_card(package: mp.ModelPackage) -> str:
    """MODEL_CARD.md, written from the manifest (every number in it is the manifest's)."""
    m = package.manifest
    recipe = m['training']['recipe']
    config = config_of(package)
    per_task = m['metrics']['per_task']
    classes = sorted({c for r in per_task.values() for c in r['per_class']})
    pct = lambda v: '' if v is None else f'{100 * v:.1f}'  # noqa: E731
    rows = [
        f'| {c} | ' + ' | '.join(pct(per_task[t]['per_class'].get(c)) for t in per_task) + ' |'
        for c in classes
    ]
    task_rows = [f'| {t} | {pct(r["miou"])} |' for t, r in per_task.items()]
    return '\n'.join(
        [
            '# Base model: known-task segmentation (simulator)',
            '',
            f'Package `models/base/` (installed to `share/robo_lifelong/models/base/`): version '
            f'{m["version"]}, content hash `{m["content_hash"][:16]}…`, '
            f'{recipe["parameters"]:,} parameters, input {m["input"]["height"]}x'
            f"{m['input']['width']} RGB-D, labels at the frame's own resolution.",
            '',
            '## How it was made',
            f'`{recipe["command"]}` (`python -m robo_lifelong_cloud.base_model`), seed '
            f'{recipe["seed"]}, source commit `{recipe["source_commit"]}`; '
            f'{m["training"]["iterations"]} iterations (batch {config.train.batch_size}) in '
            f'{m["training"]["seconds"]:.0f} s on the machine that built it. The whole config is '
            'in `manifest.json` under `training.recipe`.',
            '',
            'Outlier exposure: '
            + (
                f'in {config.train.outlier_share:.0%} of the training frames made-up things '
                '(random shapes, colours and textures, never a barrier, cone or snow) are pasted '
                'in and the net is trained to be unsure on them (loss weight '
                f'{config.train.outlier_weight}), so its pixel evidence of unseen things rises '
                'on objects no task taught (`robo_lifelong_cloud/outliers.py`).'
                if config.train.outlier_weight > 0 and config.train.augment
                else 'off.'
            ),
            '',
            '## Data',
            f'Simulator frames only (`robo_lifelong.sim`), from worlds (street layouts) kept '
            f'apart: {config.train_per_world} training frames per task from each of the worlds '
            f'{_seeds(config.train_worlds)}; {config.calibration_per_world} per task from each of '
            f'the worlds {_seeds(config.calibration_worlds)} fit the unseen-task calibration, so '
            'its threshold is set on streets the net never trained on; '
            f'{config.validation_per_task} validation frames per task from world '
            f'{config.validation_seed} give the numbers below. In the training and calibration '
            f'worlds {config.route_share:.0%} of the frames are seen from poses along the route '
            'a robot walks (weaving to the curb line), the rest from random poses.',
            '',
            f'Known tasks: {", ".join(m["known_tasks"])}. Classes: the '
            f'{len(m["classes"])} known-task classes (ids 0-{len(m["classes"]) - 1}); '
            'construction objects (barrier, traffic cone) are not among them.',
            '',
            '## Validation (robot runtime, full-resolution labels)',
            f'mIoU over all validation frames: {pct(m["metrics"]["miou"])} %.',
            '',
            '| task | mIoU % |',
            '|---|---|',
            *task_rows,
            '',
            'IoU % per class and task (empty: the class does not occur):',
            '',
            '| class | ' + ' | '.join(per_task) + ' |',
            '|---|' + '---|' * len(per_task),
            *rows,
            '',
            '`tests/cloud/test_base_model.py` regenerates these frames from the seeds and checks '
            "that the package reproduces every task's mIoU within 0.5 point.",
            '',
            '## Limits',
            '- Trained and measured on the simulator only: on a real camera expect much lower '
            'numbers until the robot collects real frames and the lifelong job retrains.',
            '- Night, snow and construction sites are unseen tasks for this model on purpose: '
            'the robot recognises them as unseen, collects them and raises its alarm.',
            '- Without a depth image the model sees 0 m everywhere and segments worse.',
            '',
            '## Your own initial model on real data',
            "Label a first batch of your robot's frames (Sedna dataset format: "
            '`rgb depth label` lines, see README "Dataset"), point a Sedna `Dataset` at it and '
            'run the `LifelongLearningJob` (`cloud/manifests/`, or locally `robo-lifelong-job '
            'run`): with no deployed model its first round trains an initial model on that '
            'data, starting from this base model (the train worker\'s `initial_model: "base"`; '
            "empty: from an untrained net), evaluates it and deploys it; the robot's bridge "
            'installs it and perception hot-swaps from this base model to it. '
            '`model_path:=DIR` starts a robot on any package directory.',
            '',
        ]
    )


def _seeds(worlds: tuple[int, ...]) -> str:
    return ', '.join(str(w) for w in worlds)


def config_of(package: mp.ModelPackage) -> BaseModelConfig:
    """The recipe's config as the package records it."""
    raw = dict(package.manifest['training']['recipe']['config'])
    for key in ('tasks', 'train_worlds', 'calibration_worlds'):  # JSON lists back to tuples
        raw[key] = tuple(raw[key])
    raw['train'] = TrainConfig(**raw['train'])
    return BaseModelConfig(**raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m robo_lifelong_cloud.base_model')
    parser.add_argument('--out', type=Path, default=DEFAULT_OUT, help='package directory')
    parser.add_argument('--iterations', type=int, help='training iterations (quick trials)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s: %(message)s')
    config = BaseModelConfig()
    if args.iterations is not None:
        config = BaseModelConfig(
            train=TrainConfig(**{**asdict(config.train), 'max_iters': args.iterations})
        )
    package = build(config, args.out)
    print(json.dumps(package.manifest['metrics'], indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
