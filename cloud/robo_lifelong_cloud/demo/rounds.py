"""Lifelong rounds measured like Ianvs: every task's mIoU after every round, BWT and FWT, the
unseen score's AUROC for the tasks still unseen, and the matrix as a heatmap.

Round 1 trains the known tasks; each later round learns the tasks its samples came from. After
each round the model that is *deployed* (the candidate, or the reference again when the eval
worker refused the candidate) is scored on fresh simulator frames of every task: a world seed no
training, calibration, demo drive or other benchmark uses, at the demo's image size.

The matrix follows Ianvs' layout (kubeedge/ianvs, ``core/testcasecontroller/metrics``): row 0 is a
model that learned nothing (the same architecture, seeded, untrained), row ``r`` the model deployed
after round ``r``; a column per task. From it:

- FWT, as Ianvs computes it: the mean over the tasks learned after round 1 of (the model before
  the round that learns the task) minus (row 0) on that task: what earlier rounds give a task
  before it is trained on;
- BWT, as GEM (Lopez-Paz & Ranzato 2017) defines it: the mean over the tasks learned before the
  last round of (the last row) minus (the row of the round that learned the task): what later
  rounds cost an old task (negative: forgetting). Ianvs' own BWT sums row-to-row changes over all
  cells, which telescopes to (last row - row 0) / n² and so measures total gain, not forgetting;
  it is reported beside it as ``bwt_ianvs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

from robo_lifelong.models import package as mp  # noqa: E402
from robo_lifelong.models.runtime import SegmentationRuntime  # noqa: E402
from robo_lifelong.sim.camera import CameraModel  # noqa: E402
from robo_lifelong.sim.world import CampusWorld  # noqa: E402
from robo_lifelong_cloud import base_model  # noqa: E402
from robo_lifelong_cloud.data import Frame  # noqa: E402
from robo_lifelong_cloud.metrics import auroc  # noqa: E402
from robo_lifelong_cloud.model import SegNetConfig, build_model  # noqa: E402
from robo_lifelong_cloud.train_loop import evaluate  # noqa: E402

FRESH_SEED = 53  # the world of the matrix's frames: no other recipe, drive or benchmark uses it
UNTRAINED_SEED = 0


@dataclass(frozen=True)
class Round:
    number: int  # 1: the initial model
    tasks: tuple[str, ...]  # the tasks this round's samples came from
    package: mp.ModelPackage  # the model deployed after the round
    deployed_candidate: bool | None  # the eval worker's verdict on the round's candidate
    reasons: tuple[str, ...]  # the eval worker's reasons
    seconds: float  # wall time of the round: drive (collection), annotation, train, eval, deploy


def fresh_frames(tasks: Sequence[str], per_task: int, width: int, height: int) -> list[Frame]:
    world = CampusWorld(FRESH_SEED, CameraModel(width=width, height=height))
    return [f for task in tasks for f in base_model.render(world, task, 0, per_task)]


def untrained_report(package: mp.ModelPackage, frames: Sequence[Frame]) -> dict:
    """Row 0: ``package``'s architecture, seeded and never trained, on ``frames``."""
    arch = package.manifest['weights']['architecture']
    model = build_model(SegNetConfig(**arch), seed=UNTRAINED_SEED)
    return evaluate(model, list(frames))


def _miou_row(report: dict, tasks: Sequence[str]) -> list[float]:
    return [float(report['per_task'][t]['miou']) for t in tasks]


def _unseen_scores(package: mp.ModelPackage, frames: Sequence[Frame]) -> dict[str, list[float]]:
    runtime = SegmentationRuntime(package)
    scores: dict[str, list[float]] = {}
    for f in frames:
        result = runtime.infer(f.rgb, f.depth_mm).unseen
        if result is not None:
            scores.setdefault(f.task, []).append(result.score)
    return scores


def learned_rounds(rounds: Sequence[Round]) -> list[int | None]:
    """Per task (in ``rounds``' order) the round whose deployed model learned it: its own round,
    or, when the eval worker refused that candidate, the next round whose candidate was deployed
    (it trained on the earlier samples too); None when none was."""
    deployed = [r.number for r in rounds if r.deployed_candidate]
    return [next((d for d in deployed if d >= r.number), None) for r in rounds for _ in r.tasks]


def fwt(matrix: np.ndarray, learned_in: Sequence[int | None]) -> float | None:
    """Ianvs' FWT; ``matrix[r][j]``: task j after round r (row 0 untrained); ``learned_in[j]``:
    the round that learned task j (None: never learned, left out)."""
    cells = [matrix[r - 1][j] - matrix[0][j] for j, r in enumerate(learned_in) if r and r > 1]
    return float(np.mean(cells)) if cells else None


def bwt(matrix: np.ndarray, learned_in: Sequence[int | None]) -> float | None:
    """GEM's BWT on the same matrix: the last row minus the row that learned each task, over the
    tasks learned before the last round."""
    last = len(matrix) - 1
    cells = [matrix[last][j] - matrix[r][j] for j, r in enumerate(learned_in) if r and r < last]
    return float(np.mean(cells)) if cells else None


def bwt_ianvs(matrix: np.ndarray) -> float:
    """Ianvs' BWT: the row-to-row changes summed over every cell, over n²."""
    n = len(matrix) - 1
    return float(np.sum(matrix[1:] - matrix[:-1]) / (n * matrix.shape[1]))


def measure(rounds: Sequence[Round], frames: Sequence[Frame]) -> dict:
    """The matrix and its measures for ``rounds`` (in order) on ``frames``."""
    tasks = [t for r in rounds for t in r.tasks]
    learned_in = learned_rounds(rounds)
    rows = [_miou_row(untrained_report(rounds[-1].package, frames), tasks)]
    unseen_auroc: dict[str, dict[str, float]] = {}
    for r in rounds:
        rows.append(_miou_row(base_model.measure(r.package, frames), tasks))
        known = {t for t, n in zip(tasks, learned_in, strict=True) if n and n <= r.number}
        scores = _unseen_scores(r.package, frames)
        known_scores = [s for t in known for s in scores.get(t, [])]
        unseen_auroc[str(r.number)] = {
            t: round(auroc(known_scores, scores[t]), 4)
            for t in tasks
            if t not in known and t in scores and known_scores
        }
    matrix = np.array(rows)
    last = len(matrix) - 1
    forgetting = {  # points each task lost since the round that learned it, on fresh frames
        t: round(100 * float(matrix[r][j] - matrix[last][j]), 2)
        for j, (t, r) in enumerate(zip(tasks, learned_in, strict=True))
        if r and r < last
    }
    points = {
        'bwt': bwt(matrix, learned_in),
        'fwt': fwt(matrix, learned_in),
        'bwt_ianvs': bwt_ianvs(matrix),
    }
    return {
        'tasks': tasks,
        'learned_in_round': dict(zip(tasks, learned_in, strict=True)),
        'frames_per_task': len(frames) // max(1, len(tasks)),
        'world_seed': FRESH_SEED,
        # row 0: untrained; row r: the model deployed after round r
        'miou_matrix': [[round(float(v), 4) for v in row] for row in matrix],
        **{k: None if v is None else round(100 * v, 2) for k, v in points.items()},  # points
        'forgetting_points': forgetting,
        'max_forgetting_points': max(forgetting.values(), default=None),
        'unseen_auroc_by_round': unseen_auroc,
        'per_round': [
            {
                'round': r.number,
                'tasks': list(r.tasks),
                'model_version': f'v{r.package.version}-{r.package.content_hash[:12]}',
                'candidate_deployed': r.deployed_candidate,
                'reasons': list(r.reasons),
                'seconds': r.seconds,
            }
            for r in rounds
        ],
    }


def learned_text(number: int | None) -> str:
    return 'not learned' if number is None else f'round {number}'


def heatmap(result: dict, path: Path) -> Path:
    """The matrix as a heatmap: rows the rounds (0 untrained), columns the tasks."""
    matrix = np.array(result['miou_matrix'])
    tasks = result['tasks']
    fig, ax = plt.subplots(figsize=(1.3 * len(tasks) + 2.5, 0.7 * len(matrix) + 1.6))
    ax.imshow(matrix, cmap='viridis', vmin=0.0, vmax=1.0, aspect='auto')
    for (r, c), value in np.ndenumerate(matrix):
        colour = 'black' if value > 0.55 else 'white'
        ax.text(c, r, f'{100 * value:.1f}', ha='center', va='center', color=colour, fontsize=9)
    learned = result['learned_in_round']
    ax.set_xticks(
        range(len(tasks)), [f'{t}\n({learned_text(learned[t])})' for t in tasks], fontsize=8
    )
    ax.set_yticks(
        range(len(matrix)), ['untrained'] + [f'after round {r}' for r in range(1, len(matrix))]
    )
    bwt_text = '—' if result['bwt'] is None else f'{result["bwt"]:+.2f}'
    fwt_text = '—' if result['fwt'] is None else f'{result["fwt"]:+.2f}'
    ax.set_title(
        f'mIoU (%) of every task after every round, fresh frames; BWT {bwt_text}, '
        f'FWT {fwt_text} points',
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
