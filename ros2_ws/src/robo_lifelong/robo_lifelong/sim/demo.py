"""The main job until the full lifelong loop is wired in: a simulated drive, recorded as a dataset.

Starts the sim camera node (route: known task, unseen task, known task) and the recorder node as
separate ROS 2 processes with the package's Fast DDS profile, lets the robot drive for a while,
then stops both and prints what was recorded. ROS-free itself: it only starts processes.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from ..dataset import INDEX, read_index
from ..dds import PROFILES_ENV, default_profile_path


def ros_env(domain_id: int) -> dict[str, str]:
    """Environment for child nodes: venv ament prefix, our Fast DDS profile, a private domain."""
    env = dict(os.environ)
    env.setdefault('AMENT_PREFIX_PATH', sys.prefix)
    env.setdefault(PROFILES_ENV, str(default_profile_path()))
    env['ROS_DOMAIN_ID'] = str(domain_id)
    env['PYTHONUNBUFFERED'] = '1'
    return env


def _node(module: str, params: dict[str, object]) -> list[str]:
    args = [f'{k}:={v}' for k, v in params.items()]
    return [
        sys.executable,
        '-m',
        f'robo_lifelong.nodes.{module}',
        '--ros-args',
        *sum((['-p', a] for a in args), []),
    ]


def _count(index: Path) -> int:
    return (
        sum(1 for line in index.read_text().splitlines() if line.strip()) if index.exists() else 0
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out', type=Path, default=Path('demo_output'))
    parser.add_argument('--schedule', default='sunny:15,night:10,overcast:10')
    parser.add_argument('--rate', type=float, default=10.0, help='camera frames per second')
    parser.add_argument('--every-n', type=int, default=2, help='record every n-th frame')
    parser.add_argument('--domain-id', type=int, default=int(os.environ.get('ROS_DOMAIN_ID', 42)))
    args = parser.parse_args(argv)
    seconds = sum(float(p.split(':')[1]) for p in args.schedule.split(','))
    truth, dataset = args.out / 'ground_truth', args.out / 'dataset'
    env = ros_env(args.domain_id)
    camera = _node(
        'sim_camera_node',
        {'schedule': args.schedule, 'rate_hz': args.rate, 'ground_truth_dir': truth},
    )
    recorder = _node(
        'recorder_node', {'out_dir': dataset, 'ground_truth_dir': truth, 'every_n': args.every_n}
    )
    print(f'demo: driving route {args.schedule} ({seconds:.0f} s at {args.rate:g} Hz)', flush=True)
    procs = [subprocess.Popen(cmd, env=env) for cmd in (recorder, camera)]
    try:
        start = time.monotonic()
        while time.monotonic() - start < seconds + 2.0:
            time.sleep(5.0)
            if any(p.poll() is not None for p in procs):
                print('demo: a node exited early', file=sys.stderr)
                break
            elapsed, recorded = time.monotonic() - start, _count(dataset / INDEX)
            print(f'demo: {elapsed:4.0f} s, {recorded} samples recorded', flush=True)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        codes = [p.wait(timeout=20) for p in procs]
    samples = read_index(dataset / INDEX) if (dataset / INDEX).exists() else []
    per_task = Counter(s.task for s in samples)
    print(f'demo: {len(samples)} samples in {dataset / INDEX}: {dict(per_task)}')
    if not samples or any(codes):
        print(f'demo: failed (exit codes {codes})', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
