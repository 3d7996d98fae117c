"""Label quality of one checkpoint, before/after full-resolution labels, and the base model's
validation targets.

The shipped base model (ros2_ws/src/robo_lifelong/models/base) on fresh simulator frames of its
known tasks (world seed ``FRESH_SEED``, which no training, calibration, validation or other
benchmark uses), at 240x424 and 480x640. Two ways to get labels from the same logits:

* ``blocks`` (before): the argmax at stride 8, then the uint8 labels upsampled nearest-neighbour
  to the frame size (what the runtime did until the graph had a label head);
* ``graph`` (after): the package's label head: logits upsampled bilinearly to the frame size,
  then the argmax (``SegmentationRuntime.infer``).

Per way: mIoU, IoU of the thin classes (curb, pole, traffic sign, ramp), the boundary F-score at
3 px (label boundaries: a pixel whose right or lower neighbour has another id; precision = share
of predicted boundary pixels within 3 px of a true one, recall the other way round) and the
share of 8x8 cells that hold a label boundary relative to the ground truth's. Targets (issue 20):
val mIoU >= 0.80 on every known task, curb IoU >= 0.65, ramp IoU >= 0.6 (the graph's labels).
"""

from __future__ import annotations

import cv2
import numpy as np

from robo_lifelong.labels import NUM_CLASSES
from robo_lifelong.models import package as mp
from robo_lifelong.models.runtime import SegmentationRuntime
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.world import CampusWorld
from robo_lifelong_cloud.base_model import DEFAULT_OUT
from robo_lifelong_cloud.metrics import confusion, iou_report

FRESH_SEED = 41
THIN = ('curb', 'pole', 'traffic_sign', 'ramp')
TOLERANCE_PX = 3
TARGETS = {'task_miou': 0.80, 'curb_iou': 0.65, 'ramp_iou': 0.60}


def boundaries(labels: np.ndarray) -> np.ndarray:
    edge = np.zeros(labels.shape, bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def _near(edge: np.ndarray) -> np.ndarray:
    """Pixels within TOLERANCE_PX of an edge pixel."""
    distance = cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, 3)
    return distance <= TOLERANCE_PX


def boundary_counts(pred: np.ndarray, truth: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """(predicted edge px near a true edge, predicted edge px, true edge px near a predicted
    one, true edge px), ignored pixels left out."""
    p, t = boundaries(pred) & ~ignore, boundaries(truth) & ~ignore
    return np.array([(p & _near(t)).sum(), p.sum(), (t & _near(p)).sum(), t.sum()], np.int64)


def f_score(counts: np.ndarray) -> float:
    precision = counts[0] / max(1, counts[1])
    recall = counts[2] / max(1, counts[3])
    return float(2 * precision * recall / max(1e-12, precision + recall))


def cells_with_edges(labels: np.ndarray) -> int:
    h, w = (s // 8 * 8 for s in labels.shape)
    cells = labels[:h, :w].reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 64)
    return int(np.count_nonzero(cells.min(axis=1) != cells.max(axis=1)))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _blocks(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    low = np.argmax(logits, axis=0).astype(np.uint8)
    return cv2.resize(low, (width, height), interpolation=cv2.INTER_NEAREST)


def measure_size(runtime: SegmentationRuntime, tasks, height: int, width: int, n: int) -> dict:
    world = CampusWorld(FRESH_SEED, CameraModel(width, height))
    ways = ('blocks', 'graph')
    conf = {w: {} for w in ways}
    edges = {w: np.zeros(4, np.int64) for w in ways}
    cells = {w: 0 for w in ways} | {'truth': 0}
    for task in tasks:
        for i in range(n):
            frame = world.random_frame(task, i)
            out = runtime.infer(frame.rgb, frame.depth_mm)
            ignore = frame.labels >= runtime.package.num_classes
            truth = frame.labels
            cells['truth'] += cells_with_edges(np.where(ignore, 255, truth))
            for way, labels in (
                ('blocks', _blocks(out.logits, height, width)),
                ('graph', out.labels),
            ):
                c = confusion(labels, truth, NUM_CLASSES)
                conf[way][task] = conf[way].get(task, 0) + c
                edges[way] += boundary_counts(labels, truth, ignore)
                cells[way] += cells_with_edges(labels)
    result = {}
    for way in ways:
        report = iou_report(conf[way])
        result[way] = {
            'miou': round(report['miou'], 4),
            'miou_per_task': {t: round(r['miou'], 4) for t, r in report['per_task'].items()},
            # None: the class is in neither the labels nor the predictions
            'thin_class_iou': {c: _rounded(report['per_class'].get(c)) for c in THIN},
            'boundary_f_3px': round(f_score(edges[way]), 4),
            'edge_cells_vs_truth': round(cells[way] / max(1, cells['truth']), 3),
        }
    return result


def run(quick: bool = False) -> dict:
    package = mp.load_package(DEFAULT_OUT)
    runtime = SegmentationRuntime(package)
    n = 5 if quick else 30
    tasks = package.known_tasks
    result = {
        'model': {
            'path': str(DEFAULT_OUT),
            'version': package.version,
            'content_hash': package.content_hash,
            'input': f'{package.manifest["input"]["height"]}x{package.manifest["input"]["width"]}',
        },
        'fresh_seed': FRESH_SEED,
        'frames_per_task': n,
        'sizes': {
            f'{h}x{w}': measure_size(runtime, tasks, h, w, n) for h, w in ((240, 424), (480, 640))
        },
    }
    graph = result['sizes']['240x424']['graph']
    recorded = package.manifest['metrics']['per_task']
    met = {
        'val_miou_every_task': all(r['miou'] >= TARGETS['task_miou'] for r in recorded.values()),
        'curb_iou': (graph['thin_class_iou']['curb'] or 0.0) >= TARGETS['curb_iou'],
        'ramp_iou': (graph['thin_class_iou']['ramp'] or 0.0) >= TARGETS['ramp_iou'],
        'graph_boundary_f_better_than_blocks': all(
            s['graph']['boundary_f_3px'] > s['blocks']['boundary_f_3px']
            for s in result['sizes'].values()
        ),
    }
    result['base_model_val_miou_per_task'] = {t: r['miou'] for t, r in recorded.items()}
    result['targets'] = TARGETS
    result['met'] = met
    result['target_met'] = all(met.values())
    return result
