"""``robo-lifelong-manifests``: render the Sedna manifests of one robot (``manifests``).

``robo-lifelong-manifests --out DIR`` writes three files for ``kubectl apply -f DIR`` (numbered so
that kubectl creates the Secret first). Every setting comes from a flag or, failing that, from the
environment variable of Sedna's robot example (``manifests.settings``); the S3 keys only from
``$ACCESS_KEY_ID`` and ``$SECRET_ACCESS_KEY``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from robo_lifelong.errors import ConfigError
from robo_lifelong_cloud.manifests.config import config_from
from robo_lifelong_cloud.manifests.objects import build_manifests
from robo_lifelong_cloud.manifests.settings import SETTINGS, missing_settings
from robo_lifelong_cloud.manifests.writer import write_manifests

PROG = 'robo-lifelong-manifests'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Render the Sedna Secret, Dataset and LifelongLearningJob for the robot. '
        'Each flag falls back to the environment variable named in its help; the S3 keys '
        'come only from $ACCESS_KEY_ID and $SECRET_ACCESS_KEY.',
    )
    parser.add_argument(
        '--out', metavar='DIR', help='directory to write the manifests to (required)'
    )
    for setting in SETTINGS:
        if setting.env_only:
            continue
        default = f'; default {setting.default}' if setting.default else ''
        parser.add_argument(
            setting.flag,
            dest=setting.key,
            metavar='VALUE',
            help=f'{setting.help} (env {", ".join(setting.envs)}{default})',
        )
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = os.environ if environ is None else environ
    flags = vars(args)
    missing = ([] if args.out else ['--out DIR']) + missing_settings(flags, env)
    if missing:
        print(f'{PROG}: missing required settings: {", ".join(missing)}', file=sys.stderr)
        return 2
    try:
        config = config_from(flags, env)
    except ConfigError as e:
        print(f'{PROG}: {e}', file=sys.stderr)
        return 2
    for path in write_manifests(build_manifests(config), Path(args.out), PROG):
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
