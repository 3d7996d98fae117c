"""Ground-truth labels of the frames the sim camera published, keyed by stamp.

The simulator knows every pixel's class; perception must not. The sim camera stores each
published frame's labels here so that a later annotation step (the stand-in for a human
labeller) can fetch them by the stamp of an uploaded sample. Layout of ``directory``:
``<stamp_ns>.png`` (8-bit label ids) and ``<stamp_ns>.json`` (``{"stamp_ns", "task"}``), both
written atomically; the JSON is written last, so a frame exists once its JSON does. Writing
keeps only the newest ``max_frames`` frames (an earlier run's count too); opening a store to read
deletes nothing (the annotation step's reader, opened with the default bound, once evicted the
first drive's frames of a four-round demo). One writer per directory; readers may be other
processes.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
from collections import deque

import cv2
import numpy as np

from robo_lifelong.errors import ConfigError, DatasetError, ObjectMissing
from robo_lifelong.transfer.storage import LocalStorage

log = logging.getLogger(__name__)

DEFAULT_MAX_FRAMES = 2000
_PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]


class GroundTruthStore:
    """Bounded on-disk store of (labels, task) per frame stamp in nanoseconds."""

    def __init__(self, directory: str | os.PathLike, max_frames: int = DEFAULT_MAX_FRAMES):
        if max_frames < 1:
            raise ConfigError(f'ground truth max_frames must be >= 1, got {max_frames!r}')
        self.storage = LocalStorage(directory)
        self.max_frames = max_frames
        self._kept = deque(self.stamps())  # oldest first; frames of an earlier run count too

    def __repr__(self) -> str:
        return f'GroundTruthStore({self.storage.url!r}, max_frames={self.max_frames!r})'

    def put(self, stamp_ns: int, labels: np.ndarray, task: str) -> None:
        """Store (H, W) uint8 ``labels`` and ``task`` for ``stamp_ns``, dropping the oldest
        frames beyond ``max_frames``."""
        if not isinstance(labels, np.ndarray) or labels.ndim != 2 or labels.dtype != np.uint8:
            shape, dtype = getattr(labels, 'shape', None), getattr(labels, 'dtype', type(labels))
            raise DatasetError(
                f'ground truth labels must be an (H, W) uint8 array, got shape {shape!r} '
                f'dtype {str(dtype)!r}'
            )
        ok, png = cv2.imencode('.png', labels, _PNG_FAST)
        if not ok:
            raise DatasetError(f'cannot encode ground truth labels for stamp {stamp_ns!r}')
        self.storage.write_bytes(f'{stamp_ns}.png', png.tobytes())
        meta = json.dumps({'stamp_ns': int(stamp_ns), 'task': task})
        self.storage.write_bytes(f'{stamp_ns}.json', meta.encode())
        if not self._kept or stamp_ns > self._kept[-1]:
            self._kept.append(stamp_ns)
        elif stamp_ns not in self._kept:  # out of order: rare, keep the deque sorted
            self._kept = deque(sorted([*self._kept, stamp_ns]))
        self._evict()

    def _evict(self) -> None:
        while len(self._kept) > self.max_frames:
            old = self._kept.popleft()
            self.storage.delete(f'{old}.json')  # first: without it the frame no longer exists
            self.storage.delete(f'{old}.png')

    def stamps(self) -> list[int]:
        """Stamps of the stored frames, oldest first (read from disk, so other writers' frames
        are seen too)."""
        stamps = []
        for key in self.storage.list():
            stem, _, suffix = key.rpartition('.')
            if suffix == 'json' and stem.isdigit():
                stamps.append(int(stem))
        return sorted(stamps)

    def get(self, stamp_ns: int) -> tuple[np.ndarray, str]:
        """(labels (H, W) uint8, task) of the frame stamped exactly ``stamp_ns``.

        ObjectMissing if there is no such frame (never stored, or evicted); DatasetError if its
        files are corrupt.
        """
        meta_key = f'{stamp_ns}.json'
        try:
            task = json.loads(self.storage.read_bytes(meta_key))['task']
        except (ValueError, KeyError, TypeError) as e:
            raise DatasetError(f'corrupt ground truth {self.storage.url_for(meta_key)!r}') from e
        png_key = f'{stamp_ns}.png'
        try:
            png = self.storage.read_bytes(png_key)
        except ObjectMissing as e:  # evicted between the two reads
            raise ObjectMissing(f'ground truth for stamp {stamp_ns!r} was just evicted') from e
        labels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        if labels is None or labels.ndim != 2 or labels.dtype != np.uint8:
            raise DatasetError(f'corrupt ground truth labels {self.storage.url_for(png_key)!r}')
        return labels, task

    def nearest(self, stamp_ns: int, tolerance_ns: int) -> tuple[int, np.ndarray, str] | None:
        """(stored stamp, labels, task) of the frame closest to ``stamp_ns`` if it is at most
        ``tolerance_ns`` away, else None."""
        stamps = self.stamps()
        i = bisect.bisect_left(stamps, stamp_ns)
        close = [s for s in stamps[max(i - 1, 0) : i + 1] if abs(s - stamp_ns) <= tolerance_ns]
        if not close:
            return None
        best = min(close, key=lambda s: abs(s - stamp_ns))
        labels, task = self.get(best)
        return best, labels, task
