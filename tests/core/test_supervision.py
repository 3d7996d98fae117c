"""Supervised threads: an exception is counted, logged (traceback once per type), backed off and
survived; a thread that is not alive is an ERROR naming it; secrets never reach the record."""

from __future__ import annotations

import threading

import pytest

from robo_lifelong import supervision
from robo_lifelong.errors import StorageError
from robo_lifelong.supervision import (
    FailureLog,
    Health,
    Level,
    SupervisedThread,
    backoff_delay,
    health_summary,
    health_values,
)


class Lines:
    """A logger recording what it is given."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.errors: list[str] = []

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def error(self, message: str) -> None:
        self.errors.append(message)


class Steps:
    """A step failing with the given exceptions in turn, then succeeding; ``done`` is set once
    ``until`` calls were made (and stops the thread)."""

    def __init__(self, errors: list[BaseException], until: int, stop: threading.Event) -> None:
        self.errors = list(errors)
        self.until = until
        self.stop = stop
        self.calls = 0
        self.done = threading.Event()

    def __call__(self) -> None:
        self.calls += 1
        if self.calls >= self.until:
            self.stop.set()
            self.done.set()
        if self.errors:
            raise self.errors.pop(0)


def test_thread_survives_unexpected_exceptions_counts_and_reports_them() -> None:
    stop, lines = threading.Event(), Lines()
    step = Steps([RuntimeError('boom 1'), RuntimeError('boom 2'), KeyError('k')], 5, stop)
    thread = SupervisedThread(
        'worker',
        step,
        stop,
        failures=FailureLog('worker', lines, log_interval_s=0.0),
        backoff_initial_s=0.001,
        backoff_max_s=0.001,
    ).start()
    assert step.done.wait(10)
    thread.join(10)
    health = thread.health()
    assert step.calls == 5  # it carried on after each failure
    assert health.total_failures == 3 and health.failures == 0  # the 4th and 5th succeeded
    assert health.last_error == "KeyError: 'k'" and health.last_error_time is not None
    assert health.alive  # ended because it was told to stop
    # a traceback the first time each type is seen, one line otherwise
    assert len(lines.errors) == 2 and 'Traceback' in lines.errors[0]
    assert 'RuntimeError: boom 1' in lines.errors[0] and 'KeyError' in lines.errors[1]
    assert len(lines.warnings) == 1 and 'boom 2' in lines.warnings[0]
    assert '(2 in a row' in lines.warnings[0]


# the thread's death is the point: pytest reports what ended it as a warning
@pytest.mark.filterwarnings('ignore::pytest.PytestUnhandledThreadExceptionWarning')
def test_a_thread_that_died_is_an_error_naming_it() -> None:
    stop = threading.Event()
    step = Steps([RuntimeError('first'), SystemExit()], 99, stop)
    thread = SupervisedThread(
        'bridge-upload', step, stop, backoff_initial_s=0.001, backoff_max_s=0.001
    ).start()
    thread.join(10)  # SystemExit is not an Exception: it ends the thread
    assert not thread.is_alive() and not stop.is_set()
    health = thread.health()
    assert not health.alive and health.total_failures == 1
    level, message = health_summary([health, Health('other', True, 0, 0, None, None)])
    assert level is Level.ERROR
    assert message == 'thread bridge-upload is not running (last error: RuntimeError: first)'
    assert ('bridge-upload.alive', 'False') in health_values(health)


def test_summary_warns_while_failing_and_is_ok_after_a_success() -> None:
    failures = FailureLog('model-watch', Lines())
    failures.failed(StorageError('store down'))
    assert health_summary([failures.health()]) == (
        Level.WARN,
        'model-watch failing (1 in a row): store down',
    )
    failures.succeeded()
    assert health_summary([failures.health()]) == (Level.OK, '')
    assert failures.health().total_failures == 1
    assert failures.health().last_error == 'store down'  # kept: the most recent failure


def test_restart_counts_a_failure_right_after_progress_as_the_first_in_a_row() -> None:
    failures = FailureLog('uploads', Lines())
    for _ in range(3):
        failures.failed(StorageError('x'))
    assert failures.failed(StorageError('x'), restart=True) == 1
    assert failures.health().total_failures == 4


def test_log_lines_are_rate_limited_and_say_how_many_were_left_out(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr(supervision.time, 'monotonic', lambda: now[0])
    lines = Lines()
    failures = FailureLog('uploads', lines, log_interval_s=5.0)
    for _ in range(4):
        failures.failed(StorageError('503'))
    assert len(lines.warnings) == 1
    now[0] += 5.0
    failures.failed(StorageError('503'))
    assert len(lines.warnings) == 2 and '3 more failures since the last line' in lines.warnings[1]
    assert failures.health().total_failures == 5  # every failure counted, logged or not


def test_secrets_are_scrubbed_from_the_record_and_the_traceback() -> None:
    lines = Lines()
    failures = FailureLog('uploads', lines, scrub=lambda text: text.replace('S3CRET', '***'))
    failures.failed(RuntimeError('signature with S3CRET failed'))
    assert 'S3CRET' not in failures.health().last_error
    assert 'S3CRET' not in ''.join(lines.errors + lines.warnings)


@pytest.mark.parametrize('failures', [1, 2, 5, 40])
def test_backoff_is_jittered_floored_and_capped(failures: int) -> None:
    delays = [backoff_delay(failures, 0.01, 0.5) for _ in range(200)]
    assert all(0.01 <= d <= 0.5 for d in delays)
    ceiling = min(0.5, 0.01 * 2 ** (failures - 1))
    assert max(delays) <= ceiling + 1e-12
    if failures >= 5:
        assert len(set(delays)) > 100  # jittered, not lockstep


def test_bad_backoff_is_refused() -> None:
    with pytest.raises(ValueError):
        SupervisedThread('x', lambda: None, threading.Event(), backoff_initial_s=0)
