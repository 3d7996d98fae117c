"""Long-running threads that never die of an exception, and the health they report (no ROS).

Every worker thread of the nodes (the bridge's upload and model threads, perception's frame
worker, the sample and event writers (``QueueWorker``), the model watcher) runs its loop body as
a ``SupervisedThread``: any
Exception a step raises is counted in the thread's ``FailureLog``, logged, and the step runs again
after a jittered, capped backoff. Only what is not an Exception (SystemExit, KeyboardInterrupt)
ends a thread early, and ``health_summary`` turns a thread that is not alive into an ERROR naming
it, so a node can never look healthy with a dead worker.

Logging: a project error (RoboLifelongError) or an OSError says what failed in its message and is
logged as one line. Anything else is a bug or a library error nobody mapped; its traceback is
logged the first time its type is seen by a log. Lines are rate-limited per log (a store failing a
third of its requests fails many times a second); the next line says how many were not logged.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Generic, Protocol, TypeVar

from robo_lifelong.errors import RoboLifelongError

log = logging.getLogger(__name__)

Item = TypeVar('Item')
Outcome = TypeVar('Outcome')


class Level(IntEnum):
    """Equal to diagnostic_msgs/DiagnosticStatus levels, so nodes can pass them through."""

    OK = 0
    WARN = 1
    ERROR = 2


class Logger(Protocol):
    """What a FailureLog writes to: a logging.Logger or an rclpy node logger."""

    def warning(self, message: str) -> object: ...

    def error(self, message: str) -> object: ...


@dataclass(frozen=True)
class Health:
    name: str
    alive: bool
    failures: int  # consecutive failures; 0 after a success
    total_failures: int  # since start
    last_error: str | None  # message of the most recent failure, kept after a success
    last_error_time: float | None  # seconds since the epoch


def backoff_delay(failures: int, initial_s: float, max_s: float) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: full jitter below an
    exponential ceiling capped at ``max_s``, never less than ``initial_s``. The jitter keeps
    robots that lost the same network from coming back in lockstep; the floor keeps a dead
    endpoint from being hammered."""
    ceiling = min(max_s, initial_s * 2 ** min(max(failures, 1) - 1, 30))
    return max(initial_s, random.uniform(0, ceiling))


def describe(error: BaseException) -> str:
    """A one-line reason; names the type when the message alone would not say what it is."""
    text = ' '.join(str(error).split())
    if isinstance(error, RoboLifelongError) and text:
        return text
    return f'{type(error).__name__}: {text}' if text else type(error).__name__


class FailureLog:
    """Thread-safe failure bookkeeping of one activity: consecutive and total failures, the last
    error and when it happened. ``scrub`` is applied to everything stored or logged (secrets);
    at most one line per ``log_interval_s`` is logged, besides first tracebacks."""

    def __init__(
        self,
        name: str,
        logger: Logger | None = None,
        scrub: Callable[[str], str] | None = None,
        log_interval_s: float = 5.0,
    ) -> None:
        self.name = name
        self._logger = logger or log
        self._scrub = scrub or (lambda text: text)
        self._log_interval_s = log_interval_s
        self._lock = threading.Lock()
        self._failures = 0
        self._total = 0
        self._last_error: str | None = None
        self._last_error_time: float | None = None
        self._traced: set[type] = set()
        self._logged_at = -float('inf')  # time.monotonic() of the last line
        self._unlogged = 0

    def failed(
        self, error: BaseException, retry_in_s: float | None = None, restart: bool = False
    ) -> int:
        """Count and log one failure; returns the number of failures in a row, which
        ``restart`` makes 1 (something succeeded just before, in the same try)."""
        text = self._scrub(describe(error))
        expected = isinstance(error, (RoboLifelongError, OSError))
        now = time.monotonic()
        with self._lock:
            self._failures = 1 if restart else self._failures + 1
            self._total += 1
            self._last_error = text
            self._last_error_time = time.time()
            failures = self._failures
            trace = not expected and type(error) not in self._traced
            if trace:
                self._traced.add(type(error))
            if not trace and now - self._logged_at < self._log_interval_s:
                self._unlogged += 1
                return failures
            self._logged_at, unlogged, self._unlogged = now, self._unlogged, 0
        retry = f', retrying in {retry_in_s:.2f} s' if retry_in_s is not None else ''
        more = f'; {unlogged} more failures since the last line' if unlogged else ''
        line = f'{self.name} failed ({failures} in a row{retry}{more}): {text}'
        if trace:
            stack = ''.join(traceback.format_exception(type(error), error, error.__traceback__))
            self._logger.error(f'{line}\n{self._scrub(stack)}')
        else:
            self._logger.warning(line)
        return failures

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0

    @property
    def failures(self) -> int:
        with self._lock:
            return self._failures

    def health(self, alive: bool = True) -> Health:
        with self._lock:
            return Health(
                self.name,
                alive,
                self._failures,
                self._total,
                self._last_error,
                self._last_error_time,
            )


class SupervisedThread:
    """A daemon thread calling ``step()`` until ``stop`` is set.

    A step that returns is a success (the consecutive count resets), unless it returns False:
    it had nothing to do, which proves nothing either way. The next step follows at once: steps
    wait for their own work (a queue, an event, a poll period). A step that raises an Exception is
    a failure: counted and logged in ``failures``, then ``stop`` is waited on for
    ``backoff_delay`` before the next step. ``stop`` may be set by the owner or by a step.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], object],
        stop: threading.Event,
        *,
        failures: FailureLog | None = None,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
    ) -> None:
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError(
                f'need 0 < backoff_initial_s <= backoff_max_s, got '
                f'{backoff_initial_s!r}, {backoff_max_s!r}'
            )
        self.name = name
        self.failures = failures or FailureLog(name)
        self._step = step
        self._stop = stop
        self._initial_s = backoff_initial_s
        self._max_s = backoff_max_s
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> SupervisedThread:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def health(self) -> Health:
        # a thread that ended because it was told to stop is not a failure
        return self.failures.health(alive=self._thread.is_alive() or self._stop.is_set())

    def _run(self) -> None:
        supervise(self._step, self._stop, self.failures, self._initial_s, self._max_s)


class QueueWorker(Generic[Item, Outcome]):
    """``write(item)`` for each submitted item in a supervised thread, off the caller's path;
    each item's outcome comes back through ``drain`` (the caller's thread), none is dropped in
    silence. ``threaded=False`` writes in ``submit`` (offline replay, tests).

    ``refuse(item, reason, busy)`` makes the outcome of an item that was not written: the queue
    was full (``busy``), or ``write`` raised something unexpected; that failure is also counted in
    ``health()`` and logged by the supervisor, and the thread goes on with the next item.
    """

    def __init__(
        self,
        name: str,
        noun: str,  # what an item is, plural ('samples'): the busy reason names it
        write: Callable[[Item], Outcome],
        refuse: Callable[[Item, str, bool], Outcome],
        logger: logging.Logger,
        *,
        threaded: bool = True,
        max_queue: int = 4,
    ) -> None:
        self.name = name
        self._noun = noun
        self._write = write
        self._refuse = refuse
        self._done: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._todo: queue.Queue[Item | None] | None = None
        self._thread: SupervisedThread | None = None
        self._stop = threading.Event()
        if threaded:
            self._todo = queue.Queue(maxsize=max_queue)
            self._thread = SupervisedThread(
                name,
                self._step,
                self._stop,
                failures=FailureLog(name, logger),
                backoff_initial_s=0.05,  # the next item may well be fine: retry soon
                backoff_max_s=1.0,
            ).start()

    def health(self) -> Health | None:
        """The thread's health; None when not threaded."""
        return None if self._thread is None else self._thread.health()

    def submit(self, item: Item) -> None:
        if self._todo is None:
            self._done.put(self._write(item))
            return
        try:
            self._todo.put_nowait(item)
        except queue.Full:
            busy = f'{self.name.replace("-", " ")} busy ({self._todo.maxsize} {self._noun} queued)'
            self._done.put(self._refuse(item, busy, True))

    def drain(self) -> list[Outcome]:
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def close(self, timeout: float) -> None:
        """Finish the queued items and stop the thread."""
        if self._todo is not None and self._thread is not None:
            try:
                self._todo.put(None, timeout=timeout)
            except queue.Full:  # the thread is not taking items: stop it where it is
                self._stop.set()
            self._thread.join(timeout)

    def _step(self) -> None:
        item = self._todo.get()
        if item is None:
            self._stop.set()
            return
        try:
            outcome = self._write(item)
        except Exception as e:
            # a bug or an error nobody mapped: the item is refused with the reason, and the
            # supervisor counts the failure and logs its traceback
            self._done.put(self._refuse(item, describe(e), False))
            raise
        self._done.put(outcome)


def supervise(
    step: Callable[[], object],
    stop: threading.Event,
    failures: FailureLog,
    backoff_initial_s: float,
    backoff_max_s: float,
) -> None:
    """The loop of a SupervisedThread, in the calling thread: ``step()`` until ``stop`` is set;
    an Exception is counted in ``failures`` and followed by a ``backoff_delay`` wait, a return
    other than False resets the consecutive count."""
    while not stop.is_set():
        try:
            worked = step()
        except Exception as e:  # the thread must outlive any one step
            delay = backoff_delay(failures.failures + 1, backoff_initial_s, backoff_max_s)
            failures.failed(e, retry_in_s=delay)
            stop.wait(delay)
        else:
            if worked is not False:
                failures.succeeded()


def health_summary(healths: Iterable[Health]) -> tuple[Level, str]:
    """The worst of ``healths``: ERROR naming each thread that is not alive, else WARN naming
    each one whose last step failed, else OK (message '')."""
    healths = list(healths)
    dead = [h for h in healths if not h.alive]
    if dead:
        return Level.ERROR, '; '.join(
            f'thread {h.name} is not running'
            + (f' (last error: {h.last_error})' if h.last_error else '')
            for h in dead
        )
    failing = [h for h in healths if h.failures]
    if failing:
        return Level.WARN, '; '.join(
            f'{h.name} failing ({h.failures} in a row): {h.last_error}' for h in failing
        )
    return Level.OK, ''


def health_values(health: Health) -> list[tuple[str, str]]:
    """Diagnostic key/values of one thread, prefixed with its name."""
    when = health.last_error_time
    return [
        (f'{health.name}.alive', str(health.alive)),
        (f'{health.name}.failures', str(health.failures)),
        (f'{health.name}.total_failures', str(health.total_failures)),
        (f'{health.name}.last_error', health.last_error or ''),
        (
            f'{health.name}.last_error_time',
            '' if when is None else time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(when)),
        ),
    ]
