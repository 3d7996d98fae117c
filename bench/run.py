"""Run the benchmarks and write one JSON file per benchmark (``make bench``).

Each ``bench/bench_<name>.py`` exposes ``run(quick: bool = False) -> dict``. Results carry their
targets and whether they were met; speed targets live here, never in timed tests.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def available() -> list[str]:
    return sorted(p.stem.removeprefix('bench_') for p in HERE.glob('bench_*.py'))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_result(out: Path, name: str, result: dict, quick: bool, started: float) -> Path:
    """``<out>/<name>.json``: the benchmark's result with the machine and the wall time."""
    result = {
        'benchmark': name,
        'machine': {'python': platform.python_version(), 'cpu': platform.processor()},
        'quick': quick,
        'seconds': round(time.time() - started, 1),
        **_jsonable(result),
    }
    path = out / f'{name}.json'
    path.write_text(json.dumps(result, indent=2, allow_nan=False))
    print(json.dumps(result, indent=2), flush=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out', type=Path, default=HERE / 'results')
    parser.add_argument('--only', default='', help=f'comma-separated subset of {available()}')
    parser.add_argument('--quick', action='store_true', help='small sizes, for smoke runs')
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(',') if n] or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        parser.error(f'unknown benchmarks {unknown}; available: {available()}')
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        print(f'== bench {name}', flush=True)
        started = time.time()
        try:
            result = importlib.import_module(f'bench.bench_{name}').run(quick=args.quick)
        except Exception as e:  # one broken benchmark must not hide the others' results
            failed.append(name)
            result = {'error': f'{type(e).__name__}: {e}'}
        write_result(args.out, name, result, args.quick, started)
    if failed:
        print(f'benchmarks that raised: {failed}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
