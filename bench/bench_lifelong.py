"""Lifelong rounds end to end (the demo, ``robo-lifelong-demo --rounds N``): each round's samples
collected by the robot's pipeline on the route, labelled from the simulator's ground truth,
retrained, evaluated and deployed through the local controller. Reports every task's mIoU after
every round on fresh frames, BWT and FWT (``demo/rounds.py``), unseen AUROC per round of the tasks
still unseen, wall time per round, and the alarm and new-class figures of the first update.

    python -m bench.bench_lifelong [--rounds 3] [--quick] [--out bench/results]

``make bench`` runs it with ``ROUNDS`` rounds at the demo's full size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.run import HERE, write_result
from robo_lifelong_cloud.demo.backend import open_backend
from robo_lifelong_cloud.demo.loop import ROUND_TASKS, DemoConfig, run_demo
from robo_lifelong_cloud.demo.report import FORGETTING_TARGET_POINTS, write_report

ROUNDS = 4  # known; night + construction; snow; dusk
TARGETS = {
    'bwt_points_min': -FORGETTING_TARGET_POINTS,
    'round_seconds_max': 600.0,  # each round on 2 cores
    'learned_stretch_alarmed_max': 0.05,  # each learned task's stretch at WARN/ERROR, last drive
    'new_class_iou_min': 0.75,
    'max_forgetting_points': FORGETTING_TARGET_POINTS,  # any old task, fresh frames
    'still_unseen_auroc_min': 0.97,
}


def run(quick: bool = False, rounds: int = ROUNDS) -> dict:
    with tempfile.TemporaryDirectory(prefix='bench-lifelong-') as tmp:
        cfg = DemoConfig(Path(tmp), quick=quick, rounds=rounds)
        with open_backend(cfg.storage, cfg.out) as backend:
            paths, counts = run_demo(cfg, backend, lambda _line: None)
            summary = write_report(cfg, paths, counts)
    measured = summary['lifelong_rounds']
    still_unseen = [v for r in measured['unseen_auroc_by_round'].values() for v in r.values()]
    round_seconds = [r['seconds'] for r in measured['per_round']]
    new_class = summary['new_class_iou_after']
    learned_alarmed = summary['alarmed_by_task_after']  # every unseen task is learned by then
    met = {
        'bwt': measured['bwt'] is not None and measured['bwt'] >= TARGETS['bwt_points_min'],
        'round_seconds': max(round_seconds) <= TARGETS['round_seconds_max'],
        'learned_stretch_alarmed': bool(learned_alarmed)
        and all(
            v is not None and v <= TARGETS['learned_stretch_alarmed_max']
            for v in learned_alarmed.values()
        ),
        'new_class_iou': all(
            (v or 0.0) >= TARGETS['new_class_iou_min'] for v in new_class.values()
        ),
        'forgetting': (measured['max_forgetting_points'] or 0.0)
        <= TARGETS['max_forgetting_points'],
        'still_unseen_auroc': bool(still_unseen)
        and min(still_unseen) >= TARGETS['still_unseen_auroc_min'],
    }
    return {
        'load_average_1min': round(os.getloadavg()[0], 2),
        'mode': 'quick' if quick else 'default',
        'rounds': rounds,
        'round_tasks': [list(t) for t in ROUND_TASKS[:rounds]],
        'routes': list(cfg.schedules),
        'image': f'{cfg.height}x{cfg.width}',
        'initial_frames': counts['initial_frames'],
        'stage_seconds': counts['stage_seconds'],
        'total_seconds': counts['total_seconds'],
        'round_seconds': round_seconds,
        'samples_annotated': counts['annotated'],
        'miou_matrix_tasks': measured['tasks'],
        'miou_matrix': measured['miou_matrix'],  # row 0 untrained, row r after round r
        'bwt_points': measured['bwt'],
        'fwt_points': measured['fwt'],
        'bwt_ianvs_points': measured['bwt_ianvs'],
        'forgetting_points': measured['forgetting_points'],
        'unseen_auroc_by_round': measured['unseen_auroc_by_round'],
        'deploy_decisions': [
            {'round': r['round'], 'deployed': r['candidate_deployed'], 'reasons': r['reasons']}
            for r in measured['per_round']
        ],
        # the first update, on the route (drive 1 against the last drive)
        'alarm_before': summary['alarm_before'],
        'alarm_after': summary['alarm_after'],
        # per unseen task (round_tasks says which round learned it)
        'alarmed_by_task_before': summary['alarmed_by_task_before'],
        'learned_stretch_alarmed_by_task': learned_alarmed,
        'new_class_iou_after': new_class,
        'checks': summary['checks'],
        'targets': TARGETS,
        'met': met,
        'target_met': all(met.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rounds', type=int, default=ROUNDS)
    parser.add_argument('--quick', action='store_true', help='the CI-sized demo')
    parser.add_argument('--out', type=Path, default=HERE / 'results')
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    write_result(args.out, 'lifelong', run(args.quick, args.rounds), args.quick, started)
    return 0


if __name__ == '__main__':
    sys.exit(main())
