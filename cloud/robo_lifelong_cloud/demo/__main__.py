"""``robo-lifelong-demo``: one lifelong-learning cycle on this machine, then its report.

    robo-lifelong-demo [--quick] [--rounds N] [--storage local|s3] [--out demo_output]

See ``loop.py`` for the steps and ``report.py`` for what the report shows. Exit 0 when the cycle
ran and the report was written (whether every claim held is in the report); 1 on an error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from robo_lifelong.errors import RoboLifelongError
from robo_lifelong_cloud.demo.backend import open_backend
from robo_lifelong_cloud.demo.loop import DemoConfig, run_demo
from robo_lifelong_cloud.demo.report import write_report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='robo-lifelong-demo',
        description='One lifelong-learning cycle on this machine, then its report.',
    )
    parser.add_argument(
        '--quick', action='store_true', help='smaller images, dataset and route (for CI)'
    )
    parser.add_argument(
        '--storage',
        choices=('local', 's3'),
        default='local',
        help='local directory, or S3 (S3_ENDPOINT_URL from the environment, else a SeaweedFS '
        'server started for the run)',
    )
    parser.add_argument(
        '--rounds',
        type=int,
        default=2,
        help='lifelong rounds: 1 trains the known tasks, 2 learns night + construction, '
        '3 snow, 4 dusk (default 2)',
    )
    parser.add_argument('--out', type=Path, default=Path('demo_output'), help='output directory')
    parser.add_argument(
        '--domain-id', type=int, default=0, help='ROS_DOMAIN_ID of the robot (0: a random one)'
    )
    parser.add_argument('-v', '--verbose', action='store_true')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format='%(asctime)s %(levelname)s %(name)s: %(message)s',
    )
    try:
        cfg = DemoConfig(args.out, args.quick, args.storage, args.domain_id, args.rounds)
        with open_backend(cfg.storage, cfg.out.resolve()) as backend:
            paths, counts = run_demo(cfg, backend, lambda line: print(line, flush=True))
            summary = write_report(cfg, paths, counts)
    except RoboLifelongError as e:
        print(f'robo-lifelong-demo: {e}', file=sys.stderr)
        return 1
    print()
    for claim, ok in summary['checks'].items():
        print(f'  [{"x" if ok else " "}] {claim}')
    rounds = summary['lifelong_rounds']
    print(f'\nlifelong rounds: BWT {rounds["bwt"]} points, FWT {rounds["fwt"]} points')
    print(f'report: {paths.out / "report" / "report.md"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
