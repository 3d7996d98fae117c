"""One full lifelong-learning cycle (the demo, ``robo-lifelong-demo``): wall time per step,
samples collected, alarm precision/recall over the route, per-task mIoU before/after the update,
forgetting (largest mIoU drop on an old task; target < 1 point) and the new classes' IoU after
the update. ``quick`` runs the CI-sized cycle (smaller images, dataset and route).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from robo_lifelong_cloud.demo.backend import open_backend
from robo_lifelong_cloud.demo.loop import DemoConfig, run_demo
from robo_lifelong_cloud.demo.report import FORGETTING_TARGET_POINTS, write_report

TARGET_DEMO_SECONDS = {True: 180.0, False: 600.0}  # --quick / default, on 2 cores


def run(quick: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix='bench-lifelong-') as tmp:
        cfg = DemoConfig(Path(tmp), quick=quick)
        with open_backend(cfg.storage, cfg.out) as backend:
            paths, counts = run_demo(cfg, backend, lambda _line: None)
            summary = write_report(cfg, paths, counts)
    seconds = counts['total_seconds']
    return {
        'load_average_1min': round(os.getloadavg()[0], 2),
        'mode': 'quick' if quick else 'default',
        'route': cfg.schedule,
        'image': f'{cfg.height}x{cfg.width}',
        'initial_frames': counts['initial_frames'],
        'stage_seconds': counts['stage_seconds'],
        'total_seconds': seconds,
        'target_total_seconds': TARGET_DEMO_SECONDS[quick],
        'samples_collected': summary['samples_collected_before'],
        'samples_annotated': counts['annotated'],
        'alarm_before': summary['alarm_before'],
        'alarm_after': summary['alarm_after'],
        'miou_before': summary['miou_before'],
        'miou_after': summary['miou_after'],
        'forgetting_points': summary['forgetting_points'],
        'max_forgetting_points': summary['max_forgetting_points'],
        'target_max_forgetting_points': FORGETTING_TARGET_POINTS,
        'new_class_iou_after': summary['new_class_iou_after'],
        'model_before': summary['model_before'],
        'model_after': summary['model_after'],
        'checks': summary['checks'],
        'target_met': bool(
            seconds <= TARGET_DEMO_SECONDS[quick]
            and summary['max_forgetting_points'] < FORGETTING_TARGET_POINTS
            and all(summary['checks'].values())
        ),
    }
