"""Hot model swap: load a new model package off the frame path, then swap one reference.

A package is accepted only when it loads (files and schema; the hashes too unless the robot's
bridge verified it already), onnxruntime builds a session for it, and a smoke inference on a
fixed input gives labels of the right shape with class ids the package knows, finite logits and
(if calibrated) a finite unseen score. All of that happens in the watcher's own thread; the frame
path only ever reads ``ModelSlot.current()`` once per frame, so a frame is processed entirely by
the old model or entirely by the new one, never by a half-loaded one. A rejected package leaves
the slot untouched.

Which model is current is one rule, ``ModelWatcher._step``: the record the bridge writes,
``<models_dir>/current.json`` (``models.installed``), whenever there is one, at start and after
every change of it, older versions included (a rollback); the package given at start
(``initial``, verified in full: it did not come through the bridge) only while there is none.
The record's package is trusted (the bridge hashed it once when installing it) and smoke-tested.
A record whose package was rejected is not retried until the record changes. ``request(path)``
loads one explicitly given package, verified in full. The watcher thread is supervised
(``supervision``): an unexpected exception (a loader or callback bug, a file vanishing mid-poll)
is counted in ``health()`` and the thread carries on.

While there is no model, ``ModelSlot.missing`` says why (the watcher's latest finding: nothing
given, no record yet, or the rejection's reason) and how to get one. ``ModelWatcher.looked``
tells whether the first look at the record and the start package is over: until then there is
no model because it is loading, which is no reason to warn.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robo_lifelong.errors import ModelPackageError, RoboLifelongError
from robo_lifelong.models.installed import CURRENT_FILE, parse_installed
from robo_lifelong.models.package import ModelPackage, load_package, read_package
from robo_lifelong.models.runtime import SegmentationRuntime
from robo_lifelong.supervision import FailureLog, Health, SupervisedThread, describe

log = logging.getLogger(__name__)

# how to act without a model: the package ships a base model (README: models)
GET_A_MODEL = (
    'robot.launch.py starts on the shipped base model (share/robo_lifelong/models/base); '
    'model_path:=<package directory> names another'
)
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


def load_model(path: str | os.PathLike, threads: int = 2, verify: bool = True) -> LoadedModel:
    """Load and smoke-test the package at ``path``, with its hashes checked unless ``verify`` is
    False (a package the bridge verified when installing it); ModelPackageError with the
    reason."""
    package = load_package(path) if verify else read_package(path)
    runtime = SegmentationRuntime(package, threads)
    smoke_test(runtime)
    return LoadedModel(package, runtime, model_version(package))


class ModelSlot:
    """The single reference to the model in use; reading it is one atomic attribute load.
    ``missing`` says why there is none (read while ``current()`` is None)."""

    def __init__(self) -> None:
        self._model: LoadedModel | None = None
        self.missing = f'no package given: {GET_A_MODEL}'

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


class ModelWatcher:
    """Loads the model ``models_dir``'s record names (or, while there is none, ``initial``) and
    requested packages in a thread; swaps ``slot`` on success (module doc: the rule).

    ``on_event`` is called from the watcher thread after every accepted or rejected package.
    ``loader(path, threads, verify)`` is ``load_model`` unless a test replaces it.
    """

    def __init__(
        self,
        slot: ModelSlot,
        on_event: Callable[[SwapEvent], None],
        threads: int = 2,
        models_dir: str | os.PathLike | None = None,
        poll_s: float = 2.0,
        loader: Callable[[str, int, bool], LoadedModel] = load_model,
        initial: str | os.PathLike | None = None,
    ) -> None:
        self.slot = slot
        self.on_event = on_event
        self.threads = threads
        self.models_dir = Path(models_dir) if models_dir else None
        self.poll_s = poll_s
        self._loader = loader
        self._initial = str(initial) if initial else None
        self._requests: queue.Queue[str | None] = queue.Queue()
        self._record_seen: bytes | None = None  # the record last acted on
        self._started = False
        self._looked = threading.Event()
        if self.models_dir is not None or self._initial is not None:
            sources = [str(self.models_dir / CURRENT_FILE)] if self.models_dir else []
            sources += [self._initial] if self._initial else []
            slot.missing = f'looking at {" and ".join(sources)}'
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

    @property
    def looked(self) -> bool:
        """True once the first look (the record, else the start package) is over: loaded,
        rejected or found nothing."""
        return self._looked.is_set()

    def health(self) -> Health:
        return self._thread.health()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._requests.put(None)  # wakes a thread waiting for a request
        self._thread.join(timeout)

    def _step(self) -> None:
        if not self._started:
            # the rule at start: the record if there is one (and its model loads), else initial
            self._started = True
            try:
                if not self._poll() and self._initial is not None:
                    self._try(self._initial, verify=True)
                elif self.slot.current() is None and self._record_seen is None:
                    self.slot.missing = self._nothing_found()
            finally:
                self._looked.set()
            return
        try:
            path = self._requests.get(timeout=self.poll_s if self.models_dir else None)
        except queue.Empty:
            self._poll()
            return
        if path is not None:
            self._try(path, verify=True)

    def _nothing_found(self) -> str:
        """Why there is no model when the first look found no package to load."""
        if self.models_dir is None:
            return f'no package given: {GET_A_MODEL}'
        where = self.models_dir / CURRENT_FILE
        return f'no {where} yet (the bridge writes it once it installed a model); or {GET_A_MODEL}'

    def _rejected(self, event: SwapEvent) -> None:
        if self.slot.current() is None:
            self.slot.missing = f'rejected {event.reason}; {GET_A_MODEL}'
        self.on_event(event)

    def _poll(self) -> bool:
        """Act on the record if it changed since the last look; True if the model it names is
        the one in use now."""
        if self.models_dir is None:
            return False
        where = self.models_dir / CURRENT_FILE
        try:
            data = where.read_bytes()
        except FileNotFoundError:
            return False
        if data == self._record_seen:
            return False
        self._record_seen = data
        try:
            record = parse_installed(data, str(where))
        except RoboLifelongError as e:
            log.warning('%s rejected: %s', where, e)
            self._rejected(SwapEvent(str(where), False, None, str(e)))
            return False
        current = self.slot.current()
        if current is not None and current.package.content_hash == record.content_hash:
            return True
        return self._try(str(record.package_dir(self.models_dir)), False, record.content_hash)

    def _try(self, path: str, verify: bool, content_hash: str | None = None) -> bool:
        """Load ``path`` (expecting ``content_hash`` if given) and swap it in; True if it is
        the model in use afterwards."""
        current = self.slot.current()
        try:
            model = self._loader(path, self.threads, verify)
            if content_hash is not None and model.package.content_hash != content_hash:
                raise ModelPackageError(
                    f'{path}: holds content_hash {model.package.content_hash}, '
                    f'{CURRENT_FILE} names {content_hash}'
                )
        except (RoboLifelongError, OSError) as e:
            log.warning('model package %s rejected: %s', path, e)
            self._rejected(SwapEvent(path, False, None, str(e)))
            return False
        except Exception as e:
            # a bug or an error nobody mapped: still a rejection the node must hear of, and a
            # failure of this thread for its supervisor to count and log with the traceback
            self._rejected(SwapEvent(path, False, None, describe(e)))
            raise
        if current is not None and model.package.content_hash == current.package.content_hash:
            log.info('model package %s is the model in use (%s): no swap', path, model.version)
            return True
        self.slot.swap(model)
        self.slot.missing = ''
        log.info('model swapped to %s from %s', model.version, path)
        self.on_event(SwapEvent(path, True, model.version, ''))
        return True
