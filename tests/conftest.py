"""Fixtures shared by all test packages: a real S3 server (SeaweedFS) and a fake Sedna LC.

Two suites (``--suite``): ``full`` (the default: everything, in the venv with the cloud worker and
torch; it refuses to start without them rather than skip anything) and ``robot`` (the robot side
in a venv without torch, e.g. ROS 2 Jazzy on Python 3.10: ``make test-robot``). The robot suite
leaves out tests/cloud/ (not even imported) and tests marked ``cloud`` (reported as deselected):
a test elsewhere that needs the cloud worker or torch gets ``@pytest.mark.cloud``, a module that
imports them at the top belongs in tests/cloud/.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.fake_lc import FakeLC
from tests.fakes.seaweedfs import SeaweedS3

CLOUD_TESTS = Path(__file__).resolve().parent / 'cloud'
CLOUD_MODULES = ('torch', 'robo_lifelong_cloud')


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        '--suite',
        choices=('full', 'robot'),
        default='full',
        help='full: every test (needs torch and the cloud worker); robot: the robot side only, '
        'without tests/cloud/ and tests marked cloud (default: full)',
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        'markers', 'cloud: needs the cloud worker or torch; left out of --suite=robot'
    )
    missing = [m for m in CLOUD_MODULES if importlib.util.find_spec(m) is None]
    if config.getoption('suite') == 'full' and missing:
        raise pytest.UsageError(
            f'the full suite needs {", ".join(missing)} (scripts/setup.sh with PROFILE=full); '
            'in a robot venv run the robot-side suite: pytest --suite=robot'
        )


def pytest_report_header(config: pytest.Config) -> str:
    if config.getoption('suite') == 'full':
        return 'suite: full'
    cache = os.environ.get('ROBO_LIFELONG_TEST_MODEL_CACHE', 'not set')
    return (
        'suite: robot (tests/cloud/ and tests marked cloud left out); '
        f'ROBO_LIFELONG_TEST_MODEL_CACHE: {cache}'
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if config.getoption('suite') == 'robot' and collection_path == CLOUD_TESTS:
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(CLOUD_TESTS):
            item.add_marker(pytest.mark.cloud)
    if config.getoption('suite') == 'robot':
        cloud = [item for item in items if item.get_closest_marker('cloud')]
        if cloud:
            config.hook.pytest_deselected(items=cloud)
            items[:] = [item for item in items if not item.get_closest_marker('cloud')]


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
