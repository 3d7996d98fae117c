"""Pairs RGB frames with aligned depth frames by stamp, waiting a bounded time for the depth.

The camera publishes colour and aligned depth with the same stamp, but they arrive separately and
either may be lost. Live (``FrameSync``), a colour frame is released as its depth arrives, or
without depth once ``max_wait`` has passed; only the newest colour frame is kept, so a slow
consumer never builds a backlog (older waiting frames are counted as dropped). From a recording
(``pair_recorded``), every colour frame is released, in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar('T')
D = TypeVar('D')


@dataclass(frozen=True)
class Pair(Generic[T, D]):
    stamp_ns: int
    rgb: T
    depth: D | None


class FrameSync(Generic[T, D]):
    def __init__(
        self, max_wait_s: float = 0.05, tolerance_ns: int = 1_000_000, keep_depth: int = 8
    ):
        self.max_wait_ns = int(max_wait_s * 1e9)
        self.tolerance_ns = tolerance_ns
        self.keep_depth = keep_depth
        self._rgb: tuple[int, T, int] | None = None  # (stamp, frame, arrival time)
        self._depth: dict[int, D] = {}
        self.dropped = 0  # colour frames replaced by a newer one before they were released

    def _find_depth(self, stamp_ns: int) -> D | None:
        best = min(self._depth, key=lambda s: abs(s - stamp_ns), default=None)
        if best is None or abs(best - stamp_ns) > self.tolerance_ns:
            return None
        return self._depth.pop(best)

    def add_rgb(self, stamp_ns: int, frame: T, now_ns: int) -> Pair[T, D] | None:
        """Offer a colour frame; returns a pair at once when its depth is already here."""
        if self._rgb is not None:
            self.dropped += 1
        depth = self._find_depth(stamp_ns)
        if depth is not None:
            self._rgb = None
            return Pair(stamp_ns, frame, depth)
        self._rgb = (stamp_ns, frame, now_ns)
        return None

    def add_depth(self, stamp_ns: int, frame: D) -> Pair[T, D] | None:
        """Offer a depth frame; returns the waiting colour frame's pair when the stamps match."""
        if self._rgb is not None and abs(self._rgb[0] - stamp_ns) <= self.tolerance_ns:
            stamp, rgb, _ = self._rgb
            self._rgb = None
            return Pair(stamp, rgb, frame)
        self._depth[stamp_ns] = frame
        while len(self._depth) > self.keep_depth:
            del self._depth[min(self._depth)]
        return None

    def expire(self, now_ns: int) -> Pair[T, D] | None:
        """Release the waiting colour frame without depth once it has waited ``max_wait``."""
        if self._rgb is not None and now_ns - self._rgb[2] >= self.max_wait_ns:
            stamp, rgb, _ = self._rgb
            self._rgb = None
            return Pair(stamp, rgb, None)
        return None


@dataclass
class Recorded(Generic[T, D]):
    """A recorded colour frame, its log time and its same-stamp depth frame if one was found."""

    stamp_ns: int
    log_time_ns: int
    rgb: T
    depth: D | None = None


def pair_recorded(
    messages: Iterable[tuple[bool, int, int, Any]],
    with_depth: bool,
    max_wait_ns: int,
    keep_early: int = 16,
) -> Iterator[Recorded]:
    """Every colour frame of a recording, in order, each with its depth frame of the same stamp.

    ``messages`` are ``(is_colour, log_time_ns, stamp_ns, message)`` in log-time order. An
    aligned depth image is computed from the same capture and carries the colour frame's stamp
    (RealSense driver, sim camera), so the match is exact. ``FrameSync`` is not used because it
    keeps only the newest colour frame (a live node must drop stale frames), while a recording
    is processed frame by frame: a colour frame waits, in log time, at most ``max_wait_ns`` for
    its depth and is then released without it. ``keep_early`` depth frames whose colour frame
    has not come yet are kept; the oldest go first.
    """
    waiting: deque[Recorded] = deque()
    early: dict[int, Any] = {}  # depth frames read before their colour frame
    for is_colour, log_time, stamp, msg in messages:
        if is_colour:
            waiting.append(Recorded(stamp, log_time, msg, early.pop(stamp, None)))
        else:
            match = next((w for w in waiting if w.stamp_ns == stamp), None)
            if match is not None and match.depth is None:
                match.depth = msg
            else:
                early[stamp] = msg
                while len(early) > keep_early:
                    del early[min(early)]
        while waiting and (
            not with_depth
            or waiting[0].depth is not None
            or log_time - waiting[0].log_time_ns > max_wait_ns
        ):
            yield waiting.popleft()
    yield from waiting
