"""Packs and spools the frames the collector chose, off the frame path (no ROS).

Packing a frame into PNGs and writing it durably takes tens of milliseconds, more than a frame's
budget, so ``SampleWriter`` does it in its own thread; each sample's ``SampleOutcome`` comes back
through ``drain``, which the pipeline calls on its own thread to attach spooled ids to the alarm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from robo_lifelong.errors import ImageConversionError, SpoolError, SpoolFullError
from robo_lifelong.models.unseen import UnseenResult
from robo_lifelong.perception.collection import make_sample
from robo_lifelong.supervision import Health, QueueWorker
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
        self._worker = QueueWorker(
            'sample-writer',
            'samples',
            self._write,
            lambda request, reason, busy: SampleOutcome(request, None, reason, full=busy),
            log,
            threaded=threaded,
            max_queue=max_queue,
        )

    def health(self) -> Health | None:
        """The writer thread's health; None when not threaded."""
        return self._worker.health()

    def submit(self, request: SampleRequest) -> None:
        self._worker.submit(request)

    def drain(self) -> list[SampleOutcome]:
        return self._worker.drain()

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued samples and stop the thread."""
        self._worker.close(timeout)

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
