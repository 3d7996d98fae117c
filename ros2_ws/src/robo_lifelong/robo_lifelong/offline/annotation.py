"""The annotation hand-off: labels for uploaded (unlabeled) samples, then the training index.

Uploaded samples are listed in ``unlabeled.txt`` (``<sample_id> <sample directory key>``, see
``uploader``), apart from the training ``data.txt`` that Sedna's LocalController counts. For each
sample that gets a label, this module writes, below the same storage root::

    <task>/rgb/<sample_id>.png     copy of the uploaded rgb.png
    <task>/depth/<sample_id>.png   copy of depth.png (when the sample has one)
    <task>/label/<sample_id>.png   8-bit class ids of robo_lifelong.labels (255 = ignore)

records ``rgb -> task`` in ``tasks.json`` and appends ``rgb depth label`` to ``data.txt`` with a
conditional write keyed by the rgb path, so the LC's ``num_of_samples`` trigger counts it once.
The task is the first path component, as in the simulator's datasets, because Sedna's indirect S3
download fetches only the files the index lists, not ``tasks.json``. Every step is idempotent, so
an interrupted run is simply run again.

Label sources: the simulator's ground truth by frame stamp (demo and benchmarks), or a folder of
human masks named ``<sample_id>.png``, either class ids (8-bit, one channel) or colours of the
label map's palette (RGB), validated against the label map and the sample's image size.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from robo_lifelong.errors import DatasetError, PreconditionFailed, RoboLifelongError, StorageError
from robo_lifelong.io.dataset import INDEX, TASKS_SIDECAR, Sample, stratified
from robo_lifelong.labels import CLASSES, IGNORE_ID
from robo_lifelong.sim.ground_truth import GroundTruthStore
from robo_lifelong.transfer.spool import META_NAME
from robo_lifelong.transfer.storage import S3Config, Storage, join, open_storage
from robo_lifelong.transfer.uploader import UNLABELED_INDEX

log = logging.getLogger(__name__)

RGB_NAME, DEPTH_NAME = 'rgb.png', 'depth.png'
_TASK_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_-]{0,63}')
_VALID_IDS = np.array(sorted({c.id for c in CLASSES} | {IGNORE_ID}), np.uint8)
_TASK_WRITE_ATTEMPTS = 60
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 3]

# (sample, its meta.json) -> (labels (H, W) uint8, task) or None when this source has none
LabelSource = Callable[['UnlabeledSample', dict], 'tuple[np.ndarray, str] | None']


@dataclass(frozen=True)
class UnlabeledSample:
    sample_id: str
    key: str  # storage key of the sample directory


@dataclass
class AnnotationReport:
    annotated: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # labelled before
    no_label: list[str] = field(default_factory=list)  # the source has nothing for them
    rejected: dict[str, str] = field(default_factory=dict)  # sample id -> reason


def read_unlabeled(storage: Storage, index_key: str = UNLABELED_INDEX) -> list[UnlabeledSample]:
    data, _ = storage.read_with_etag(index_key)
    samples = []
    for number, line in enumerate((data or b'').decode('utf-8').splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 2:
            raise DatasetError(f'{storage.url_for(index_key)}:{number}: expected "<id> <key>"')
        samples.append(UnlabeledSample(tokens[0], tokens[1]))
    return samples


def labelled_ids(storage: Storage, data_index: str = INDEX) -> set[str]:
    """Sample ids (rgb file stems) that ``data_index`` already lists."""
    data, _ = storage.read_with_etag(data_index)
    lines = (data or b'').decode('utf-8').splitlines()
    return {Path(line.split()[0]).stem for line in lines if line.split()}


def check_task(task: str) -> str:
    if not isinstance(task, str) or not _TASK_RE.fullmatch(task):
        raise DatasetError(f'task {task!r} must be a name of [A-Za-z0-9_-] (a path component)')
    return task


def colours_to_ids(image: np.ndarray, where: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB mask in the label map's palette -> (H, W) uint8 ids; black is
    ignore."""
    lut = {tuple(c.color): c.id for c in CLASSES} | {(0, 0, 0): IGNORE_ID}
    colours, inverse = np.unique(image.reshape(-1, 3), axis=0, return_inverse=True)
    unknown = [tuple(int(v) for v in c) for c in colours if tuple(int(v) for v in c) not in lut]
    if unknown:
        raise DatasetError(f'{where}: colours {unknown[:5]} are not in the label map palette')
    ids = np.array([lut[tuple(int(v) for v in c)] for c in colours], np.uint8)
    return ids[inverse.reshape(-1)].reshape(image.shape[:2])


def check_labels(labels: np.ndarray, height: int, width: int, where: str) -> np.ndarray:
    """``labels`` if it is an (height, width) uint8 array of label-map ids (or 255)."""
    if not isinstance(labels, np.ndarray) or labels.dtype != np.uint8 or labels.ndim != 2:
        raise DatasetError(f'{where}: labels must be an 8-bit single-channel image')
    if labels.shape != (height, width):
        raise DatasetError(f'{where}: label size {labels.shape} != image size {(height, width)}')
    bad = np.setdiff1d(np.unique(labels), _VALID_IDS)
    if bad.size:
        raise DatasetError(f'{where}: label ids {bad.tolist()} are not in the label map')
    return labels


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A human mask file as (H, W) uint8 ids: class ids as is, palette colours converted."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetError(f'cannot decode mask {str(path)!r}')
    if image.ndim == 3 and image.shape[2] in (3, 4) and image.dtype == np.uint8:
        return colours_to_ids(cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB), str(path))
    return image


def _image_size(storage: Storage, key: str, meta: dict) -> tuple[int, int]:
    if isinstance(meta.get('height'), int) and isinstance(meta.get('width'), int):
        return meta['height'], meta['width']
    image = cv2.imdecode(np.frombuffer(storage.read_bytes(key), np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetError(f'cannot decode {storage.url_for(key)}')
    return image.shape[:2]


def add_labels(
    storage: Storage, sample: UnlabeledSample, labels: np.ndarray, task: str, meta: dict
) -> Sample:
    """Write the training copy of an uploaded sample with ``labels`` (idempotent); the caller
    appends ``Sample.line()`` to the index."""
    check_task(task)
    files = meta.get('files', {})
    if RGB_NAME not in files:
        raise DatasetError(f'{storage.url_for(sample.key)}: sample has no {RGB_NAME}')
    height, width = _image_size(storage, join(sample.key, RGB_NAME), meta)
    check_labels(labels, height, width, f'labels of {sample.sample_id}')
    name = f'{sample.sample_id}.png'
    rgb = f'{task}/rgb/{name}'
    depth = f'{task}/depth/{name}' if DEPTH_NAME in files else None
    label = f'{task}/label/{name}'
    storage.write_bytes(rgb, storage.read_bytes(join(sample.key, RGB_NAME)))
    if depth is not None:
        storage.write_bytes(depth, storage.read_bytes(join(sample.key, DEPTH_NAME)))
    ok, png = cv2.imencode('.png', labels, _PNG)
    if not ok:
        raise DatasetError(f'cannot encode labels of {sample.sample_id}')
    storage.write_bytes(label, png.tobytes())
    record_task(storage, rgb, task)
    return Sample(rgb, depth, label, task)


def record_task(storage: Storage, rgb: str, task: str) -> None:
    """Add ``rgb -> task`` to ``tasks.json`` (the dataset sidecar) with conditional writes."""
    for _ in range(_TASK_WRITE_ATTEMPTS):
        data, etag = storage.read_with_etag(TASKS_SIDECAR)
        try:
            body = json.loads(data) if data else {'samples': {}}
            samples = body['samples']
        except (ValueError, KeyError, TypeError) as e:
            raise DatasetError(f'{storage.url_for(TASKS_SIDECAR)}: not a tasks sidecar') from e
        if samples.get(rgb) == task:
            return
        samples[rgb] = task
        try:
            storage.write_if(TASKS_SIDECAR, json.dumps(body, sort_keys=True).encode(), etag)
            return
        except PreconditionFailed:
            continue
    raise StorageError(f'could not update {storage.url_for(TASKS_SIDECAR)}: too many writers')


def annotate_pending(
    storage: Storage,
    source: LabelSource,
    index_key: str = UNLABELED_INDEX,
    data_index: str = INDEX,
) -> AnnotationReport:
    """Label every unlabeled sample ``source`` has labels for, then append them to the index in
    ``stratified`` task order (the LC splits them positionally); bad labels are reported, not
    fatal. Interrupted before the append, a second run labels the same samples again."""
    report = AnnotationReport()
    labelled: list[Sample] = []
    done = labelled_ids(storage, data_index)
    for sample in read_unlabeled(storage, index_key):
        if sample.sample_id in done:
            report.already.append(sample.sample_id)
            continue
        try:
            meta = json.loads(storage.read_bytes(join(sample.key, META_NAME)))
            found = source(sample, meta)
            if found is None:
                report.no_label.append(sample.sample_id)
                continue
            labelled.append(add_labels(storage, sample, found[0], found[1], meta))
        except (DatasetError, ValueError) as e:
            report.rejected[sample.sample_id] = str(e)
            continue
        report.annotated.append(sample.sample_id)
    for item in stratified(labelled, lambda s: s.task):
        storage.append_line_once(data_index, item.line(), item.rgb)  # the trigger counts these
    return report


def ground_truth_source(directory: str | os.PathLike, tolerance_ns: int) -> LabelSource:
    """Labels from the simulator's ground truth store, by the sample's frame stamp."""
    store = GroundTruthStore(directory)

    def source(_sample: UnlabeledSample, meta: dict) -> tuple[np.ndarray, str] | None:
        stamp = meta.get('stamp')
        if not isinstance(stamp, (int, float)):
            return None
        found = store.nearest(round(stamp * 1e9), tolerance_ns)
        return None if found is None else (found[1], found[2])

    return source


def mask_folder_source(directory: str | os.PathLike, task: str) -> LabelSource:
    """Labels from ``<directory>/<sample_id>.png`` human masks, all of scene ``task``."""
    check_task(task)
    folder = Path(directory)

    def source(sample: UnlabeledSample, _meta: dict) -> tuple[np.ndarray, str] | None:
        path = folder / f'{sample.sample_id}.png'
        return (read_mask(path), task) if path.is_file() else None

    return source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='robo-lifelong-annotate',
        description='Label uploaded samples and append them to the Sedna data.txt.',
    )
    parser.add_argument('storage_url', help='dataset root: s3://bucket/prefix or a directory')
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument('--masks', type=Path, help='folder of <sample_id>.png label masks')
    mode.add_argument('--ground-truth', type=Path, help="the simulator's ground truth directory")
    parser.add_argument('--task', help='task (scene) name of the imported masks')
    parser.add_argument('--tolerance-ms', type=float, default=1.0, help='stamp match tolerance')
    parser.add_argument('--unlabeled-index', default=UNLABELED_INDEX)
    parser.add_argument('--data-index', default=INDEX)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        if args.masks is not None:
            if not args.task:
                parser.error('--masks needs --task')
            if not args.masks.is_dir():
                parser.error(f'--masks {str(args.masks)!r} is not a directory')
            source = mask_folder_source(args.masks, args.task)
        else:
            source = ground_truth_source(args.ground_truth, round(args.tolerance_ms * 1e6))
        storage = open_storage(args.storage_url, S3Config.from_environ(os.environ))
        report = annotate_pending(storage, source, args.unlabeled_index, args.data_index)
    except RoboLifelongError as e:
        print(f'robo-lifelong-annotate: {e}', file=sys.stderr)
        return 2
    print(
        f'annotated {len(report.annotated)}, already labelled {len(report.already)}, '
        f'without labels {len(report.no_label)}, rejected {len(report.rejected)}'
    )
    for sample_id, reason in report.rejected.items():
        print(f'rejected {sample_id}: {reason}')
    if args.masks is not None:
        known = {s.sample_id for s in read_unlabeled(storage, args.unlabeled_index)}
        for path in sorted(args.masks.glob('*.png')):
            if path.stem not in known:
                print(f'ignored {path.name}: no uploaded sample with that id')
    return 1 if report.rejected else 0


if __name__ == '__main__':
    sys.exit(main())
