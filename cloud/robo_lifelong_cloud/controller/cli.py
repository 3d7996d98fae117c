"""``robo-lifelong-job``: run a Sedna LifelongLearningJob on this machine, or show its status.

``robo-lifelong-job run -f cloud/manifests --state DIR`` loads and validates the Secret, Dataset
and LifelongLearningJob YAML and runs the controller (see runner.py) until Ctrl-C/SIGTERM or, with
``--until-deployed N``, until N models were deployed and the job is back in ``Train/Waiting``.
``robo-lifelong-job status --state DIR [-o yaml|json]`` prints the job like
``kubectl get lifelonglearningjob``. ``robo-lifelong-job rollback --state DIR --to VERSION``
points the job's deploy pointer at a model it deployed before (see rollback.py); the robot
follows at its bridge's next poll.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from robo_lifelong.errors import RoboLifelongError
from robo_lifelong.transfer.storage import S3Config
from robo_lifelong_cloud.controller.conditions import ConditionType, Stage, last
from robo_lifelong_cloud.controller.manifests import load_manifests, with_overrides
from robo_lifelong_cloud.controller.rollback import rollback
from robo_lifelong_cloud.controller.runner import Controller, ControllerConfig
from robo_lifelong_cloud.controller.status import StateDir, dump_yaml, table
from robo_lifelong_cloud.controller.workers import DEFAULT_COMMAND, DEFAULT_KB_SERVER


def deployed_and_waiting(count: int):
    """``until`` condition: ``count`` Deploy/Ready conditions and back in Train/Waiting."""

    def done(controller: Controller) -> bool:
        conditions = controller.conditions
        deployed = (Stage.DEPLOY, ConditionType.READY)
        deploys = sum(1 for c in conditions if (c['stage'], c['type']) == deployed)
        return deploys >= count and last(conditions) == (Stage.TRAIN, ConditionType.WAITING)

    return done


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='robo-lifelong-job', description='Run a Sedna LifelongLearningJob on this machine.'
    )
    sub = parser.add_subparsers(dest='command', required=True)
    run = sub.add_parser('run', help='run the job controller')
    run.add_argument(
        '-f',
        '--filename',
        action='append',
        default=None,
        help='manifest file or directory (repeatable; default cloud/manifests)',
    )
    run.add_argument('--state', required=True, type=Path, help='state directory')
    run.add_argument('--tick', type=float, default=10.0, help='LC/GM tick in seconds (Sedna 10)')
    run.add_argument(
        '--dataset-poll',
        type=float,
        default=60.0,
        help='dataset index poll period in seconds (Sedna 60)',
    )
    run.add_argument(
        '--worker-command',
        default=shlex.join(DEFAULT_COMMAND),
        help='command the container args are appended to',
    )
    run.add_argument('--kb-server', default=DEFAULT_KB_SERVER, help='KB_SERVER for workers')
    run.add_argument('--dataset-url', help="override the Dataset's spec.url")
    run.add_argument('--output-dir', help="override the job's spec.outputDir")
    run.add_argument(
        '--until-deployed',
        type=int,
        default=0,
        metavar='N',
        help='exit after N deploys, back in Train/Waiting',
    )
    run.add_argument('-v', '--verbose', action='store_true')
    status = sub.add_parser('status', help='print the job status')
    status.add_argument('--state', required=True, type=Path)
    status.add_argument('-o', '--output', choices=('table', 'yaml', 'json'), default='table')
    back = sub.add_parser('rollback', help='deploy again a model version the job deployed before')
    back.add_argument('--state', required=True, type=Path)
    back.add_argument('--to', required=True, type=int, metavar='VERSION', dest='version')
    return parser


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format='%(asctime)s %(levelname)s %(name)s: %(message)s',
    )
    manifests = load_manifests(args.filename or ['cloud/manifests'])
    manifests = with_overrides(manifests, args.dataset_url, args.output_dir)
    config = ControllerConfig(
        state_dir=args.state,
        tick_s=args.tick,
        dataset_poll_s=args.dataset_poll,
        command=tuple(shlex.split(args.worker_command)),
        kb_server=args.kb_server,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    until = deployed_and_waiting(args.until_deployed) if args.until_deployed > 0 else None
    with Controller(manifests, config) as controller:
        controller.run(stop, until)
    return 0


def _status(args: argparse.Namespace) -> int:
    job = StateDir(args.state).read_job()
    if job is None:
        print(f'no job status in {str(args.state)!r}', file=sys.stderr)
        return 1
    if args.output == 'yaml':
        print(dump_yaml(job), end='')
    elif args.output == 'json':
        print(json.dumps(job, indent=2))
    else:
        print(table(job))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    job = StateDir(args.state).read_job()
    if job is None:
        print(f'no job status in {str(args.state)!r}', file=sys.stderr)
        return 1
    chosen = rollback(job, args.version, S3Config.from_environ(os.environ))
    print(
        f'deploy pointer now names v{chosen.pointer.version} '
        f'({chosen.pointer.content_hash[:12]}, {chosen.pointer.package_url}); '
        "robots follow at their bridge's next poll"
    )
    return 0


COMMANDS = {'run': _run, 'status': _status, 'rollback': _rollback}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except RoboLifelongError as e:
        print(f'robo-lifelong-job: {e}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
