"""Hot model swap: verify a new model package off the frame path, then swap one reference.

A package is accepted only when it loads (files, schema, hashes: ``load_package``), onnxruntime
builds a session for it, and a smoke inference on a fixed input gives labels of the right shape
with class ids the package knows, finite logits and (if calibrated) a finite unseen score. All of
that happens in the watcher's own thread; the frame path only ever reads ``ModelSlot.current()``
once per frame, so a frame is processed entirely by the old model or entirely by the new one,
never by a half-loaded one. A rejected package leaves the slot untouched.

Packages come from ``request(path)`` (the ``model/update`` topic) and, optionally, a watched
directory: either a package itself or a directory of package directories, of which the highest
``version`` is taken. A candidate that was rejected is not retried until its manifest changes.
The watcher thread is supervised (``supervision``): an unexpected exception (a loader or callback
bug, a file vanishing mid-poll) is counted in ``health()`` and the thread carries on.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robo_lifelong.errors import ModelPackageError, RoboLifelongError
from robo_lifelong.models.package import MANIFEST_FILE, ModelPackage, load_package
from robo_lifelong.models.runtime import SegmentationRuntime
from robo_lifelong.supervision import FailureLog, Health, SupervisedThread, describe

log = logging.getLogger(__name__)

_SMOKE_SIZE = (48, 64)  # (H, W) of the fixed smoke-test frame; the runtime resizes it
# after an unexpected failure: retry soon (the next request may be fine), never spin
_BACKOFF_INITIAL_S = 0.1
_BACKOFF_MAX_S = 5.0


@dataclass(frozen=True)
class LoadedModel:
    package: ModelPackage
    runtime: SegmentationRuntime
    version: str  # 'v<version>-<first 12 of the content hash>', what model/version carries

    @property
    def threshold(self) -> float | None:
        """The unseen threshold (score > threshold means unseen), None if not calibrated."""
        cal = self.runtime.calibration
        return None if cal is None else float(cal.threshold)


def model_version(package: ModelPackage) -> str:
    return f'v{package.version}-{package.content_hash[:12]}'


def smoke_frame() -> np.ndarray:
    """(48, 64, 3) uint8 fixed test frame: colour ramps, so every model sees varied input."""
    h, w = _SMOKE_SIZE
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) % 256], axis=2).astype(
        np.uint8
    )


def smoke_test(runtime: SegmentationRuntime) -> None:
    """One inference on ``smoke_frame``; ModelPackageError naming what is wrong."""
    where = str(runtime.package.path)
    frame = smoke_frame()
    try:
        out = runtime.infer(frame, np.full(frame.shape[:2], 2000, np.uint16))
    except (RoboLifelongError, RuntimeError, ValueError) as e:
        raise ModelPackageError(f'{where}: smoke inference failed: {e}') from e
    if out.labels.shape != frame.shape[:2]:
        raise ModelPackageError(
            f'{where}: smoke inference gave labels of shape {out.labels.shape!r}, '
            f'expected {frame.shape[:2]!r}'
        )
    num_classes = runtime.package.num_classes
    if out.logits.ndim != 3 or out.logits.shape[0] != num_classes:
        raise ModelPackageError(
            f'{where}: logits of shape {out.logits.shape!r} for {num_classes} classes'
        )
    if not np.all(np.isfinite(out.logits)) or not np.all(np.isfinite(out.embedding)):
        raise ModelPackageError(f'{where}: smoke inference gave NaN or infinite outputs')
    if out.unseen is not None and not np.isfinite(out.unseen.score):
        raise ModelPackageError(f'{where}: smoke inference gave a non-finite unseen score')


def load_model(path: str | os.PathLike, threads: int = 2) -> LoadedModel:
    """Load, verify and smoke-test the package at ``path``; ModelPackageError with the reason."""
    package = load_package(path)
    runtime = SegmentationRuntime(package, threads)
    smoke_test(runtime)
    return LoadedModel(package, runtime, model_version(package))


class ModelSlot:
    """The single reference to the model in use; reading it is one atomic attribute load."""

    def __init__(self) -> None:
        self._model: LoadedModel | None = None

    def current(self) -> LoadedModel | None:
        return self._model

    def swap(self, model: LoadedModel) -> LoadedModel | None:
        old, self._model = self._model, model
        return old


@dataclass(frozen=True)
class SwapEvent:
    path: str
    accepted: bool
    version: str | None  # the new version when accepted
    reason: str  # why it was rejected, or '' when accepted


def _manifest_key(path: Path) -> tuple[str, int, int] | None:
    try:
        st = (path / MANIFEST_FILE).stat()
    except OSError:
        return None
    return (str(path), st.st_mtime_ns, st.st_size)


def _declared_version(path: Path) -> int:
    """The manifest's version without verifying anything (only to order candidates)."""
    try:
        return int(json.loads((path / MANIFEST_FILE).read_text('utf-8'))['version'])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def watched_candidate(directory: Path) -> Path | None:
    """The package ``directory`` holds: itself when it has a manifest, else its sub-directory
    with the highest declared version (ties: the newest manifest)."""
    if (directory / MANIFEST_FILE).is_file():
        return directory
    try:
        subdirs = [p for p in directory.iterdir() if (p / MANIFEST_FILE).is_file()]
    except OSError:
        return None
    if not subdirs:
        return None
    return max(subdirs, key=lambda p: (_declared_version(p), (p / MANIFEST_FILE).stat().st_mtime))


class ModelWatcher:
    """Loads requested packages (and polls ``watch_dir``) in a thread; swaps ``slot`` on success.

    ``on_event`` is called from the watcher thread after every accepted or rejected package.
    """

    def __init__(
        self,
        slot: ModelSlot,
        on_event: Callable[[SwapEvent], None],
        threads: int = 2,
        watch_dir: str | os.PathLike | None = None,
        poll_s: float = 2.0,
        loader: Callable[[str, int], LoadedModel] = load_model,
    ) -> None:
        self.slot = slot
        self.on_event = on_event
        self.threads = threads
        self.watch_dir = Path(watch_dir) if watch_dir else None
        self.poll_s = poll_s
        self._loader = loader
        self._requests: queue.Queue[str | None] = queue.Queue()
        self._tried: set[tuple[str, int, int]] = set()
        self._stop = threading.Event()
        self._thread = SupervisedThread(
            'model-watch',
            self._step,
            self._stop,
            failures=FailureLog('model-watch', log),
            backoff_initial_s=_BACKOFF_INITIAL_S,
            backoff_max_s=_BACKOFF_MAX_S,
        ).start()

    def request(self, path: str) -> None:
        """Queue a package path for verification and swap; returns at once."""
        self._requests.put(path)

    def health(self) -> Health:
        return self._thread.health()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._requests.put(None)  # wakes a thread waiting for a request
        self._thread.join(timeout)

    def _step(self) -> None:
        try:
            path = self._requests.get(timeout=self.poll_s if self.watch_dir else None)
        except queue.Empty:
            self._poll()
            return
        if path is not None:
            self._try(path)

    def _poll(self) -> None:
        candidate = watched_candidate(self.watch_dir) if self.watch_dir else None
        if candidate is None:
            return
        key = _manifest_key(candidate)
        if key is None or key in self._tried:
            return
        self._tried.add(key)
        self._try(str(candidate))

    def _try(self, path: str) -> None:
        current = self.slot.current()
        try:
            model = self._loader(path, self.threads)
        except (RoboLifelongError, OSError) as e:
            log.warning('model package %s rejected: %s', path, e)
            self.on_event(SwapEvent(path, False, None, str(e)))
            return
        except Exception as e:
            # a bug or an error nobody mapped: still a rejection the node must hear of, and a
            # failure of this thread for its supervisor to count and log with the traceback
            self.on_event(SwapEvent(path, False, None, describe(e)))
            raise
        if current is not None and model.package.content_hash == current.package.content_hash:
            log.info('model package %s is the model in use (%s): no swap', path, model.version)
            return
        self.slot.swap(model)
        log.info('model swapped to %s from %s', model.version, path)
        self.on_event(SwapEvent(path, True, model.version, ''))
