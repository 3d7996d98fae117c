"""The train worker's job: dataset -> (initial or incremental) training -> model package + pointer.

Initial training when ``HAS_COMPLETED_INITIAL_TRAINING`` is not ``true`` (or ``CLOUD_KB_INDEX`` is
empty, Sedna quirk §8.3 item 6: then we log it and train anew): from a seeded untrained net, or,
with the job's ``initial_model`` set (``base``: the base model shipped with the robot package),
fine-tuning that model on the initial dataset. Otherwise the parent
package named by ``CLOUD_KB_INDEX`` (a deploy pointer or a package URL) is loaded, its classifier
grown when the data has new label ids, and trained on the new samples mixed with old-task samples
from the original dataset (rehearsal) while distilling the parent's outputs on the old classes
(``train_loop.train(..., teacher=parent)``) so the old tasks are not forgotten.

Classes: logit row = label id, the model has ``max(22 known classes, largest id in the data + 1)``
rows, capped at ``num_class`` (ids at or above it are ignored, as in Sedna's example). The last
frames of each task (``1 - train_ratio`` of them, at least 2) are held out: they give the
validation mIoU in the manifest and fit the unseen calibration, which needs frames the model has
not fitted (a task with too few is topped up: ``MIN_CALIBRATION_PER_TASK``).

Reads: ``TRAIN_DATASET_URL`` and the samples under ``dirname(ORIGINAL_DATASET_URL)`` (also the
original index, for rehearsal), and for an update the parent's train output ``O/train/<r-1>/``
named by ``CLOUD_KB_INDEX`` (pointer, package, the eval worker's ``verdict.json``) plus the
reference package it leads to (``reference.choose_reference``); all inside ``O/train/``, which a
Sedna train pod mounts as the parent directory of ``OUTPUT_URL``.

Output under ``OUTPUT_URL``: ``reference/`` (a verified copy of the model the candidate must not
be worse than, i.e. the model deployed while it is judged; only for an update that has one:
the eval pod cannot see ``O/deploy/``), ``package/`` (model.onnx + manifest.json +
weights.safetensors; the manifest's ``training.parent`` / ``training.reference`` name the parent
and the reference by version and content hash), ``plots/`` and last the pointer
``OUTPUT_URL/index.json`` that is reported to the LC.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from robo_lifelong import share
from robo_lifelong.errors import ConfigError, DatasetError
from robo_lifelong.io.dataset import Sample
from robo_lifelong.labels import CLASSES, KNOWN_CLASS_IDS
from robo_lifelong.models import package as mp
from robo_lifelong.transfer import model_store
from robo_lifelong.transfer.storage import join, open_storage, split_url
from robo_lifelong_cloud import plots
from robo_lifelong_cloud.calibration import fit_calibration
from robo_lifelong_cloud.data import (
    Frame,
    fetch_samples,
    input_spec,
    load_frames,
    max_label,
    resolve_dataset,
)
from robo_lifelong_cloud.export import MANIFEST_OUTPUTS, check_parity, export_onnx
from robo_lifelong_cloud.model import (
    OUTPUT_STRIDE,
    SegNet,
    SegNetConfig,
    build_model,
    grow_classes,
    model_from_weights,
    weights_bytes,
)
from robo_lifelong_cloud.reference import choose_reference, publish_reference, training_fields
from robo_lifelong_cloud.sedna_env import SednaEnv
from robo_lifelong_cloud.train_loop import (
    TrainConfig,
    embed_and_logits,
    evaluate,
    mix_rehearsal,
    train,
)

log = logging.getLogger(__name__)

MIN_HOLDOUT = 2  # per task: fit_calibration needs two frames of every known task
# Per known task, the frames the unseen calibration should have: with fewer, its threshold is
# fitted on a handful of frames (3 per task with Sedna's train_ratio 0.9 on a 105-line dataset:
# 21 % of fresh known frames then alarmed) and its embedding mean is noisy (a task learned from
# one drive, 8 held-out frames: 35 % of its fresh frames alarmed). Updates top up old tasks from
# the rehearsal set, new tasks from their training frames; below it the worker says so in its log
# and in the manifest.
MIN_CALIBRATION_PER_TASK = 20
REHEARSAL_RATIO = 0.67  # share of old-task frames in an update: two per new frame
SHIPPED_BASE_MODEL = 'base'  # initial_model's name for share/robo_lifelong/models/base


@dataclass(frozen=True)
class TrainOutput:
    pointer_url: str
    package: mp.ModelPackage


def split_holdout(frames: list[Frame], train_ratio: float) -> tuple[list[Frame], list[Frame]]:
    """Per task, the last ``1 - train_ratio`` of its frames (>= MIN_HOLDOUT) are held out; a
    task with too few frames to spare them trains on all of them and is not calibrated."""
    by_task: dict[str, list[Frame]] = {}
    for f in frames:
        by_task.setdefault(f.task, []).append(f)
    train_part, held = [], []
    for task, items in by_task.items():
        n_hold = max(MIN_HOLDOUT, int(round(len(items) * (1.0 - train_ratio))))
        if len(items) < 2 * n_hold:
            log.warning('task %r has %d frames: none held out, not calibrated', task, len(items))
            train_part.extend(items)
            continue
        train_part.extend(items[:-n_hold])
        held.extend(items[-n_hold:])
    return train_part, held


def calibration_top_up(
    held: Sequence[Frame], spare: Sequence[Sample], minimum: int = MIN_CALIBRATION_PER_TASK
) -> list[Sample]:
    """Samples of ``spare`` (old-task samples used neither for training nor held out) that bring
    each task's held-out count up to ``minimum`` where they can, in index order."""
    have = Counter(f.task for f in held)
    picked = []
    for sample in spare:
        if have[sample.task] < minimum:
            have[sample.task] += 1
            picked.append(sample)
    return picked


def training_top_up(
    calibration: Sequence[Frame],
    train_frames: Sequence[Frame],
    minimum: int = MIN_CALIBRATION_PER_TASK,
) -> list[Frame]:
    """Training frames that bring each task of ``calibration`` still below ``minimum`` up to it,
    evenly spaced over the task's training frames (they come from a drive: neighbours look alike).

    Why training frames: a task new in this round has no rehearsal frames to spare, and its few
    held-out ones (8 of a drive's 30 samples) make a noisy task mean in the embedding, so fresh
    frames of the task sit far from it. Measured on a demo update that learned night and
    construction: with 8 frames each, 35 % of fresh construction frames alarmed and snow / dusk
    (still unseen) reached AUROC 0.92 / 0.91; with 12 training frames added, 0 % and 1.0 / 0.99.
    The model has fitted these frames, so their evidence runs a little low; the record says how
    many there are."""
    have = Counter(f.task for f in calibration)
    by_task: dict[str, list[Frame]] = {}
    for f in train_frames:
        by_task.setdefault(f.task, []).append(f)
    picked = []
    for task in have:
        need, pool = minimum - have[task], by_task.get(task, [])
        if need <= 0 or not pool:
            continue
        if need >= len(pool):
            picked.extend(pool)
        else:
            picked.extend(pool[i] for i in np.linspace(0, len(pool) - 1, need).round().astype(int))
    return picked


def calibration_record(
    frames: Sequence[Frame],
    from_training: Sequence[Frame] = (),
    minimum: int = MIN_CALIBRATION_PER_TASK,
) -> dict:
    """What the manifest records of the calibration set ``frames`` (of which ``from_training``
    are training frames); warns for each task below minimum and each one topped up with
    training frames."""
    per_task = dict(sorted(Counter(f.task for f in frames).items()))
    trained = dict(sorted(Counter(f.task for f in from_training).items()))
    short = {t: n for t, n in per_task.items() if n < minimum}
    for task, n in trained.items():
        log.warning(
            'unseen calibration: task %r has %d frames the model did not train on; %d of its '
            'training frames fill the calibration (a new task has no rehearsal frames; label '
            'more frames of it for an unbiased threshold)',
            task,
            per_task[task] - n,
            n,
        )
    for task, n in short.items():
        log.warning(
            'unseen calibration: task %r has %d frames, fewer than the minimum %d: '
            'its false-alarm rate on known frames is poorly fitted (label more frames)',
            task,
            n,
            minimum,
        )
    return {
        'frames_per_task': per_task,
        'training_frames_per_task': trained,
        'minimum_per_task': minimum,
        'met': not short,
    }


def _num_classes(frames: list[Frame], cap: int, parent: SegNet | None) -> int:
    k = max(len(KNOWN_CLASS_IDS), max_label(frames) + 1)
    if parent is not None:
        k = max(k, parent.config.num_classes)
    return min(k, cap) if cap >= 2 else k


def _rehearsal_candidates(
    env: SednaEnv, parent: mp.ModelPackage, exclude: set[str], workdir: Path
) -> tuple[Path, list[Sample]]:
    """Old-task samples of the original dataset index (a host path or an ``s3://`` URL); their
    files are not fetched here. Sedna's indirect S3 download (ORIGINAL_DATASET_URL names a
    ``dataIndex.txt``) gives only this round's files: nothing to rehearse then."""
    index = env.original_dataset_url
    if split_url(index)[1] == 'dataIndex.txt':
        log.warning('ORIGINAL_DATASET_URL is an indirect download: update without rehearsal')
        return workdir, []
    try:
        root, samples = resolve_dataset(
            index, index, workdir, env.s3, 'ORIGINAL_DATASET_URL', fetch=False
        )
    except DatasetError as e:
        log.warning('incremental update without rehearsal: %s', e)
        return workdir, []
    old = [s for s in samples if s.task in parent.known_tasks and s.rgb not in exclude and s.label]
    return root, old


def package_manifest(
    model: SegNet,
    height: int,
    width: int,
    parent: mp.ModelPackage | None,
    known_tasks: list[str],
    calibration: dict | None,
    training: dict,
    metrics: dict,
    weights: dict | None = None,
) -> dict:
    """The manifest of a package of ``model`` (one builder for the worker, tests and benches)."""
    k = model.config.num_classes
    return {
        'schema_version': mp.SCHEMA_VERSION,
        'version': 1 if parent is None else parent.version + 1,
        'parent_version': None if parent is None else parent.version,
        'created': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'classes': [{'id': c.id, 'name': c.name, 'color': list(c.color)} for c in CLASSES[:k]],
        'input': input_spec(height, width, model.config.in_channels),
        'outputs': MANIFEST_OUTPUTS,
        'output_stride': OUTPUT_STRIDE,
        'embedding_dim': model.config.embedding_dim,
        'known_tasks': known_tasks,
        'unseen': calibration,
        'training': training,
        'metrics': metrics,
        'weights': weights,
    }


def _load_parent(env: SednaEnv, cache: Path) -> mp.ModelPackage | None:
    if not env.has_completed_initial_training:
        return None
    if not env.cloud_kb_index:
        log.warning('HAS_COMPLETED_INITIAL_TRAINING=true, CLOUD_KB_INDEX empty: training anew')
        return None
    return model_store.open_model(env.cloud_kb_index, cache, env.s3, env.data_path_prefix)


def _initial_package(env: SednaEnv, cache: Path) -> mp.ModelPackage | None:
    """The package the job's ``initial_model`` names (None: train from an untrained net)."""
    url = env.params.initial_model
    if not url:
        return None
    if url == SHIPPED_BASE_MODEL:
        url = str(share.find(share.BASE_MODEL))
    package = model_store.open_model(url, cache, env.s3, env.data_path_prefix)
    log.info(
        'initial training starts from v%d (%s) at %s',
        package.version,
        package.content_hash[:12],
        url,
    )
    return package


def _parent_model(package: mp.ModelPackage) -> SegNet:
    if package.weights_path is None:
        raise ConfigError(
            f'{package.path}: the package has no {mp.WEIGHTS_FILE}, so it cannot be updated'
        )
    return model_from_weights(
        package.weights_path.read_bytes(), package.manifest['weights']['architecture']
    )


def _publish(
    env: SednaEnv,
    onnx_bytes: bytes,
    manifest: dict,
    weights: bytes,
    history: list[dict],
    workdir: Path,
) -> TrainOutput:
    package_url = join(env.output_url, 'package')
    if env.output_url.startswith('s3://'):
        package = mp.write_package(workdir / 'package', onnx_bytes, manifest, weights)
        model_store.publish_package(package, package_url, env.s3)
    else:
        package = mp.write_package(package_url, onnx_bytes, manifest, weights)
    out = open_storage(env.output_url, env.s3)
    plot_dir = workdir / 'plots'
    out.upload_file(
        plots.training_curve(history, plot_dir / 'curve.png'), 'plots/training_curve.png'
    )
    if manifest['metrics']:  # empty when no frame could be held out
        chart = plots.metrics_chart(manifest['metrics'], plot_dir / 'metrics.png')
        out.upload_file(chart, 'plots/metrics.png')
    pointer = mp.DeployPointer.for_package(
        package, model_store.strip_data_prefix(package_url, env.data_path_prefix)
    )
    pointer_url = join(env.output_url, 'index.json')
    model_store.write_pointer(pointer_url, pointer, env.s3)
    return TrainOutput(pointer_url, package)


def run_train(env: SednaEnv, config: TrainConfig | None = None) -> TrainOutput:
    """Train, export, calibrate and publish; returns the pointer URL to report."""
    params = env.params
    with tempfile.TemporaryDirectory(prefix='robo-train-') as tmp:
        workdir = Path(tmp)
        parent = _load_parent(env, workdir / 'cache')
        reference = None
        if parent is not None:
            reference = choose_reference(
                env.cloud_kb_index,
                parent,
                workdir / 'cache',
                env.s3,
                env.data_path_prefix,
            )
        root, samples = resolve_dataset(
            env.train_dataset_url, env.original_dataset_url, workdir, env.s3
        )
        if parent is None:
            height, width = params.image_height, params.image_width
        else:
            height, width = parent.manifest['input']['height'], parent.manifest['input']['width']
        frames = load_frames(root, samples, height, width)
        parent_model = None if parent is None else _parent_model(parent)
        initial = None if parent is not None else _initial_package(env, workdir / 'initial')
        start_model = _parent_model(initial) if initial is not None else parent_model
        old_root, spare = root, []  # update: old-task samples neither rehearsed nor held out
        if parent is not None:
            exclude = {s.rgb for s in samples}
            old_root, old = _rehearsal_candidates(env, parent, exclude, workdir / 'original')
            rehearsed = mix_rehearsal(samples, old, REHEARSAL_RATIO)[len(samples) :]
            fetch_samples(env.original_dataset_url, old_root, rehearsed, env.s3)
            frames += load_frames(old_root, rehearsed, height, width)
            used = {s.rgb for s in rehearsed}
            spare = [s for s in old if s.rgb not in used]
        k = _num_classes(frames, params.num_class, start_model)
        channels = 4 if all(f.depth_mm is not None for f in frames) else 3
        if start_model is None:
            model = build_model(SegNetConfig(num_classes=k, in_channels=channels), seed=0)
        else:
            if initial is not None and start_model.config.in_channels != channels:
                raise ConfigError(
                    f'initial_model={params.initial_model}: it takes '
                    f'{start_model.config.in_channels} input channels, the dataset has '
                    f'{channels} (RGB-D is 4: every sample needs its depth image)'
                )
            model = grow_classes(start_model, k)
        train_frames, held = split_holdout(frames, params.train_ratio)
        if not train_frames:
            raise DatasetError(f'TRAIN_DATASET_URL={env.train_dataset_url}: no training frames')
        cfg = config or TrainConfig(
            epochs=params.epochs,
            min_iters=params.min_iterations,
            class_balance=TrainConfig.class_balance
            if parent is None
            else params.update_class_balance,
        )
        log.info(
            '%s training: %d train / %d held-out frames, %d classes, %dx%d, %d channels',
            'incremental' if parent else 'initial',
            len(train_frames),
            len(held),
            k,
            height,
            width,
            model.config.in_channels,
        )
        result = train(model, train_frames, held, cfg, teacher=parent_model)
        onnx_bytes = export_onnx(model, height, width)
        check_parity(model, onnx_bytes)
        calibration, calibrated = None, None
        if held:
            extra = calibration_top_up(held, spare)
            if extra:
                fetch_samples(env.original_dataset_url, old_root, extra, env.s3)
                log.info(
                    'unseen calibration: %d more old-task frames from the rehearsal set',
                    len(extra),
                )
            calibration_frames = (
                held + load_frames(old_root, extra, height, width) if extra else held
            )
            fill = training_top_up(calibration_frames, train_frames)
            calibration_frames = [*calibration_frames, *fill]
            calibrated = calibration_record(calibration_frames, fill)
            embeddings, logits = embed_and_logits(model, calibration_frames)
            calibration = fit_calibration(
                embeddings, [f.task for f in calibration_frames], logits
            ).to_json()
            metrics = {k_: v for k_, v in evaluate(model, held).items() if k_ != 'loss'}
        else:
            log.warning('no held-out frames: no unseen calibration and no validation metrics')
            metrics = {}
        known_tasks = sorted({f.task for f in frames} | set(parent.known_tasks if parent else ()))
        training = {
            'samples_per_task': dict(sorted(Counter(f.task for f in train_frames).items())),
            'held_out_per_task': dict(sorted(Counter(f.task for f in held).items())),
            'epochs': cfg.epochs,
            'distilled': parent_model is not None and cfg.distill > 0,
            'class_balance': cfg.class_balance,
            'iterations': result.iterations,
            'seconds': round(result.seconds, 2),
            'incremental': parent is not None,
            'rehearsal_frames': len(frames) - len(samples),
            'initial_model': None
            if initial is None
            else {'version': initial.version, 'content_hash': initial.content_hash},
            'calibration': calibrated,
            **training_fields(parent, reference),
        }
        weights, architecture = weights_bytes(model)
        manifest = package_manifest(
            model,
            height,
            width,
            parent,
            known_tasks,
            calibration,
            training,
            metrics,
            weights={'architecture': architecture},
        )
        if reference is not None:  # before the package: eval finds it whenever it finds that
            publish_reference(reference, env.output_url, workdir, env.s3)
        output = _publish(env, onnx_bytes, manifest, weights, result.history, workdir)
    log.info('model package v%d at %s', output.package.version, output.pointer_url)
    return output
