"""Training data: Sedna txt samples loaded once, resized to the model input, augmented per item.

Frames are decoded and validated up front (``robo_lifelong.io.dataset.load_sample``), so a bad file
stops the worker before training with an error naming it, and epochs do not re-decode PNGs.
Label ids at or above the model's class count become ``IGNORE_ID``, as Sedna's eval does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from robo_lifelong.errors import DatasetError, ObjectMissing, StorageError
from robo_lifelong.io.dataset import TASKS_SIDECAR, Sample, load_sample, read_index
from robo_lifelong.labels import IGNORE_ID
from robo_lifelong.models.runtime import preprocess
from robo_lifelong.transfer.storage import S3Config, open_storage, parent_of, split_url
from robo_lifelong_cloud.outliers import OutlierConfig, paste_outliers

log = logging.getLogger(__name__)

MEAN_RGB = (0.485, 0.456, 0.406)  # ImageNet statistics, the usual choice even from scratch
STD_RGB = (0.229, 0.224, 0.225)
DEPTH_SCALE = 1e-4  # mm -> metres / 10: a 0-10 m range maps to 0-1
DEPTH_MEAN, DEPTH_STD = 0.0, 1.0
DOWNLOAD_THREADS = 8


@dataclass(frozen=True)
class Frame:
    rgb: np.ndarray  # (h, w, 3) uint8 at the model input size
    depth_mm: np.ndarray | None  # (h, w) uint16
    labels: np.ndarray  # (h, w) uint8
    task: str


def input_spec(height: int, width: int, channels: int) -> dict:
    """The manifest's ``input`` block: what the robot runtime must do to a frame."""
    return {
        'name': 'image',
        'height': height,
        'width': width,
        'channels': channels,
        'mean': list(MEAN_RGB) + [DEPTH_MEAN] * (channels - 3),
        'std': list(STD_RGB) + [DEPTH_STD] * (channels - 3),
        'depth_scale': DEPTH_SCALE,
    }


def resolve_dataset(
    index_url: str,
    original_url: str,
    workdir: str | os.PathLike,
    s3: S3Config | None = None,
    what: str = 'TRAIN_DATASET_URL',
    fetch: bool = True,
) -> tuple[Path, list[Sample]]:
    """``(local root, samples)`` of a Sedna dataset list whose paths are relative to
    ``dirname(original_url)`` (PROTOCOL.md §2.1). Local paths are used in place; ``s3://`` index
    files and (with ``fetch``, else see ``fetch_samples``) sample trees are downloaded under
    ``workdir``. Errors name the URL and variable."""
    workdir = Path(workdir)
    try:
        index_parent, index_name = split_url(index_url)
        root_url = parent_of(original_url)
        if index_url.startswith('s3://'):
            local_index = workdir / 'index' / index_name
            open_storage(index_parent, s3).download_file(index_name, local_index)
        else:
            local_index = Path(index_url)
            if not local_index.is_file():
                raise DatasetError(f'{what}={index_url}: no such dataset index file')
        root = Path(root_url)
        if root_url.startswith('s3://'):
            root = workdir / 'samples'
            remote = open_storage(root_url, s3)
            if remote.exists(TASKS_SIDECAR):
                remote.download_file(TASKS_SIDECAR, root / TASKS_SIDECAR)
        samples = read_index(local_index, root)
    except ObjectMissing as e:
        raise DatasetError(f'{what}={index_url}: {e}') from e
    except StorageError as e:
        raise DatasetError(f'{what}={index_url}: storage unreachable or refused: {e}') from e
    if not samples:
        raise DatasetError(f'{what}={index_url}: the dataset list has no samples')
    if fetch:
        fetch_samples(original_url, root, samples, s3, f'{what}={index_url}')
    return root, samples


def fetch_samples(
    original_url: str,
    root: Path,
    samples: Sequence[Sample],
    s3: S3Config | None = None,
    what: str = 'ORIGINAL_DATASET_URL',
) -> None:
    """Download the files of ``samples`` from an ``s3://`` dataset into ``root`` (those not there
    yet); nothing to do for a local dataset."""
    if not original_url.startswith('s3://'):
        return
    remote = open_storage(parent_of(original_url), s3)
    files = sorted({rel for s in samples for rel in (s.rgb, s.depth, s.label) if rel})
    missing = [rel for rel in files if not (root / rel).exists()]
    try:
        # small files: the round trips dominate, so several are in flight at once
        with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
            list(pool.map(lambda rel: remote.download_file(rel, root / rel), missing))
    except ObjectMissing as e:
        raise DatasetError(f'{what}: {e}') from e
    except StorageError as e:
        raise DatasetError(f'{what}: storage unreachable or refused: {e}') from e


def load_frames(
    root: str | os.PathLike, samples: Sequence[Sample], height: int, width: int
) -> list[Frame]:
    """Decode, validate and resize every sample; every sample needs a label."""
    frames = []
    for sample in tqdm(samples, desc='load', unit='frame', disable=None, leave=False):
        if not sample.label:
            raise DatasetError(f'{sample.rgb}: the sample has no label image (last path)')
        loaded = load_sample(root, sample)
        size = (width, height)
        rgb, depth, labels = loaded.rgb, loaded.depth_mm, loaded.labels
        if rgb.shape[:2] != (height, width):
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
            if depth is not None:
                depth = cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST)
        frames.append(Frame(rgb, depth, labels, sample.task or 'default'))
    return frames


def _color_jitter(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = rgb.astype(np.float32)
    gray = x.mean(axis=2, keepdims=True)
    x = gray + (x - gray) * rng.uniform(0.7, 1.3)  # saturation
    x = (x - x.mean()) * rng.uniform(0.75, 1.25) + x.mean()  # contrast
    x = x * rng.uniform(0.7, 1.3)  # brightness
    return np.clip(x, 0, 255).astype(np.uint8)


def _scale_crop(
    arrays: list[np.ndarray | None], scale: float, rng: np.random.Generator
) -> list[np.ndarray | None]:
    """Zoom in by ``scale`` and crop back to the original size at a random place."""
    h, w = arrays[0].shape[:2]
    nh, nw = int(round(h * scale)), int(round(w * scale))
    y, x = rng.integers(0, nh - h + 1), rng.integers(0, nw - w + 1)
    out = []
    for i, a in enumerate(arrays):
        if a is None:
            out.append(None)
            continue
        interp = cv2.INTER_LINEAR if i == 0 else cv2.INTER_NEAREST
        out.append(cv2.resize(a, (nw, nh), interpolation=interp)[y : y + h, x : x + w])
    return out


class SegmentationDataset(Dataset):
    """Items: (input (C, h, w) float32 tensor, labels (h, w) int64 tensor); inputs are
    normalised by the robot runtime's own ``preprocess``, so training and robot agree. With
    ``augment`` and ``outliers``, made-up things are pasted into some frames (``outliers.py``);
    their pixels carry ``OUTLIER_ID``."""

    def __init__(
        self,
        frames: Sequence[Frame],
        channels: int,
        num_classes: int,
        augment: bool = False,
        seed: int = 0,
        outliers: OutlierConfig | None = None,
    ) -> None:
        self.frames = list(frames)
        self.channels = channels
        self.num_classes = num_classes
        self.augment = augment
        self.outliers = outliers
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        frame = self.frames[index]
        rgb, depth, labels = frame.rgb, frame.depth_mm, frame.labels
        if self.augment:
            rng = self.rng
            if rng.random() < 0.5:
                rgb, labels = rgb[:, ::-1], labels[:, ::-1]
                depth = None if depth is None else depth[:, ::-1]
            if rng.random() < 0.5:
                rgb, depth, labels = _scale_crop([rgb, depth, labels], rng.uniform(1.0, 1.5), rng)
            rgb = _color_jitter(rgb, rng)
        target = labels.astype(np.int64)
        target[(target >= self.num_classes) & (target != IGNORE_ID)] = IGNORE_ID
        if self.augment and self.outliers and self.rng.random() < self.outliers.probability:
            rgb, depth, target = paste_outliers(rgb, depth, target, self.rng, self.outliers)
        h, w = rgb.shape[:2]
        spec = input_spec(h, w, self.channels)
        x = preprocess(np.ascontiguousarray(rgb), depth, spec)[0]
        return torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(target))


def max_label(frames: Sequence[Frame]) -> int:
    """Largest class id (not ignore) in the frames' labels; -1 if none."""
    ids = set()
    for f in frames:
        ids.update(np.unique(f.labels).tolist())
    ids.discard(IGNORE_ID)
    return max(ids, default=-1)
