"""One frame's messages in, what to publish out: the orchestration the perception node and
offline replay share (no ROS).

``FrameRunner`` runs ``Pipeline.process`` and ``tick``, counts the frames, every input issue and
every sample once (``FrameCounts``), and returns what the caller publishes: the frame's result,
the ``unseen/sample`` events of the samples spooled since the last call, the samples refused,
and the alarm status when its level changed; ``tick`` also returns the camera's health status
(``camera_health``, which counts its own fault frames). The node turns these into ROS messages
and replay writes them to a bag; neither looks at the input or counts on its own.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from robo_lifelong.io.image_conversion import ImageLike
from robo_lifelong.perception.alarm_policy import AlarmStatus
from robo_lifelong.perception.camera_health import CameraStatus
from robo_lifelong.perception.frame_input import FrameIssue, Issue
from robo_lifelong.perception.pipeline import FrameResult, Pipeline
from robo_lifelong.perception.sample_writer import SampleOutcome


@dataclass
class FrameCounts:
    processed: int = 0  # frames that gave a result
    rejected: int = 0  # frames refused for an input issue
    without_depth: int = 0  # processed frames that ran without depth (none given or left out)
    issues: Counter[Issue] = field(default_factory=Counter)  # kind -> frames it was found in
    first: dict[Issue, str] = field(default_factory=dict)  # kind -> its first message
    collected: int = 0  # samples submitted for spooling
    spooled: int = 0
    refused: int = 0
    spool_full: str = ''  # reason of the last refusal while the spool stays full

    def issue_summary(self) -> str:
        """``kind=count`` of every issue seen, e.g. ``depth_size=3, order=1``."""
        return ', '.join(f'{kind.value}={n}' for kind, n in sorted(self.issues.items()))


@dataclass(frozen=True)
class SampleNews:
    """Spool outcomes since the last call, split into what is announced and what is logged."""

    events: tuple[dict, ...] = ()  # the unseen/sample events of spooled samples
    refused: tuple[SampleOutcome, ...] = ()


@dataclass(frozen=True)
class FrameOutputs:
    result: FrameResult | None  # None: nothing to publish (refused, or no model loaded)
    rejected: bool  # refused for an input issue
    issues: tuple[FrameIssue, ...]  # each counted once in FrameCounts; the caller logs them
    samples: SampleNews
    alarm: AlarmStatus | None  # to publish: its level changed with this frame


@dataclass(frozen=True)
class TickOutputs:
    alarm: AlarmStatus
    changed: bool
    samples: SampleNews
    camera: CameraStatus


class FrameRunner:
    """Owns the counters of one ``Pipeline``; call it from the pipeline's thread only."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.counts = FrameCounts()

    def frame(
        self, color: ImageLike, depth: ImageLike | None, stamp: float, t: float | None = None
    ) -> FrameOutputs:
        """Run one frame (``Pipeline.process``'s arguments) and count what became of it."""
        outcome = self.pipeline.process(color, depth, stamp, t)
        c = self.counts
        for issue in outcome.issues:
            c.issues[issue.kind] += 1
            c.first.setdefault(issue.kind, issue.message)
        r = outcome.result
        if r is None:
            c.rejected += outcome.rejected
            return FrameOutputs(None, outcome.rejected, outcome.issues, SampleNews(), None)
        c.processed += 1
        c.without_depth += not r.with_depth
        c.collected += r.collected is not None
        alarm = r.alarm if r.alarm_changed else None
        return FrameOutputs(r, False, outcome.issues, self._samples(r.samples), alarm)

    def tick(self, t: float) -> TickOutputs:
        """Advance the alarm and the camera health without a frame (``Pipeline.tick``) and
        count finished samples."""
        status, changed, outcomes = self.pipeline.tick(t)
        return TickOutputs(status, changed, self._samples(outcomes), self.pipeline.camera.status())

    def _samples(self, outcomes: tuple[SampleOutcome, ...] | list[SampleOutcome]) -> SampleNews:
        c = self.counts
        events, refused = [], []
        for o in outcomes:
            if o.spooled:
                c.spooled += 1
                c.spool_full = ''
                events.append(o.event())
                continue
            c.refused += 1
            if o.full:
                c.spool_full = o.error
            refused.append(o)
        return SampleNews(tuple(events), tuple(refused))
