"""What one drive of the demo route showed: per-task mIoU against the simulator's ground truth,
the unseen score and alarm level over route time, and how well the alarm matched the unseen
stretch; and the comparison of two drives on the frames they share.

A drive is the observer's directory (``timeline.jsonl``, ``labels/<stamp>.png``) plus the sim
camera's ground-truth store. Route time is exact for camera frames (frame ``k`` of the drive is at
``k / rate``, however slowly it was rendered); scores and alarms, which carry no frame stamp, are
placed by their arrival time, interpolated between the frames' stamps (the camera stamps frames
with the wall clock).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from robo_lifelong.errors import DatasetError
from robo_lifelong.labels import NUM_CLASSES
from robo_lifelong.sim.ground_truth import GroundTruthStore
from robo_lifelong.sim.route import parse_schedule, schedule_seconds
from robo_lifelong_cloud.demo import timeline
from robo_lifelong_cloud.metrics import confusion, iou_report

WARN, ERROR = 1, 2  # DiagnosticStatus levels; STALE (3) means no frames, not an alarm


def raised(levels: np.ndarray) -> np.ndarray:
    """Which alarm levels are an alarm (WARN or ERROR)."""
    return np.isin(levels, (WARN, ERROR))


class Span(NamedTuple):
    """A stretch of the route where one unseen task is driven, in route time (s)."""

    task: str
    start: float
    end: float

    def contains(self, t: np.ndarray) -> np.ndarray:
        """Which of the route times ``t`` fall inside the stretch (start included, end not)."""
        return (t >= self.start) & (t < self.end)


@dataclass
class Drive:
    stamps: np.ndarray  # int64 stamps (ns) of the drive's camera frames, frame k at k / rate
    rate_hz: float
    duration_s: float
    unseen_spans: list[Span]
    version: str | None
    score_t: np.ndarray  # route time of each unseen/score message
    score: np.ndarray
    alarm_t: np.ndarray  # route time of each alarm message
    alarm_level: np.ndarray
    frame_confusion: dict[int, tuple[str, np.ndarray]]  # route frame index -> task, confusion
    samples: int  # unseen/sample events (samples spooled)
    threshold: float | None  # the unseen score threshold the alarms report
    alarm_quality: dict[str, float] = field(default_factory=dict)
    # per unseen task: the share of its stretch (score messages) at WARN or ERROR; None: no score
    alarmed_by_task: dict[str, float | None] = field(default_factory=dict)

    def stamp_at(self, route_t: float) -> int:
        k = int(np.clip(round(route_t * self.rate_hz), 0, len(self.stamps) - 1))
        return int(self.stamps[k])

    @property
    def tasks(self) -> set[str]:
        """The tasks of the frames it segmented."""
        return {task for task, _ in self.frame_confusion.values()}

    def level_at(self, t: np.ndarray) -> np.ndarray:
        """Alarm level in force at route times ``t`` (step function of the alarm messages)."""
        idx = np.searchsorted(self.alarm_t, t, side='right') - 1
        levels = np.where(idx >= 0, self.alarm_level[np.clip(idx, 0, None)], 0)
        return levels.astype(np.int64)

    def in_unseen(self, t: np.ndarray) -> np.ndarray:
        inside = np.zeros(len(t), bool)
        for span in self.unseen_spans:
            inside |= span.contains(t)
        return inside


def unseen_spans(schedule: str, unseen_tasks: tuple[str, ...]) -> list[Span]:
    spans, start = [], 0.0
    for task, seconds in parse_schedule(schedule):
        if task in unseen_tasks:
            spans.append(Span(task, start, start + seconds))
        start += seconds
    return spans


def _alarm_quality(drive: Drive) -> dict[str, float]:
    """Per score message: alarm raised (WARN/ERROR) vs inside an unseen stretch."""
    levels = drive.level_at(drive.score_t)
    alarm = raised(levels)
    truth = drive.in_unseen(drive.score_t)
    tp = int(np.sum(alarm & truth))
    fp = int(np.sum(alarm & ~truth))
    fn = int(np.sum(~alarm & truth))
    known = int(np.sum(~truth))
    return {
        'precision': tp / (tp + fp) if tp + fp else 0.0,
        'recall': tp / (tp + fn) if tp + fn else 0.0,
        'known_frames_alarmed': fp / known if known else 0.0,
        'error_in_unseen': bool(np.any(levels[truth] == ERROR)),
    }


def alarmed_by_task(drive: Drive) -> dict[str, float | None]:
    """Per unseen task of the drive (in route order): the share of the score messages on its
    stretches during which the alarm stood at WARN or ERROR. One share over all unseen stretches
    hides a task: after the demo's four rounds night and construction were quiet (0 %) while
    dusk, learned last, was alarmed a third of its stretch. None: no score arrived there."""
    alarm = raised(drive.level_at(drive.score_t))
    inside: dict[str, np.ndarray] = {}
    for span in drive.unseen_spans:
        here = span.contains(drive.score_t)
        inside[span.task] = inside.get(span.task, np.zeros_like(here)) | here
    return {task: float(np.mean(alarm[m])) if m.any() else None for task, m in inside.items()}


def analyse_drive(
    directory: Path,
    ground_truth: GroundTruthStore,
    schedule: str,
    rate_hz: float,
    unseen_tasks: tuple[str, ...],
) -> Drive:
    records = timeline.read_timeline(directory)
    if not records:
        raise DatasetError(f'{directory}: no timeline recorded')
    first_t, last_t = records[0]['t'], records[-1]['t']
    stamps = [s for s in ground_truth.stamps() if first_t * 1e9 <= s <= last_t * 1e9]
    duration = schedule_seconds(parse_schedule(schedule))
    stamps = stamps[: round(duration * rate_hz)]
    if not stamps:
        raise DatasetError(f'{directory}: no camera frame has ground truth in this drive')
    frame_of = {stamp: k for k, stamp in enumerate(stamps)}
    wall = np.array(stamps, np.float64) / 1e9
    route = np.arange(len(stamps)) / rate_hz

    def route_time(records: list[dict]) -> np.ndarray:
        t = np.array([r['t'] for r in records], np.float64)
        return np.interp(t, wall, route, left=-1.0, right=duration + 1.0)

    frame_confusion: dict[int, tuple[str, np.ndarray]] = {}
    for record in timeline.of(records, 'segmentation/labels'):
        stamp = record['stamp_ns']
        if stamp not in frame_of:
            continue  # frames past the route's end (the camera loops) are not scored
        pred = cv2.imread(str(directory / 'labels' / f'{stamp}.png'), cv2.IMREAD_UNCHANGED)
        truth, task = ground_truth.get(stamp)
        frame_confusion[frame_of[stamp]] = (task, confusion(pred, truth, NUM_CLASSES))
    scores = timeline.of(records, 'unseen/score')
    alarms = timeline.of(records, 'alarm')
    drive = Drive(
        stamps=np.array(stamps, np.int64),
        rate_hz=rate_hz,
        duration_s=duration,
        unseen_spans=unseen_spans(schedule, unseen_tasks),
        version=timeline.model_version(records),
        score_t=route_time(scores),
        score=np.array([r['score'] for r in scores]),
        alarm_t=route_time(alarms),
        alarm_level=np.array([r['level'] for r in alarms], np.int64),
        frame_confusion=frame_confusion,
        samples=len(timeline.of(records, 'unseen/sample')),
        threshold=next(
            (float(r['values']['threshold']) for r in alarms if r['values'].get('threshold')), None
        ),
    )
    keep = (drive.score_t >= 0) & (drive.score_t <= duration)
    drive.score_t, drive.score = drive.score_t[keep], drive.score[keep]
    drive.alarm_quality = _alarm_quality(drive)
    drive.alarmed_by_task = alarmed_by_task(drive)
    return drive


def shared_frame_reports(before: Drive, after: Drive) -> tuple[dict, dict, dict[str, int]]:
    """``iou_report`` of each drive over the frames both segmented at the same route time with
    the same task, and how many such frames each task has. The simulator renders a route frame
    from its route time alone, so these are the same images: the models are compared, not the
    views (a task passed at another time of the route is another stretch of the campus, whose
    difficulty differs by several points)."""
    shared = sorted(
        k
        for k, (task, _) in before.frame_confusion.items()
        if k in after.frame_confusion and after.frame_confusion[k][0] == task
    )
    if not shared:
        raise DatasetError('the two drives segmented no frame at the same route time')

    def report(drive: Drive) -> dict:
        confusions: dict[str, np.ndarray] = {}
        for k in shared:
            task, conf = drive.frame_confusion[k]
            confusions[task] = confusions.get(task, 0) + conf
        return iou_report(confusions)

    counts = Counter(before.frame_confusion[k][0] for k in shared)
    return report(before), report(after), dict(counts)


def task_miou(report: dict) -> dict[str, float]:
    """Per-task mIoU of a ``metrics.iou_report``."""
    return {task: r['miou'] for task, r in report['per_task'].items()}


def class_iou(report: dict, task: str, class_name: str) -> float | None:
    """IoU of ``class_name`` on ``task``'s frames of a ``metrics.iou_report``."""
    return report['per_task'].get(task, {}).get('per_class', {}).get(class_name)
