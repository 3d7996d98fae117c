"""robo-lifelong: offline tools of the robot side (``replay`` a recorded drive)."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from robo_lifelong.errors import RoboLifelongError
from robo_lifelong.io.bags import COLOR_TOPIC, DEPTH_TOPIC, STORAGE
from robo_lifelong.offline.replay import ReplayConfig, replay_bag
from robo_lifelong.perception.alarm_policy import AlarmConfig
from robo_lifelong.perception.collection import CollectionConfig
from robo_lifelong.perception.pipeline import PipelineConfig
from robo_lifelong.transfer.spool import DEFAULT_MAX_BYTES, DEFAULT_MAX_SAMPLES, Spool


def _replay_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'replay',
        help='run the perception core over a rosbag2 recording (sqlite3 or MCAP)',
        description="Labels, unseen scores, the alarm (on the frames' stamps) and sample "
        'collection, as the perception node does, as the CPU allows.',
    )
    p.add_argument('bag', type=Path, help='rosbag2 directory (or .mcap/.db3 file)')
    p.add_argument('--model', type=Path, required=True, help='model package directory')
    p.add_argument('--spool', type=Path, default=Path('spool'), help='sample spool directory')
    p.add_argument('--no-collect', action='store_true', help='do not collect samples')
    p.add_argument('--robot-id', default='robot', help='robot id written into samples')
    p.add_argument('--threads', type=int, default=2, help='onnxruntime intra-op threads')
    p.add_argument('--color-topic', default=COLOR_TOPIC)
    p.add_argument('--depth-topic', default=DEPTH_TOPIC, help="'' = replay without depth")
    p.add_argument('--write-bag', type=Path, help='record the outputs as a new bag here')
    p.add_argument('--write-format', choices=list(STORAGE), default='sqlite3')
    p.add_argument('--warn-enter-frames', type=int, default=AlarmConfig.warn_enter_frames)
    p.add_argument('--error-enter-frames', type=int, default=AlarmConfig.error_enter_frames)
    p.add_argument('--exit-frames', type=int, default=AlarmConfig.exit_frames)
    p.add_argument('--collect-min-interval', type=float, default=CollectionConfig.min_interval_s)
    p.add_argument('--json', action='store_true', help='print the summary as JSON')


def _replay(args: argparse.Namespace) -> int:
    pipeline = PipelineConfig(
        robot_id=args.robot_id,
        collect=not args.no_collect,
        alarm=AlarmConfig(
            warn_enter_frames=args.warn_enter_frames,
            error_enter_frames=args.error_enter_frames,
            exit_frames=args.exit_frames,
        ),
        collection=CollectionConfig(min_interval_s=args.collect_min_interval),
    )
    config = ReplayConfig(color_topic=args.color_topic, depth_topic=args.depth_topic)
    # a spool this run creates is its output: removed if the run fails (a given one is kept)
    fresh_spool = not args.no_collect and not args.spool.exists()
    spool = None if args.no_collect else Spool(args.spool, DEFAULT_MAX_BYTES, DEFAULT_MAX_SAMPLES)
    failed = True
    try:
        summary = replay_bag(
            args.bag,
            args.model,
            spool=spool,
            pipeline=pipeline,
            config=config,
            write_bag=args.write_bag,
            write_storage=args.write_format,
            threads=args.threads,
        )
        failed = False
    finally:
        if spool is not None:
            spool.close()
        if failed and fresh_spool:
            shutil.rmtree(args.spool, ignore_errors=True)
    print(json.dumps(summary.to_json(), indent=2) if args.json else summary.describe())
    if args.write_bag:
        print(f'outputs written to {args.write_bag}', file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='robo-lifelong', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    _replay_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    try:
        return _replay(args)
    except RoboLifelongError as e:
        print(f'robo-lifelong: error: {e}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
