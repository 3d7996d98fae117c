"""Unseen-task recognition benchmark: ours vs Sedna's identifier on simulated known/unseen tasks.

The model is the shipped base model (``make base-model``: known tasks sunny, overcast, curbs), or
one given; both recognisers are calibrated on known-task frames (val) at the same target
false-alarm rate, then scored on known-task test frames and on each unseen task's frames. All
frames come from a world (street layout) that none of the base model's frame sets comes from.
Reported per unseen task, for both methods:

* image level: AUROC and FPR at 95 % TPR (unseen frames positive, known test frames negative),
  and the detection rate at the calibrated threshold;
* pixel level: average precision of the anomaly maps (ours: minus the max logit;
  baseline: the classifier's OOD probability), at the logits' resolution. Positives are the
  pixels of classes the model never learned (the construction task's barriers and cones); a task
  without such classes (night, snow) is out of distribution as a whole, so all its pixels are
  positives. Negatives: the other pixels of that task's frames and all pixels of the known test
  frames.

Plus the achieved false-alarm rate on known test frames and the task-guess accuracy, and how our
score generalises: conditions no task, no training and no calibration frame shows (darkness,
haze, defocus and motion blur, sensor noise, an unfamiliar object in view) applied to the known
test frames at three strengths. The score must rise with the strength of each, while the
untouched frames stay quiet.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

from robo_lifelong.labels import IGNORE_ID, KNOWN_CLASS_IDS, NUM_CLASSES
from robo_lifelong.models import package as mp
from robo_lifelong.models.unseen import UnseenResult, score_frame
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.tasks import KNOWN_TASKS, UNSEEN_TASKS
from robo_lifelong.sim.world import CampusWorld, Frame
from robo_lifelong_cloud.base_model import DEFAULT_OUT as BASE_MODEL
from robo_lifelong_cloud.base_model import config_of
from robo_lifelong_cloud.calibration import DEFAULT_TARGET_FPR, fit_calibration
from robo_lifelong_cloud.metrics import auroc, average_precision, fpr_at_tpr
from robo_lifelong_cloud.model import model_from_weights
from robo_lifelong_cloud.sedna_baseline import (
    fit_baseline,
    resize_mask,
    score_frame_baseline,
    synthetic_ood,
)
from robo_lifelong_cloud.train_loop import embed_and_logits

log = logging.getLogger(__name__)

# frames -> (embeddings (N, D), [logits (C, h, w)] * N), as train_loop.embed_and_logits
Infer = Callable[[Sequence[Frame]], tuple[np.ndarray, list[np.ndarray]]]

TARGETS = {
    'auroc_min': 0.97,
    'fpr95_max': 0.10,
    'pixel_ap_new_class_regions_min': 0.5,
    'known_test_over_threshold_max': 0.02,
    'beats_baseline_on_every_task': True,
}


@dataclass(frozen=True)
class BenchConfig:
    width: int = 424
    height: int = 240
    val_per_task: int = 60  # calibration
    test_per_task: int = 60
    target_fpr: float = DEFAULT_TARGET_FPR
    seed: int = 0
    world: int = 9  # a street layout no frame of the base model's recipe comes from


FULL = BenchConfig()
QUICK = BenchConfig(val_per_task=20, test_per_task=20)

# frame indices per split, far apart so splits never share a frame
_SPLIT_START = {'train': 0, 'val': 100_000, 'test': 200_000}


def make_frames(world: CampusWorld, task: str, split: str, n: int) -> list[Frame]:
    return [world.random_frame(task, _SPLIT_START[split] + i) for i in range(n)]


@dataclass
class _Scored:
    ours: list[UnseenResult]
    base: list[UnseenResult]
    labels: list[np.ndarray]  # label maps at the logits' resolution


def _score(infer: Infer, frames: Sequence[Frame], ours_cal, base_cal) -> tuple[_Scored, float]:
    embeddings, logits_list = infer(frames)
    scored = _Scored([], [], [])
    seconds = 0.0
    for frame, emb, logits in zip(frames, embeddings, logits_list, strict=True):
        t0 = time.perf_counter()
        scored.ours.append(score_frame(ours_cal, emb, logits))
        seconds += time.perf_counter() - t0
        scored.base.append(score_frame_baseline(base_cal, logits))
        scored.labels.append(resize_mask(frame.labels, logits.shape[1:]))
    return scored, seconds


def _pixel_ap(known: _Scored, unseen: _Scored, which: str, novel_ids: Sequence[int]) -> float:
    """Pixel AP of method ``which`` ('ours' or 'base'); see the module docstring for labels."""
    has_novel = any(np.isin(lab, novel_ids).any() for lab in unseen.labels)
    scores, positives = [], []
    for group, is_unseen in ((known, False), (unseen, True)):
        for result, lab in zip(getattr(group, which), group.labels, strict=True):
            valid = lab != IGNORE_ID
            if not is_unseen:
                pos = np.zeros(lab.shape, bool)
            elif has_novel:
                pos = np.isin(lab, novel_ids)
            else:
                pos = np.ones(lab.shape, bool)
            scores.append(result.anomaly_map[valid])
            positives.append(pos[valid])
    return average_precision(np.concatenate(scores), np.concatenate(positives))


def _image_metrics(known: list[UnseenResult], unseen: list[UnseenResult]) -> dict:
    k = [r.score for r in known]
    u = [r.score for r in unseen]
    return {
        'auroc': auroc(k, u),
        'fpr95': fpr_at_tpr(k, u, 0.95),
        'detection_rate': float(np.mean([r.is_unseen for r in unseen])),
    }


# Conditions of no task, at strengths 1..3 (``_condition``); none is in any training,
# calibration or validation frame, and none is one of the outlier exposure's pasted things
# (those are flat shapes and noise textures; the unfamiliar object here is a photo-like patch of
# another frame, rotated and tinted).
CONDITIONS = ('darkness', 'haze', 'defocus', 'motion_blur', 'sensor_noise', 'unfamiliar_object')
STRENGTHS = (1, 2, 3)


def _condition(rgb: np.ndarray, name: str, strength: int, rng: np.random.Generator) -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 under condition ``name`` at ``strength`` 1..3."""
    img = rgb.astype(np.float32)
    if name == 'darkness':
        out = img * (0.55, 0.32, 0.16)[strength - 1]
    elif name == 'haze':
        w = (0.3, 0.5, 0.7)[strength - 1]
        out = (1.0 - w) * img + w * np.array([205.0, 205.0, 210.0], np.float32)
    elif name == 'defocus':
        out = cv2.GaussianBlur(img, (0, 0), (1.5, 3.0, 6.0)[strength - 1])
    elif name == 'motion_blur':
        n = (7, 15, 31)[strength - 1]
        out = cv2.filter2D(img, -1, np.full((1, n), 1.0 / n, np.float32))
    elif name == 'sensor_noise':
        out = img + rng.normal(0.0, (12.0, 25.0, 45.0)[strength - 1], img.shape)
    elif name == 'unfamiliar_object':
        h, w = rgb.shape[:2]
        side = int(min(h, w) * (0.2, 0.35, 0.5)[strength - 1])
        patch = cv2.rotate(rgb[:side, :side], cv2.ROTATE_180).astype(np.float32)
        patch = patch[..., ::-1] * (0.6, 1.3, 1.1)  # colours no street has
        y, x = int(rng.integers(h // 3, h - side)), int(rng.integers(0, w - side))
        out = img.copy()
        out[y : y + side, x : x + side] = patch
    else:
        raise ValueError(f'unknown condition {name!r}')
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def generalisation(
    infer: Infer,
    known_test: Sequence[Frame],
    clean: Sequence[UnseenResult],
    cal,
    rng: np.random.Generator,
) -> dict:
    """Per condition: our mean score and share over the threshold at strength 0 (``clean``: the
    untouched known test frames' results) to 3, and whether the mean rises with every step of
    strength."""
    out = {}
    for name in CONDITIONS:
        means, over = [np.mean([r.score for r in clean])], [np.mean([r.is_unseen for r in clean])]
        for strength in STRENGTHS:
            frames = [
                dataclasses.replace(f, rgb=_condition(f.rgb, name, strength, rng))
                for f in known_test
            ]
            emb, logits = infer(frames)
            scored = [score_frame(cal, e, lg) for e, lg in zip(emb, logits, strict=True)]
            means.append(np.mean([r.score for r in scored]))
            over.append(np.mean([r.is_unseen for r in scored]))
        out[name] = {
            'mean_score_by_strength': [round(float(m), 3) for m in means],
            'over_threshold_by_strength': [round(float(o), 3) for o in over],
            'rises_with_strength': bool(np.all(np.diff(means) > 0)),
        }
    return out


def evaluate(
    infer: Infer,
    val: Sequence[Frame],
    known_test: Sequence[Frame],
    unseen_test: dict[str, Sequence[Frame]],
    target_fpr: float = DEFAULT_TARGET_FPR,
    seed: int = 0,
) -> dict:
    """Calibrate both recognisers on ``val`` (known tasks) and score the test frames."""
    rng = np.random.default_rng(seed)
    val_emb, val_logits = infer(val)
    t0 = time.perf_counter()
    ours_cal = fit_calibration(val_emb, [f.task for f in val], val_logits, target_fpr)
    fit_seconds = time.perf_counter() - t0
    perturbed = [synthetic_ood(f.rgb, rng) for f in val]
    ood_frames = [
        dataclasses.replace(f, rgb=rgb) for f, (rgb, _) in zip(val, perturbed, strict=True)
    ]
    _, ood_logits = infer(ood_frames)
    masks = [m for _, m in perturbed]
    base_cal = fit_baseline(val_logits, ood_logits, masks, target_fpr, seed=seed)

    known, seconds = _score(infer, known_test, ours_cal, base_cal)
    novel_ids = [i for i in range(NUM_CLASSES) if i not in KNOWN_CLASS_IDS]
    per_task = {}
    for task, frames in unseen_test.items():
        unseen, more = _score(infer, frames, ours_cal, base_cal)
        seconds += more
        # frames of a new-class task in which no new-class object is in view look like known ones
        visible = [bool(np.isin(f.labels, novel_ids).any()) for f in frames]
        per_task[task] = {'frames': len(frames)}
        if any(visible):  # a task with new classes: its pixel AP has a target (judge)
            per_task[task]['frames_showing_new_classes'] = int(sum(visible))
        for name, which in (('ours', 'ours'), ('baseline', 'base')):
            results = getattr(unseen, which)
            per_task[task][name] = {
                **_image_metrics(getattr(known, which), results),
                'pixel_ap': _pixel_ap(known, unseen, which, novel_ids),
            }
            if any(visible) and not all(visible):
                shown = [r for r, v in zip(results, visible, strict=True) if v]
                per_task[task][name]['auroc_frames_showing_new_classes'] = auroc(
                    [r.score for r in getattr(known, which)], [r.score for r in shown]
                )
    n_scored = len(known_test) + sum(len(f) for f in unseen_test.values())
    guesses = [r.task_guess == f.task for r, f in zip(known.ours, known_test, strict=True)]
    return {
        'per_unseen_task': per_task,
        'known_test_false_alarm_rate': {
            'ours': float(np.mean([r.is_unseen for r in known.ours])),
            'baseline': float(np.mean([r.is_unseen for r in known.base])),
        },
        'task_guess_accuracy': float(np.mean(guesses)),
        'generalisation': generalisation(infer, known_test, known.ours, ours_cal, rng),
        'ours_score_ms_per_frame': 1000.0 * seconds / n_scored,
        'ours_fit_seconds': fit_seconds,
        'calibration_json_bytes': len(json.dumps(ours_cal.to_json())),
        'baseline_fitted_on': base_cal.fitted_on,
    }


def judge(results: dict) -> dict:
    """Targets per unseen task: our AUROC and FPR95, pixel AP where the task has new-class
    regions, and better than the baseline on all three (AUROC higher, FPR95 lower or equal,
    pixel AP higher); and the share of known test frames over our threshold."""
    met = {}
    for task, r in results['per_unseen_task'].items():
        ours, base = r['ours'], r['baseline']
        met[task] = {
            'auroc': ours['auroc'] >= TARGETS['auroc_min'],
            'fpr95': ours['fpr95'] <= TARGETS['fpr95_max'],
            'beats_baseline': ours['auroc'] > base['auroc']
            and ours['fpr95'] <= base['fpr95']
            and ours['pixel_ap'] > base['pixel_ap'],
        }
        if 'frames_showing_new_classes' in r:
            met[task]['pixel_ap'] = ours['pixel_ap'] >= TARGETS['pixel_ap_new_class_regions_min']
    known = results['known_test_false_alarm_rate']['ours']
    known_met = known <= TARGETS['known_test_over_threshold_max']
    rises = {n: g['rises_with_strength'] for n, g in results['generalisation'].items()}
    every = all(all(m.values()) for m in met.values()) and known_met and all(rises.values())
    return {
        'per_unseen_task': met,
        'known_test_over_threshold': known_met,
        'score_rises_with_condition_strength': rises,
        'all': every,
    }


def base_model() -> tuple[Infer, dict]:
    """The shipped base model's network (its safetensors weights) and what its card records."""
    package = mp.load_package(BASE_MODEL)
    if package.weights_path is None:
        raise FileNotFoundError(f'{package.path}: the base model has no {mp.WEIGHTS_FILE}')
    model = model_from_weights(
        package.weights_path.read_bytes(), package.manifest['weights']['architecture']
    )
    recipe = config_of(package)
    info = {
        'source': f'the shipped base model ({package.path}, v{package.version})',
        'content_hash': package.content_hash,
        'train_worlds': list(recipe.train_worlds),
        'calibration_worlds': list(recipe.calibration_worlds),
        'val_miou_per_known_task': {
            t: r['miou'] for t, r in package.manifest['metrics']['per_task'].items()
        },
    }
    return partial(embed_and_logits, model), info


def run(quick: bool = False, infer: Infer | None = None) -> dict:
    """Benchmark entry point, on the shipped base model unless ``infer`` is given."""
    cfg = QUICK if quick else FULL
    world = CampusWorld(seed=cfg.world, camera=CameraModel(width=cfg.width, height=cfg.height))
    t0 = time.perf_counter()
    val = [f for t in KNOWN_TASKS for f in make_frames(world, t, 'val', cfg.val_per_task)]
    known_test = [f for t in KNOWN_TASKS for f in make_frames(world, t, 'test', cfg.test_per_task)]
    unseen_test = {t: make_frames(world, t, 'test', cfg.test_per_task) for t in UNSEEN_TASKS}
    model_info: dict = {'source': 'given'}
    if infer is None:
        infer, model_info = base_model()
    results = evaluate(infer, val, known_test, unseen_test, cfg.target_fpr, cfg.seed)
    return {
        'config': dataclasses.asdict(cfg),
        'model': model_info,
        **results,
        'targets': TARGETS,
        'met': judge(results),
        'seconds': time.perf_counter() - t0,
    }
