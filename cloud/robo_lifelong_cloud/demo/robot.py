"""The robot side of the demo as ROS 2 processes: sim camera, perception, bridge and the observer.

Every node runs as its own process (as ``launch/demo.launch.py`` would start them) in the
``robo_lifelong`` namespace, with the package's Fast DDS profile and a ROS domain of the demo's
own, so a demo never hears another robot on the network. Parameters go through one params file
(``<robot_dir>/params.yaml``) a user can read; node output goes to ``<robot_dir>/logs/``.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from robo_lifelong.errors import RoboLifelongError
from robo_lifelong.io.dds import profile_environ
from robo_lifelong.transfer.storage import S3Config

log = logging.getLogger(__name__)

NAMESPACE = 'robo_lifelong'
STOP_TIMEOUT_S = 10.0


class RobotError(RoboLifelongError):
    """A robot-side process died or could not start."""


@dataclass(frozen=True)
class RobotConfig:
    robot_dir: Path  # params, spool, installed models, ground truth, logs
    storage_url: str  # the dataset root the bridge uploads to (s3://... or a directory)
    model_url: str  # Sedna's <outputDir>/deploy/index.pkl
    schedule: str  # the sim camera's route (task:seconds) unless a drive gives its own
    domain_id: int
    width: int = 424
    height: int = 240
    rate_hz: float = 15.0
    seed: int = 0
    collect_min_interval_s: float = 0.5  # one sample per half second on an unseen stretch
    s3: S3Config | None = None  # S3 endpoint and keys of the bridge; None for local storage

    @property
    def spool_dir(self) -> Path:
        return self.robot_dir / 'spool'

    @property
    def models_dir(self) -> Path:
        return self.robot_dir / 'models'

    @property
    def ground_truth_dir(self) -> Path:
        return self.robot_dir / 'ground_truth'

    @property
    def log_dir(self) -> Path:
        return self.robot_dir / 'logs'


def node_parameters(cfg: RobotConfig) -> dict[str, dict[str, Any]]:
    """Parameters of each node, by node name."""
    common = {'robot_id': 'demo-dog-1', 'spool_dir': str(cfg.spool_dir)}
    return {
        'sim_camera': {
            'schedule': cfg.schedule,
            'rate_hz': float(cfg.rate_hz),
            'width': cfg.width,
            'height': cfg.height,
            'seed': cfg.seed,
            'ground_truth_dir': str(cfg.ground_truth_dir),
            # both passes of the route stay available for annotation and scoring
            'ground_truth_max_frames': 100_000,
        },
        'perception': {
            **common,
            # the bridge's install directory: its current.json names the model to run
            'model_watch_dir': str(cfg.models_dir),
            'collect_min_interval_s': cfg.collect_min_interval_s,
            'publish_overlay': False,  # nobody watches it in the demo; saves a core's time
        },
        'bridge': {
            **common,
            'storage_url': cfg.storage_url,
            'model_url': cfg.model_url,
            'models_dir': str(cfg.models_dir),
            'model_poll_s': 1.0,
        },
    }


def write_params(cfg: RobotConfig) -> Path:
    path = cfg.robot_dir / 'params.yaml'
    doc = {
        f'/{NAMESPACE}/{name}': {'ros__parameters': p} for name, p in node_parameters(cfg).items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding='utf-8')
    return path


class NodeProcess:
    """A node as a subprocess; output to ``<log_dir>/<name>.log`` (a full pipe would stall it)."""

    def __init__(
        self, name: str, module: str, ros_args: list[str], env: dict[str, str], log_dir: Path
    ) -> None:
        self.name = name
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f'{name}.log'
        args = [sys.executable, '-m', module, '--ros-args', '-r', f'__ns:=/{NAMESPACE}', *ros_args]
        with self.log_path.open('ab') as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        log.debug('started %s (pid %d): %s', name, self.proc.pid, args)

    def check(self) -> None:
        code = self.proc.poll()
        if code is not None:
            tail = self.log_path.read_text(encoding='utf-8', errors='replace')[-2000:]
            raise RobotError(f'{self.name} exited with {code}; its log ends:\n{tail}')

    def stop(self) -> None:
        """SIGINT (the nodes shut down cleanly on it), then SIGKILL after a timeout."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning('%s did not stop in %.0f s: killing it', self.name, STOP_TIMEOUT_S)
            self.proc.kill()
            self.proc.wait()


class Robot:
    """Starts and stops the robot's nodes; ``close()`` stops whatever still runs."""

    def __init__(self, cfg: RobotConfig) -> None:
        self.cfg = cfg
        self.params = write_params(cfg)
        env = profile_environ()
        if cfg.s3 is not None:  # the bridge reads them from its environment
            env.update(cfg.s3.to_environ())
        env.update(ROS_DOMAIN_ID=str(cfg.domain_id), PYTHONUNBUFFERED='1')
        env.setdefault('AMENT_PREFIX_PATH', sys.prefix)
        self.env = env
        self.nodes: dict[str, NodeProcess] = {}

    def start(self, name: str, extra: list[str] | None = None) -> NodeProcess:
        module = f'robo_lifelong.nodes.{name}_node'
        ros_args = ['--params-file', str(self.params), *(extra or [])]
        node = NodeProcess(name, module, ros_args, self.env, self.cfg.log_dir)
        self.nodes[name] = node
        return node

    def start_observer(self, out_dir: Path) -> NodeProcess:
        return self.start('observer', ['-p', f'out_dir:={out_dir}'])

    def stop(self, name: str) -> None:
        node = self.nodes.pop(name, None)
        if node is not None:
            node.stop()

    def check(self) -> None:
        for node in self.nodes.values():
            node.check()

    def close(self) -> None:
        # camera first: the others then see the end of the stream, not a dead peer
        for name in sorted(self.nodes, key=lambda n: n != 'sim_camera'):
            self.stop(name)

    def __enter__(self) -> Robot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def wait_for(condition, timeout_s: float, what: str, robot: Robot, poll_s: float = 0.5) -> None:
    """Poll ``condition()`` until true; RobotError on timeout or when a node died."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        robot.check()
        if time.monotonic() > deadline:
            raise RobotError(f'timed out after {timeout_s:.0f} s waiting for {what}')
        time.sleep(poll_s)
