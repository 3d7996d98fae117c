"""Fixtures shared by all test packages: a real S3 server (SeaweedFS) and a fake Sedna LC."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.fakes.fake_lc import FakeLC
from tests.fakes.seaweedfs import SeaweedS3


@pytest.fixture(scope='session')
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS server per session (it takes seconds to start).

    Tests that ``kill()`` or ``stop()`` it must ``start()`` it again before they return; the
    endpoint, keys and data survive that. ``s3_server.env`` holds Sedna's S3 variables.
    """
    server = SeaweedS3(tmp_path_factory.mktemp('seaweedfs'))
    server.start()
    try:
        yield server
    finally:
        server.stop(timeout=2)  # its data is thrown away: no need to wait long for SIGTERM


@pytest.fixture
def s3_bucket(s3_server: SeaweedS3) -> str:
    """A fresh, empty bucket on the session server; returns its ``s3://`` URL."""
    if not s3_server.running:
        s3_server.start()  # an earlier test killed it and failed before restarting it
    return s3_server.make_bucket('test-' + secrets.token_hex(6))


@pytest.fixture
def fake_lc() -> Iterator[FakeLC]:
    """A fake LocalController on a free loopback port; see tests/fakes/fake_lc.py."""
    with FakeLC() as lc:
        yield lc
