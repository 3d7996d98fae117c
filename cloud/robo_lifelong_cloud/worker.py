"""Entry points of the Sedna LifelongLearningJob train and eval workers.

``python -m robo_lifelong_cloud train|eval`` (or ``robo-lifelong-train`` / ``robo-lifelong-eval``)
is configured only by the environment Sedna injects (PROTOCOL.md §3.1) plus the job template's
own variables (``epochs``, ``train_ratio``, ``operator``, ``model_threshold``, ``num_class``,
``image_height``/``image_width``, ``BACKEND_TYPE``). It does the work, reports ``completed`` to
the LC (train: the pointer ``OUTPUT_URL/index.json``; eval: the pointer to deploy plus flat
metrics) and exits 0. On bad input (env, dataset, files, storage) it prints one line naming the
variable/file, reports ``failed`` and exits 1; if even the report cannot be delivered, exit 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from robo_lifelong.errors import ConfigError, ReportError, RoboLifelongError, StorageError
from robo_lifelong.transfer.storage import open_storage
from robo_lifelong_cloud.lc_client import model_result, report
from robo_lifelong_cloud.sedna_env import DEFAULT_LC_SERVER, SednaEnv

log = logging.getLogger(__name__)

SUPPORTED_BACKENDS = ('PYTORCH',)
EXIT_FAILED = 1  # the stage failed and the LC was told
EXIT_UNREPORTED = 2  # the LC could not be told


def _check_backend(env: SednaEnv) -> None:
    if env.params.backend_type not in SUPPORTED_BACKENDS:
        raise ConfigError(
            f'BACKEND_TYPE={env.params.backend_type!r} is not supported; this worker runs '
            f'{", ".join(SUPPORTED_BACKENDS)} only'
        )


def _check_output(env: SednaEnv) -> None:
    """Fail before the (long) work if OUTPUT_URL cannot be reached; create a local one."""
    try:
        if env.output_url.startswith('s3://'):
            open_storage(env.output_url, env.s3).exists('index.json')
        else:
            Path(env.output_url).mkdir(parents=True, exist_ok=True)
    except (StorageError, OSError) as e:
        raise StorageError(f'OUTPUT_URL={env.output_url}: {e}') from e


def _work(kind: str, env: SednaEnv) -> tuple[list[dict] | None, str | None]:
    """Run the stage; ``(results to report, failure reason)``."""
    if kind == 'train':
        from robo_lifelong_cloud.train import run_train  # torch: imported only when needed

        output = run_train(env)
        return [model_result(output.pointer_url, None)], None
    from robo_lifelong_cloud.eval import run_eval

    output = run_eval(env)
    if output.refused:
        return None, 'candidate not judged, so not deployed: ' + output.refused
    if output.pointer_url is None:
        return None, 'candidate rejected and no model is deployed: ' + '; '.join(
            output.decision.reasons
        )
    return [model_result(output.pointer_url, output.metrics)], None


def _identity_only(environ: Mapping[str, str]) -> SednaEnv:
    """Just enough of the environment to send a ``failed`` report."""
    return SednaEnv(
        namespace=environ.get('NAMESPACE', '').strip(),
        job_name=environ.get('JOB_NAME', '').strip(),
        worker_name=environ.get('WORKER_NAME', '').strip(),
        lc_server=environ.get('LC_SERVER', '').strip() or DEFAULT_LC_SERVER,
    )


def run(kind: str, environ: Mapping[str, str] | None = None) -> int:
    """Run one ``train`` or ``eval`` stage under the Sedna environment; returns the exit code."""
    raw = os.environ if environ is None else environ
    results, reason = None, None
    try:
        env = SednaEnv.from_environ(raw)
    except ConfigError as e:
        # a malformed user variable: the identity variables may still be good enough to report
        env = _identity_only(raw)
        reason = f'{type(e).__name__}: {e}'
    if reason is None:
        try:
            env.require(kind)
            _check_backend(env)
            _check_output(env)
            results, reason = _work(kind, env)
        except (RoboLifelongError, OSError) as e:
            reason = f'{type(e).__name__}: {e}'
        except Exception as e:  # noqa: BLE001 - a crash must still reach the LC (§8.3 item 9)
            log.exception('%s worker crashed', kind)
            reason = f'unexpected {type(e).__name__}: {e}'
    try:
        if reason is None:
            report(env, kind, 'completed', results)
            return 0
        print(f'{kind} worker failed: {reason}', file=sys.stderr)
        report(env, kind, 'failed', reason=reason[:500])
    except ReportError as e:
        print(f'{kind} worker: could not report to the LC: {e}', file=sys.stderr)
        return EXIT_UNREPORTED
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='robo-lifelong-worker',
        description='Sedna LifelongLearningJob worker (configured by the Sedna environment).',
    )
    parser.add_argument('kind', choices=('train', 'eval'))
    parser.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format='%(asctime)s %(levelname)s %(name)s: %(message)s',
    )
    return run(args.kind)


def train_main() -> int:
    return main(['train', *sys.argv[1:]])


def eval_main() -> int:
    return main(['eval', *sys.argv[1:]])
