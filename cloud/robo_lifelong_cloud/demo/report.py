"""The demo's report: ``summary.json``, ``report.md`` and PNG plots in ``<out>/report/``.

Plots: the unseen score and alarm level over the route before and after the update
(``route.png``), per-task mIoU before/after (``miou.png``), one frame of the unseen stretch run
through both models (``examples.png``: input, ground truth, labels, anomaly map). The markdown adds
the outcome checks, the eval worker's deploy decision and the job's condition history, and the
lifelong rounds: every task's mIoU after every round with BWT and FWT (``rounds.py``), the matrix
as a heatmap (``rounds.png``). "Before" is the first drive, "after" the last one (after the last
update); their mIoU and IoU are over the frames both drives passed at the same route time, the
same images (``analysis.shared_frame_reports``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import cv2
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

from robo_lifelong.labels import CLASSES, colorize  # noqa: E402
from robo_lifelong.models import package as mp  # noqa: E402
from robo_lifelong.models.runtime import SegmentationRuntime  # noqa: E402
from robo_lifelong.sim.ground_truth import GroundTruthStore  # noqa: E402
from robo_lifelong.sim.tasks import KNOWN_TASKS, TASKS, UNSEEN_TASKS  # noqa: E402
from robo_lifelong_cloud.controller.conditions import ConditionType, Stage  # noqa: E402
from robo_lifelong_cloud.controller.status import StateDir  # noqa: E402
from robo_lifelong_cloud.demo import rounds  # noqa: E402
from robo_lifelong_cloud.demo.analysis import (  # noqa: E402
    Drive,
    Span,
    analyse_drive,
    class_iou,
    shared_frame_reports,
    task_miou,
)
from robo_lifelong_cloud.demo.loop import (  # noqa: E402
    NEW_CLASS_TASK,
    DemoConfig,
    DemoPaths,
    read_decision,
)

log = logging.getLogger(__name__)

NEW_CLASSES = tuple(c.name for c in CLASSES if c.id >= 22)  # barrier, traffic_cone
LEVEL_NAMES = ('OK', 'WARN', 'ERROR', 'STALE')
FORGETTING_TARGET_POINTS = 1.0


def outcome(before: Drive, after: Drive, conditions: list[dict[str, Any]]) -> dict[str, Any]:
    """The numbers the demo is about, and whether each claim held. Segmentation is compared on
    the frames both drives passed at the same route time (``shared_frame_reports``)."""
    report_b, report_a, shared = shared_frame_reports(before, after)
    miou_b, miou_a = task_miou(report_b), task_miou(report_a)
    old = [t for t in miou_b if t in miou_a and t in KNOWN_TASKS]
    drops = {t: round(100 * (miou_b[t] - miou_a[t]), 2) for t in old}
    trained = (Stage.TRAIN, ConditionType.COMPLETED)
    trainings = sum(1 for c in conditions if (c['stage'], c['type']) == trained)
    result = {
        'model_before': before.version,
        'model_after': after.version,
        'trainings_completed': trainings,
        'samples_collected_before': before.samples,
        'samples_collected_after': after.samples,
        'alarm_before': before.alarm_quality,
        'alarm_after': after.alarm_quality,
        'alarmed_by_task_before': before.alarmed_by_task,
        'alarmed_by_task_after': after.alarmed_by_task,
        'miou_before': {t: round(v, 4) for t, v in miou_b.items()},
        'miou_after': {t: round(v, 4) for t, v in miou_a.items()},
        'frames_compared': shared,
        'forgetting_points': drops,
        'max_forgetting_points': max(drops.values(), default=0.0),
        'new_class_iou_after': {c: class_iou(report_a, NEW_CLASS_TASK, c) for c in NEW_CLASSES},
        'new_class_iou_before': {c: class_iou(report_b, NEW_CLASS_TASK, c) for c in NEW_CLASSES},
    }
    unseen = [t for t in miou_b if t in UNSEEN_TASKS and t in miou_a]
    result['checks'] = {
        'ERROR alarm on the unseen stretch before the update': before.alarm_quality[
            'error_in_unseen'
        ],
        'a retrain happened': trainings >= 2,
        'the deployed model changed': before.version != after.version,
        'unseen-task mIoU higher after the update (each unseen task)': bool(unseen)
        and all(miou_a[t] > miou_b[t] for t in unseen),
        'fewer alarms on the unseen stretch after the update': (
            after.alarm_quality['recall'] < before.alarm_quality['recall']
        ),
        f'old tasks lose < {FORGETTING_TARGET_POINTS:g} mIoU point': (
            result['max_forgetting_points'] < FORGETTING_TARGET_POINTS
        ),
        'new classes segmented after the update': any(
            (v or 0.0) > 0.0 for v in result['new_class_iou_after'].values()
        ),
    }
    return result


def _shade(ax, drive: Drive) -> None:
    for span in drive.unseen_spans:
        ax.axvspan(span.start, span.end, color='tab:orange', alpha=0.15, lw=0)


def route_plot(before: Drive, after: Drive, path: Path) -> Path:
    fig, axes = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    for drive, name, colour in ((before, 'before', 'tab:red'), (after, 'after', 'tab:blue')):
        label = f'{name} the update ({drive.version})'
        axes[0].plot(drive.score_t, drive.score, color=colour, lw=1, label=label)
        t = np.linspace(0, drive.duration_s, 600)
        axes[1].step(t, drive.level_at(t), where='post', color=colour, label=label)
    for ax in axes:  # the last drive holds the first one's route, and its own later stretches
        _shade(ax, after)
    if before.threshold is not None:
        axes[0].axhline(before.threshold, color='k', ls='--', lw=0.8, label='threshold')
    axes[0].set_ylabel('unseen score')
    unseen = ', '.join(t for t in TASKS if t in UNSEEN_TASKS and t in after.tasks)
    axes[0].set_title(f'unseen score and alarm over the route (shaded: {unseen})')
    axes[0].legend(loc='upper left', fontsize=8)
    axes[1].set_yticks(range(len(LEVEL_NAMES)), LEVEL_NAMES)
    axes[1].set_ylabel('alarm')
    axes[1].set_xlabel('route time (s)')
    return _save(fig, path)


def miou_plot(result: dict[str, Any], path: Path) -> Path:
    b, a = result['miou_before'], result['miou_after']
    tasks = [t for t in TASKS if t in b or t in a]
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(x - 0.2, [b.get(t, 0) for t in tasks], 0.4, label=f'before ({result["model_before"]})')
    ax.bar(x + 0.2, [a.get(t, 0) for t in tasks], 0.4, label=f'after ({result["model_after"]})')
    ax.set_xticks(x, [f'{t}\n(unseen)' if t in UNSEEN_TASKS else t for t in tasks])
    ax.set_ylabel('mIoU on the frames both drives passed')
    ax.set_ylim(0, 1)
    ax.set_title('per-task mIoU of the robot, before and after the update')
    ax.legend(fontsize=8)
    return _save(fig, path)


def _example_frame(
    drive_dir: Path, drive: Drive, span: Span
) -> tuple[int, np.ndarray, np.ndarray | None]:
    """The saved camera frame of an unseen stretch nearest its highest unseen score."""
    inside = span.contains(drive.score_t)
    peak_t = drive.score_t[inside][np.argmax(drive.score[inside])] if inside.any() else span.start
    target_ns = drive.stamp_at(peak_t)
    stamps = [int(p.stem) for p in (drive_dir / 'rgb').glob('*.png')]
    stamp = min(stamps, key=lambda s: abs(s - target_ns))
    rgb = cv2.imread(str(drive_dir / 'rgb' / f'{stamp}.png'), cv2.IMREAD_COLOR)[:, :, ::-1]
    depth_path = drive_dir / 'depth' / f'{stamp}.png'
    depth = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED) if depth_path.exists() else None
    return stamp, np.ascontiguousarray(rgb), depth


def examples_plot(
    drive_dir: Path,
    drive: Drive,
    ground_truth: GroundTruthStore,
    models: dict[str, mp.ModelPackage],
    path: Path,
) -> Path:
    rows = [
        (span, name, package) for span in drive.unseen_spans for name, package in models.items()
    ]
    fig, axes = plt.subplots(len(rows), 4, figsize=(13, 2.2 * len(rows) + 0.6), squeeze=False)
    for row, (span, name, package) in enumerate(rows):
        stamp, rgb, depth = _example_frame(drive_dir, drive, span)
        truth, task = ground_truth.get(stamp)
        result = SegmentationRuntime(package).infer(rgb, depth)
        anomaly = result.unseen.anomaly_map if result.unseen is not None else np.zeros((1, 1))
        score = f'score {result.unseen.score:.2f}' if result.unseen is not None else ''
        panels = (
            (rgb, f'input ({task})'),
            (colorize(truth), 'simulator ground truth'),
            (colorize(result.labels), f'{name}: labels (v{package.version})'),
            (anomaly, f'{name}: anomaly map {score}'),
        )
        for col, (image, title) in enumerate(panels):
            ax = axes[row][col]
            ax.imshow(image, cmap='magma' if image.ndim == 2 else None)
            ax.set_title(title, fontsize=9)
            ax.axis('off')
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _pct(value: float | None) -> str:
    return '—' if value is None else f'{100 * value:.1f}'


def markdown(result: dict[str, Any], counts: dict, conditions: list, decision: dict | None) -> str:
    lines = [
        f'# robo-lifelong demo: {len(counts["rounds"])} lifelong-learning rounds',
        '',
        'Produced by `robo-lifelong-demo` (`make demo`). Collected samples were labelled from the '
        "**simulator's ground truth** (the stand-in for a human labeller).",
        '',
        '## Outcome',
        '',
    ]
    lines += [f'- [{"x" if ok else " "}] {claim}' for claim, ok in result['checks'].items()]
    lines += [
        '',
        '| | before the update | after the update |',
        '|---|---|---|',
        f'| model | {result["model_before"]} | {result["model_after"]} |',
        f'| samples collected on the route | {result["samples_collected_before"]} | '
        f'{result["samples_collected_after"]} |',
    ]
    for key, label in (
        ('precision', 'alarm precision (WARN/ERROR inside the unseen stretch)'),
        ('recall', 'alarm recall (unseen stretch covered by WARN/ERROR)'),
        ('known_frames_alarmed', 'known-task frames with an alarm'),
    ):
        lines.append(
            f'| {label} | {result["alarm_before"][key]:.2f} | {result["alarm_after"][key]:.2f} |'
        )
    by_b, by_a = result['alarmed_by_task_before'], result['alarmed_by_task_after']
    for task in dict.fromkeys([*by_b, *by_a]):
        lines.append(
            f'| % of the {task} stretch alarmed (WARN/ERROR) | {_pct(by_b.get(task))} | '
            f'{_pct(by_a.get(task))} |'
        )
    for task in result['miou_before']:
        lines.append(
            f'| mIoU {task}{" (unseen)" if task in UNSEEN_TASKS else ""}, '
            f'{result["frames_compared"][task]} frames | '
            f'{_pct(result["miou_before"].get(task))} | {_pct(result["miou_after"].get(task))} |'
        )
    for name in NEW_CLASSES:
        lines.append(
            f'| IoU {name} (new class) | {_pct(result["new_class_iou_before"][name])} | '
            f'{_pct(result["new_class_iou_after"][name])} |'
        )
    lines += [
        '',
        'mIoU and IoU: on the frames both drives passed at the same route time (the same '
        'images, so the models are compared and not two stretches of the campus).',
        '',
        f'Largest mIoU drop on an old task (forgetting): {result["max_forgetting_points"]:.2f} '
        f'points (target < {FORGETTING_TARGET_POINTS:g}; negative: every old task improved).',
        '',
        '![unseen score and alarm over the route](route.png)',
        '',
        '![per-task mIoU](miou.png)',
        '',
        '![a frame of the unseen stretch through both models](examples.png)',
        '',
        '## Wall time per step',
        '',
        '| step | seconds |',
        '|---|---|',
    ]
    lines += [f'| {step} | {s} |' for step, s in counts.get('stage_seconds', {}).items()]
    lines += ['', *rounds_markdown(result['lifelong_rounds'])]
    if decision is not None:
        lines += ['', "## The eval worker's deploy decision (last round)", '']
        lines += [f'- {reason}' for reason in decision['decision']['reasons']]
    lines += [
        '',
        '## Job condition history (`robo-lifelong-job status --state <out>/state -o yaml`)',
        '',
        '| time | stage | type | reason |',
        '|---|---|---|---|',
    ]
    lines += [
        f'| {c["lastTransitionTime"]} | {c["stage"]} | {c["type"]} | {c.get("reason", "")} |'
        for c in conditions
    ]
    return '\n'.join(lines) + '\n'


def lifelong_rounds(
    cfg: DemoConfig, counts: dict, deployed: list[mp.ModelPackage]
) -> dict[str, Any]:
    """``rounds.measure`` of the packages ``deployed`` after each round, on fresh frames."""
    measured = [
        rounds.Round(
            r['round'],
            tuple(r['tasks']),
            package,
            r['candidate_deployed'],
            tuple(r['reasons']),
            r['seconds'],
        )
        for r, package in zip(counts['rounds'], deployed, strict=True)
    ]
    tasks = [t for r in measured for t in r.tasks]
    frames = rounds.fresh_frames(tasks, cfg.matrix_frames_per_task, cfg.width, cfg.height)
    return rounds.measure(measured, frames)


def rounds_markdown(result: dict[str, Any]) -> list[str]:
    tasks = result['tasks']
    lines = [
        '## Lifelong rounds (measured like Ianvs)',
        '',
        f'mIoU (%) of every task after every round on {result["frames_per_task"]} fresh '
        f'simulator frames per task (world seed {result["world_seed"]}); row 0 is the same '
        'network untrained. Round 1 learns the known tasks; under each task the round whose '
        'deployed model learned it (a refused candidate learns nothing).',
        '',
        '| model | '
        + ' | '.join(f'{t} ({rounds.learned_text(result["learned_in_round"][t])})' for t in tasks)
        + ' |',
        '|---|' + '---|' * len(tasks),
    ]
    for number, row in enumerate(result['miou_matrix']):
        name = 'untrained' if number == 0 else f'after round {number}'
        lines.append(f'| {name} | ' + ' | '.join(f'{100 * v:.1f}' for v in row) + ' |')
    bwt = '—' if result['bwt'] is None else f'{result["bwt"]:+.2f}'
    fwt = '—' if result['fwt'] is None else f'{result["fwt"]:+.2f}'
    lines += [
        '',
        f'BWT {bwt} points (GEM: last row minus the row that learned each task; target '
        f'≥ {-FORGETTING_TARGET_POINTS:g}), FWT {fwt} points (Ianvs: the round before a task '
        f"is learned minus the untrained row), Ianvs' own BWT {result['bwt_ianvs']:+.2f}.",
        '',
        '![the matrix as a heatmap](rounds.png)',
        '',
        '| round | learns | deploy decision | unseen AUROC of the tasks still unseen | seconds |',
        '|---|---|---|---|---|',
    ]
    for r in result['per_round']:
        aurocs = result['unseen_auroc_by_round'].get(str(r['round']), {})
        auroc_text = ', '.join(f'{t} {v:.3f}' for t, v in aurocs.items()) or '—'
        verdict = 'deployed' if r['candidate_deployed'] else 'refused'
        lines.append(
            f'| {r["round"]} | {", ".join(r["tasks"])} | {verdict} ({r["model_version"]}) | '
            f'{auroc_text} | {r["seconds"]} |'
        )
    return lines


def write_report(cfg: DemoConfig, paths: DemoPaths, counts: dict) -> dict[str, Any]:
    """Analyse both drives and write the report; returns the summary (also summary.json)."""
    out = paths.out / 'report'
    ground_truth = GroundTruthStore(paths.robot / 'ground_truth', max_frames=1 << 30)
    before, after = (
        analyse_drive(d, ground_truth, schedule, cfg.rate_hz, UNSEEN_TASKS)
        for d, schedule in (
            (paths.drives[0], cfg.schedules[0]),
            (paths.drives[-1], cfg.schedules[-1]),
        )
    )
    job = StateDir(paths.state).read_job() or {}
    conditions = job.get('status', {}).get('conditions', [])
    result = outcome(before, after, conditions)
    deployed = [mp.load_package(r['package_dir']) for r in counts['rounds']]
    models = {'before': deployed[0], 'after': deployed[-1]}
    route_plot(before, after, out / 'route.png')
    miou_plot(result, out / 'miou.png')
    examples_plot(paths.drives[0], before, ground_truth, models, out / 'examples.png')
    result['lifelong_rounds'] = lifelong_rounds(cfg, counts, deployed)
    rounds.heatmap(result['lifelong_rounds'], out / 'rounds.png')
    summary = {**result, **counts}
    (out / 'summary.json').write_text(json.dumps(summary, indent=1, sort_keys=True) + '\n')
    decision = read_decision(paths, counts['rounds'][-1]['round'])
    (out / 'report.md').write_text(markdown(result, counts, conditions, decision))
    return summary
