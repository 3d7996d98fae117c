"""The sample writer's thread survives an unexpected error: the sample is refused with the
reason, the failure counted, the next sample spooled; a dead writer thread is an ERROR naming
it."""

from __future__ import annotations

import numpy as np
import pytest

from robo_lifelong.models.unseen import UnseenResult
from robo_lifelong.perception.sample_writer import SampleRequest, SampleWriter
from robo_lifelong.supervision import Level, health_summary
from robo_lifelong.transfer.spool import Spool

VERDICT = UnseenResult(2.0, 'sunny', np.zeros((2, 3), np.float32), True)


def request(i: int) -> SampleRequest:
    rgb = np.full((24, 32, 3), 40 + i, np.uint8)
    return SampleRequest(f'dog1-x-{i}', rgb, None, VERDICT, 1.0 + i, 1.0, 'v1')


class BuggySpool(Spool):
    """A spool whose ``put`` raises ``error`` for the sample ids in ``bad``."""

    def __init__(self, root, bad: set[str], error: BaseException) -> None:
        super().__init__(root, 10**9, 100)
        self.bad = bad
        self.error = error

    def put(self, sample_id, files, meta):
        if sample_id in self.bad:
            raise self.error
        return super().put(sample_id, files, meta)


def test_unexpected_error_refuses_that_sample_and_the_thread_goes_on(tmp_path) -> None:
    spool = BuggySpool(tmp_path / 'spool', {'dog1-x-1'}, RuntimeError('disk driver bug (test)'))
    writer = SampleWriter(spool, 'dog1')
    try:
        for i in range(3):
            writer.submit(request(i))
    finally:
        writer.close()  # finishes the queued samples first
    outcomes = {o.request.sample_id: o for o in writer.drain()}
    assert outcomes['dog1-x-0'].spooled and outcomes['dog1-x-2'].spooled
    refused = outcomes['dog1-x-1']
    assert not refused.spooled and refused.error == 'RuntimeError: disk driver bug (test)'
    health = writer.health()
    assert health.total_failures == 1 and health.failures == 0  # sample 2 went through
    assert health.last_error == 'RuntimeError: disk driver bug (test)'
    assert sorted(e.sample_id for e in spool.list()) == ['dog1-x-0', 'dog1-x-2']


# the thread's death is the point: pytest reports what ended it as a warning
@pytest.mark.filterwarnings('ignore::pytest.PytestUnhandledThreadExceptionWarning')
def test_a_dead_writer_thread_is_an_error_naming_it(tmp_path) -> None:
    spool = BuggySpool(tmp_path / 'spool', {'dog1-x-0'}, SystemExit('not an Exception'))
    writer = SampleWriter(spool, 'dog1')
    writer.submit(request(0))
    writer._worker._thread.join(10)
    assert not writer.health().alive
    assert health_summary([writer.health()]) == (
        Level.ERROR,
        'thread sample-writer is not running',
    )
    writer.close(timeout=0.1)  # returns although nobody takes the queue any more


def test_an_unthreaded_writer_has_no_thread_health(tmp_path) -> None:
    writer = SampleWriter(Spool(tmp_path / 'spool', 10**9, 100), 'dog1', threaded=False)
    writer.submit(request(0))
    assert writer.health() is None and writer.drain()[0].spooled
