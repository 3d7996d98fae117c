"""robo-lifelong-sim: write simulator datasets and the docs pictures from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from robo_lifelong.errors import RoboLifelongError
from robo_lifelong.io.dataset import DatasetWriter
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.route import parse_schedule, schedule_seconds
from robo_lifelong.sim.tasks import TASKS
from robo_lifelong.sim.world import CampusWorld


def write_dataset(out: Path, tasks: list[str], frames: int, seed: int, camera: CameraModel) -> int:
    world = CampusWorld(seed, camera)
    with DatasetWriter(out) as writer:
        # appending renders new frames, not repeats
        starts = {task: writer.next_index(task) for task in tasks}
        # frame by frame across the tasks: the index is in stratified order (see dataset.py)
        jobs = [(task, starts[task] + i) for i in range(frames) for task in tasks]
        for task, i in tqdm(jobs, desc='render', unit='frame', disable=None):
            f = world.random_frame(task, i)
            writer.write(f.rgb, f.depth_mm, f.labels, task)
    return frames * len(tasks)


def _task_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(',') if t.strip()]
    unknown = [n for n in names if n not in TASKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f'unknown tasks {unknown}; tasks: {", ".join(TASKS)}')
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='robo-lifelong-sim', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    ds = sub.add_parser('dataset', help='render frames of tasks into a Sedna txt dataset')
    ds.add_argument('--out', type=Path, required=True, help='dataset directory (appended to)')
    ds.add_argument('--tasks', type=_task_list, default=list(TASKS), help='comma-separated')
    ds.add_argument('--frames', type=int, default=100, help='frames per task')
    ds.add_argument('--seed', type=int, default=0)
    ds.add_argument('--width', type=int, default=424)
    ds.add_argument('--height', type=int, default=240)
    bag = sub.add_parser('bag', help='record the route as a rosbag2 bag, as the sim camera')
    bag.add_argument('--out', type=Path, required=True, help='new bag directory')
    bag.add_argument('--schedule', default='sunny:20,night:10,sunny:20', help='task:seconds,...')
    bag.add_argument('--rate', type=float, default=10.0, help='frames per second')
    bag.add_argument(
        '--seconds', type=float, help='route time recorded (default: the schedule, once)'
    )
    bag.add_argument('--format', choices=['sqlite3', 'mcap'], default='sqlite3')
    bag.add_argument('--seed', type=int, default=0)
    bag.add_argument('--width', type=int, default=424)
    bag.add_argument('--height', type=int, default=240)
    docs = sub.add_parser('docs', help='render the label map legend and a contact sheet of tasks')
    docs.add_argument('--out', type=Path, default=Path('docs'))
    docs.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.command == 'dataset':
            camera = CameraModel(args.width, args.height)
            n = write_dataset(args.out, args.tasks, args.frames, args.seed, camera)
            print(f'wrote {n} samples to {args.out / "data.txt"}')
        elif args.command == 'bag':
            from robo_lifelong.sim.bag import (  # rosbags only needed here
                RecordConfig,
                record_route,
            )

            schedule = parse_schedule(args.schedule)
            seconds = schedule_seconds(schedule) if args.seconds is None else args.seconds
            config = RecordConfig(schedule, seconds, args.rate, args.seed, args.format)
            n = record_route(args.out, config, CameraModel(args.width, args.height))
            print(f'wrote {n} frames to {args.out}')
        else:
            from robo_lifelong.sim.docs import write_docs  # matplotlib-free, but only needed here

            for path in write_docs(args.out, args.seed):
                print(f'wrote {path}')
    except RoboLifelongError as e:
        print(f'robo-lifelong-sim: error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
