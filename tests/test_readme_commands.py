"""The README's shell blocks run as written, with small sizes.

Every command of a ```bash block that uses this project's tools (``robo-lifelong*``, ``make``,
``ros2``) is a test case here: run in a temporary directory with its sizes made small (``SMALL``:
fewer frames, a shorter schedule, the test model package for ``/path/to/package``) after the
block's ``export`` lines and the block's earlier commands, or skipped for the reason ``SKIPPED``
gives (a ROS 2 install, minutes of work). A new command of these tools runs here unless
``SKIPPED`` names its program, so none goes unchecked by accident. About 10 s in all.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT_COMMAND = re.compile(r'^(?:\S*/)?(robo-lifelong[\w-]*|make|ros2)$')
TIMEOUT_S = 120  # a bound only: each runs in seconds


@dataclass(frozen=True)
class Command:
    block: int  # index of the README block
    text: str  # as written (continuation lines joined)

    @property
    def program(self) -> str:
        """The executable's name, after any ``NAME=value`` assignments (``$(...)`` in them)."""
        text = re.sub(r'\$\([^)]*\)', 'X', self.text)
        words = re.match(r'(?:[A-Za-z_]\w*=\S*\s+)*(\S+)', text)
        return words.group(1).rsplit('/', 1)[-1] if words else ''


def readme_commands(text: str) -> list[list[str]]:
    """The commands of each ```bash block, comments dropped, continuation lines joined."""
    blocks = re.findall(r'^```bash\n(.*?)^```', text, flags=re.M | re.S)
    out = []
    for block in blocks:
        joined = re.sub(r'\\\n\s*', ' ', block)
        commands = []
        for line in joined.splitlines():
            line = re.sub(r'(^|\s)#.*$', '', line).strip()
            if line:
                commands.append(line)
        out.append(commands)
    return out


BLOCKS = readme_commands((REPO / 'README.md').read_text(encoding='utf-8'))
CASES = [
    Command(i, c)
    for i, block in enumerate(BLOCKS)
    for c in block
    if PROJECT_COMMAND.match(Command(i, c).program)
]

# program (and subcommand) -> why it does not run here
SKIPPED = {
    'make': 'make targets set up a venv or run the whole suite or demo (minutes); CI runs them',
    'ros2': 'needs a ROS 2 install with this package built by colcon (ros2 run / launch / topic)',
}
CLOUD_PROGRAMS = {'robo-lifelong-manifests', 'robo-lifelong-job', 'robo-lifelong-demo'}


def _schedule_scaled(match: re.Match) -> str:
    parts = [p.partition(':') for p in match.group(1).split(',')]
    return '--schedule ' + ','.join(f'{task}:{float(s) / 20:g}' for task, _, s in parts)


def small(command: str, tmp: Path, model: Path | None) -> str:
    """``command`` at small sizes, writing under ``tmp``, with this venv's executables."""
    # /tmp/ first: this venv (or the test's tmp) may itself live under /tmp
    text = command.replace('/tmp/', f'{tmp}/')
    text = text.replace('.venv/bin/', f'{Path(sys.prefix) / "bin"}/')
    text = re.sub(r'--frames \d+', '--frames 1', text)
    text = re.sub(r'--schedule (\S+)', _schedule_scaled, text)
    if ' bag ' in f' {text} ':
        text += ' --width 212 --height 120'  # the test model's input size
    if model is not None:
        text = text.replace('/path/to/package', str(model))
    return re.sub(r'--out deploy/', f'--out {tmp}/deploy/', text)


def _exports(block: int) -> list[str]:
    return [c for c in BLOCKS[block] if c.startswith('export ')]


def _runnable(case: Command) -> bool:
    return case.program not in SKIPPED


@pytest.fixture(scope='module')
def model(tmp_path_factory) -> Path:
    from tests.ros.model_fixture import cached_package

    return cached_package(tmp_path_factory.getbasetemp() / 'readme-model').path


@pytest.fixture(scope='module')
def results(tmp_path_factory, request) -> dict[Command, subprocess.CompletedProcess]:
    """Each runnable command's run, block by block in README order, in one directory per block."""
    needs_model = any('/path/to/package' in c.text for c in CASES)
    package = request.getfixturevalue('model') if needs_model else None
    env = dict(os.environ, PATH=f'{Path(sys.prefix) / "bin"}{os.pathsep}{os.environ["PATH"]}')
    out: dict[Command, subprocess.CompletedProcess] = {}
    dirs: dict[int, Path] = {}
    for case in CASES:
        if not _runnable(case) or case.program in CLOUD_PROGRAMS and not _cloud():
            continue
        tmp = dirs.setdefault(case.block, tmp_path_factory.mktemp(f'block{case.block}'))
        script = '\n'.join([*_exports(case.block), small(case.text, tmp, package)])
        out[case] = subprocess.run(
            ['bash', '-c', script],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    return out


def _cloud() -> bool:
    return importlib.util.find_spec('robo_lifelong_cloud') is not None


def test_the_readme_has_the_commands_this_test_knows() -> None:
    programs = {c.program for c in CASES}
    assert {'robo-lifelong-sim', 'robo-lifelong', 'make', 'ros2'} <= programs, programs


PARAMS = [
    pytest.param(c, id=c.text[:60], marks=[pytest.mark.cloud] * (c.program in CLOUD_PROGRAMS))
    for c in CASES
]


@pytest.mark.parametrize('case', PARAMS)
def test_readme_command_runs(case: Command, results) -> None:
    if case.program in SKIPPED:
        pytest.skip(SKIPPED[case.program])
    done = results[case]
    assert done.returncode == 0, f'{case.text}\n{done.stdout}\n{done.stderr}'
