"""Run ROS nodes and the camera listener as subprocesses, as a launch file would."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from robo_lifelong.io.dds import profile_environ

REPO = Path(__file__).resolve().parents[2]
LISTENER = Path(__file__).with_name('camera_listener.py')


def ros_environ(domain_id: int | None = None) -> dict[str, str]:
    """Environment for a node: the package's Fast DDS profile, the venv as ament prefix and a
    ROS domain of its own (100-200) so parallel test runs do not hear each other."""
    env = profile_environ()
    env.update(
        AMENT_PREFIX_PATH=sys.prefix,
        ROS_DOMAIN_ID=str(domain_id if domain_id is not None else random.randint(100, 200)),
        PYTHONUNBUFFERED='1',
    )
    return env


class NodeProcess:
    """A subprocess whose stdout/stderr go to files (a full pipe would stall it)."""

    def __init__(self, args: list[str], env: dict[str, str], log_dir: Path, name: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f'{name}.stdout'
        self.stderr_path = log_dir / f'{name}.stderr'
        with self.stdout_path.open('wb') as out, self.stderr_path.open('wb') as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=REPO)
        self.started = time.monotonic()

    @classmethod
    def python_module(
        cls, module: str, ros_args: list[str], env: dict[str, str], log_dir: Path
    ) -> NodeProcess:
        args = [sys.executable, '-m', module, '--ros-args', *ros_args]
        return cls(args, env, log_dir, module.rpartition('.')[2])

    @property
    def output(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_for_output(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None:
                raise AssertionError(f'exited with {self.proc.returncode}:\n{self.output}')
            if time.monotonic() > deadline:
                raise AssertionError(f'no {text!r} within {timeout} s:\n{self.output}')
            time.sleep(0.05)

    def interrupt(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGINT, as Ctrl-C or ``ros2 launch`` would send; returns (exit code, seconds taken)."""
        sent = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f'running {timeout} s after SIGINT:\n{self.output}') from None
        return code, time.monotonic() - sent

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_json_script(
    script: Path, env: dict[str, str], seconds: float, timeout: float, *extra: str
) -> dict:
    """Run a listener/probe script of tests/ros/ and parse the JSON it prints."""
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            '--seconds',
            f'{seconds}',
            '--timeout',
            f'{timeout}',
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=2 * timeout + seconds + 30,  # the script's own bounds, with room to spare
    )
    if done.returncode != 0:
        raise AssertionError(f'{script.name} failed ({done.returncode}):\n{done.stderr}')
    return json.loads(done.stdout)


def listen(
    env: dict[str, str], seconds: float, timeout: float = 60.0, min_frames: int = 0
) -> dict:
    """Run tests/ros/camera_listener.py: what it heard in ``seconds`` after the first frame (and
    until it heard ``min_frames`` colour frames)."""
    return run_json_script(LISTENER, env, seconds, timeout, '--min-frames', str(min_frames))


def arrival_rate(frames: list[dict]) -> float:
    """Frames per second between the first and the last arrival (for the benchmark: a rate is
    a speed, never a test verdict)."""
    if len(frames) < 2:
        return 0.0
    return (len(frames) - 1) / (frames[-1]['arrival'] - frames[0]['arrival'])
