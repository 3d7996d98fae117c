"""Packs and spools the frames the collector chose, off the frame path (no ROS).

Packing a frame into PNGs and writing it durably takes tens of milliseconds, more than a frame's
budget, so ``SampleWriter`` does it in its own thread; each sample's ``SampleOutcome`` comes back
through ``drain``, which the pipeline calls on its own thread to attach spooled ids to the alarm.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

import numpy as np

from robo_lifelong.errors import ImageConversionError, SpoolError, SpoolFullError
from robo_lifelong.models.unseen import UnseenResult
from robo_lifelong.perception.collection import make_sample
from robo_lifelong.supervision import FailureLog, Health, SupervisedThread, describe
from robo_lifelong.transfer.spool import Spool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleRequest:
    sample_id: str
    rgb: np.ndarray
    depth_mm: np.ndarray | None
    unseen: UnseenResult
    stamp: float
    threshold: float
    model_version: str


@dataclass(frozen=True)
class SampleOutcome:
    request: SampleRequest
    path: str | None  # the spooled directory; None when refused
    error: str  # '' when spooled
    full: bool = False  # refused because the spool (or the writer queue) is full

    @property
    def spooled(self) -> bool:
        return self.path is not None

    def event(self) -> dict:
        """The ``unseen/sample`` JSON event of a spooled sample."""
        r = self.request
        return {
            'id': r.sample_id,
            'stamp': r.stamp,
            'score': round(float(r.unseen.score), 4),
            'threshold': r.threshold,
            'task_guess': r.unseen.task_guess,
            'model_version': r.model_version,
            'path': self.path,
        }


class SampleWriter:
    """Packs and spools collected frames in a worker thread (``threaded=False``: in ``submit``,
    for offline replay). A full queue refuses the sample with an outcome, never silently.

    The thread is supervised: a sample whose writing raises anything unexpected is refused with
    the reason, the failure is counted in ``health()`` and logged, and the thread goes on with the
    next sample.
    """

    def __init__(
        self,
        spool: Spool,
        robot_id: str,
        png_compression: int = 1,
        threaded: bool = True,
        max_queue: int = 4,
    ) -> None:
        self.spool = spool
        self.robot_id = robot_id
        self.png_compression = png_compression
        self._done: queue.SimpleQueue[SampleOutcome] = queue.SimpleQueue()
        self._todo: queue.Queue[SampleRequest | None] | None = None
        self._thread: SupervisedThread | None = None
        self._stop = threading.Event()
        if threaded:
            self._todo = queue.Queue(maxsize=max_queue)
            self._thread = SupervisedThread(
                'sample-writer',
                self._step,
                self._stop,
                failures=FailureLog('sample-writer', log),
                backoff_initial_s=0.05,  # the next sample may well be fine: retry soon
                backoff_max_s=1.0,
            ).start()

    def health(self) -> Health | None:
        """The writer thread's health; None when not threaded."""
        return None if self._thread is None else self._thread.health()

    def submit(self, request: SampleRequest) -> None:
        if self._todo is None:
            self._done.put(self._write(request))
            return
        try:
            self._todo.put_nowait(request)
        except queue.Full:
            reason = f'sample writer busy ({self._todo.maxsize} samples queued)'
            self._done.put(SampleOutcome(request, None, reason, full=True))

    def drain(self) -> list[SampleOutcome]:
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued samples and stop the thread."""
        if self._todo is not None and self._thread is not None:
            try:
                self._todo.put(None, timeout=timeout)
            except queue.Full:  # the thread is not taking samples: stop it where it is
                self._stop.set()
            self._thread.join(timeout)

    def _step(self) -> None:
        request = self._todo.get()
        if request is None:
            self._stop.set()
            return
        try:
            outcome = self._write(request)
        except Exception as e:
            # a bug or an error nobody mapped: the sample is refused with the reason, and the
            # supervisor counts the failure and logs its traceback
            self._done.put(SampleOutcome(request, None, describe(e)))
            raise
        self._done.put(outcome)

    def _write(self, r: SampleRequest) -> SampleOutcome:
        try:
            files, meta = make_sample(
                r.rgb,
                r.depth_mm,
                r.unseen,
                stamp=r.stamp,
                threshold=r.threshold,
                model_version=r.model_version,
                robot_id=self.robot_id,
                png_compression=self.png_compression,
            )
            path = self.spool.put(r.sample_id, files, meta)
        except SpoolFullError as e:
            return SampleOutcome(r, None, str(e), full=True)
        except (SpoolError, ImageConversionError) as e:
            return SampleOutcome(r, None, str(e))
        return SampleOutcome(r, str(path), '')
