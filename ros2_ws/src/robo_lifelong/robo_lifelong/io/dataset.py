"""Sedna txt datasets: ``data.txt`` with one sample per line, paths relative to its directory.

A line lists inputs first and the label last: ``rgb depth label`` (depth optional), as Sedna's
TxtDataParse and its examples read them; tokens are separated by single spaces because Sedna's
LocalController splits index lines on single spaces. Images are PNG: RGB 8-bit, depth 16-bit in
millimetres, labels 8-bit class ids of ``robo_lifelong.labels`` (255 = ignore).
Batches of lines are appended in ``stratified`` task order: Sedna's LocalController splits each
batch of new lines positionally (the first ``trainProb`` share trains, the rest evaluates), so a
batch written task by task would evaluate only its last task.
The sidecar ``tasks.json`` maps each sample's rgb path to its task. Simulator samples also keep
the task as the first path component, because Sedna's indirect S3 download only fetches the
files listed in the index, not the sidecar.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from robo_lifelong.errors import DatasetError
from robo_lifelong.labels import CLASSES, IGNORE_ID

INDEX = 'data.txt'
TASKS_SIDECAR = 'tasks.json'
_VALID_IDS = np.zeros(256, bool)
_VALID_IDS[[c.id for c in CLASSES] + [IGNORE_ID]] = True
_PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]
T = TypeVar('T')


@dataclass(frozen=True)
class Sample:
    rgb: str  # paths relative to the dataset root, '/'-separated
    depth: str | None
    label: str | None
    task: str | None

    def line(self) -> str:
        return ' '.join(p for p in (self.rgb, self.depth, self.label) if p)


@dataclass(frozen=True)
class LoadedSample:
    rgb: np.ndarray  # (H, W, 3) uint8 RGB
    depth_mm: np.ndarray | None  # (H, W) uint16
    labels: np.ndarray | None  # (H, W) uint8


def parse_line(line: str, where: str) -> tuple[str, str | None, str | None]:
    """Tokens of one index line -> (rgb, depth, label); ``where`` names file:line in errors."""
    tokens = line.split()
    if len(tokens) == 1:
        return tokens[0], None, None
    if len(tokens) == 2:
        return tokens[0], None, tokens[1]
    if len(tokens) == 3:
        return tokens[0], tokens[1], tokens[2]
    raise DatasetError(f'{where}: expected 1-3 paths (rgb [depth] label), got {len(tokens)}')


def read_tasks(root: str | os.PathLike) -> dict[str, str]:
    path = Path(root) / TASKS_SIDECAR
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text())['samples'])
    except (ValueError, KeyError, TypeError) as e:
        raise DatasetError(f'{path}: not a tasks sidecar ({e})') from e


def read_index(
    index_path: str | os.PathLike, root: str | os.PathLike | None = None
) -> list[Sample]:
    """Samples of a Sedna txt index; blank lines are skipped as Sedna's workers do."""
    index_path = Path(index_path)
    root = Path(root) if root is not None else index_path.parent
    try:
        text = index_path.read_text()
    except OSError as e:
        raise DatasetError(f'cannot read dataset index {index_path}: {e.strerror}') from e
    tasks = read_tasks(root)
    samples = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        rgb, depth, label = parse_line(line, f'{index_path}:{number}')
        task = tasks.get(rgb) or (rgb.split('/', 1)[0] if '/' in rgb else None)
        samples.append(Sample(rgb, depth, label, task))
    return samples


def _read_png(path: Path, flags: int) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f'missing file {path}')
    image = cv2.imread(str(path), flags)
    if image is None:
        raise DatasetError(f'cannot decode image {path} (corrupt or not an image)')
    return image


def load_sample(root: str | os.PathLike, sample: Sample) -> LoadedSample:
    """Read and validate one sample's images (sizes agree, dtypes right, label ids in the map)."""
    root = Path(root)
    bgr = _read_png(root / sample.rgb, cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    depth = labels = None
    if sample.depth:
        depth = _read_png(root / sample.depth, cv2.IMREAD_UNCHANGED)
        if depth.ndim != 2 or depth.dtype != np.uint16:
            raise DatasetError(f'{root / sample.depth}: depth must be 16-bit single-channel PNG')
    if sample.label:
        labels = _read_png(root / sample.label, cv2.IMREAD_UNCHANGED)
        if labels.ndim != 2 or labels.dtype != np.uint8:
            raise DatasetError(f'{root / sample.label}: labels must be 8-bit single-channel PNG')
        bad = np.flatnonzero(~_VALID_IDS[np.unique(labels)])
        if bad.size:
            ids = np.unique(labels)[bad].tolist()
            raise DatasetError(f'{root / sample.label}: label ids {ids} are not in the label map')
    for name, image in (('depth', depth), ('label', labels)):
        if image is not None and image.shape[:2] != rgb.shape[:2]:
            raise DatasetError(
                f'{root / sample.rgb}: {name} size {image.shape[:2]} != rgb size {rgb.shape[:2]}'
            )
    return LoadedSample(rgb, depth, labels)


def stratified(items: Sequence[T], task_of: Callable[[T], str | None]) -> list[T]:
    """``items`` reordered so that every task is spread evenly over the sequence: any leading
    or trailing share of the result holds about that share of each task's items (their own
    order kept)."""
    tasks = [task_of(item) for item in items]
    counts = Counter(tasks)
    rank: Counter[str | None] = Counter()
    keyed = []
    for position, (task, item) in enumerate(zip(tasks, items, strict=True)):
        r = rank[task]
        rank[task] += 1
        keyed.append(((r + 0.5) / counts[task], position, item))
    return [item for *_, item in sorted(keyed, key=lambda k: k[:2])]


class DatasetWriter:
    """Appends frames to a dataset directory; numbering continues after existing samples, so
    appending grows ``data.txt`` the way Sedna's sample trigger expects."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tasks = read_tasks(self.root)
        existing = read_index(self.root / INDEX) if (self.root / INDEX).exists() else []
        self._next: dict[str, int] = {}
        for s in existing:
            match = re.search(r'(\d+)\.png$', s.rgb)
            if match and s.task:
                self._next[s.task] = max(self._next.get(s.task, 0), int(match.group(1)) + 1)
        self._index = open(self.root / INDEX, 'a')  # noqa: SIM115 - closed in close()

    def next_index(self, task: str) -> int:
        """Number the next sample of ``task`` gets."""
        return self._next.get(task, 0)

    def write(
        self, rgb: np.ndarray, depth_mm: np.ndarray | None, labels: np.ndarray, task: str
    ) -> Sample:
        n = self.next_index(task)
        self._next[task] = n + 1
        name = f'{n:06d}.png'
        paths = {'rgb': f'{task}/rgb/{name}', 'label': f'{task}/label/{name}'}
        images = {'rgb': cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), 'label': labels}
        if depth_mm is not None:
            paths['depth'] = f'{task}/depth/{name}'
            images['depth'] = depth_mm
        for kind, rel in paths.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(path), images[kind], _PNG_FAST):
                raise DatasetError(f'cannot write {path}')
        sample = Sample(paths['rgb'], paths.get('depth'), paths['label'], task)
        self._index.write(sample.line() + '\n')
        self._index.flush()  # line counting (Sedna's trigger) sees each sample at once
        self.tasks[sample.rgb] = task
        return sample

    def close(self) -> None:
        self._index.close()
        sidecar = self.root / TASKS_SIDECAR
        tmp = sidecar.with_suffix('.tmp')
        tmp.write_text(json.dumps({'samples': self.tasks}, indent=0, sort_keys=True))
        os.replace(tmp, sidecar)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
