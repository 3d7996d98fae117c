"""The eval worker's job: candidate vs deployed model on the test list -> deploy decision.

Both models run through the robot's own runtime (onnxruntime on the package, argmax at the output
stride, labels upsampled), so the numbers are what the robot will see. The candidate is the first
of ``MODEL_URLS`` (Sedna passes one model). The deployed model is found at ``O/deploy/index.pkl``,
the file Sedna's LC deploys to, where ``O`` = ``OUTPUT_URL`` minus its last two components
(``OUTPUT_URL`` is ``O/eval/<round>``, PROTOCOL.md §2.4). On a real Sedna host-path job only
``O/eval/`` is mounted in the pod, so there the deployed model is not visible and the candidate is
judged alone (logged); S3 jobs and the local controller see it.

Output under ``OUTPUT_URL``: ``decision.json`` (the decision record), ``plots/metrics.png`` and
``index.json``, the pointer reported to the LC: the candidate's if it is deployed, else the
deployed model's (so the LC's deploy step re-deploys the same package). With nothing deployed and
the candidate rejected there is nothing to deploy: ``EvalOutput.pointer_url`` is None.
"""

from __future__ import annotations

import json
import logging
import math
import posixpath
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from robo_lifelong import model_package as mp
from robo_lifelong.dataset import load_sample
from robo_lifelong.errors import DatasetError, ModelPackageError
from robo_lifelong.labels import NUM_CLASSES
from robo_lifelong.runtime import SegmentationRuntime
from robo_lifelong.storage import join, open_storage
from robo_lifelong_cloud import plots
from robo_lifelong_cloud.data import resolve_dataset
from robo_lifelong_cloud.deploy_rule import Decision, decide
from robo_lifelong_cloud.metrics import confusion, iou_report
from robo_lifelong_cloud.sedna_env import SednaEnv

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalOutput:
    decision: Decision
    pointer_url: str | None  # what to report; None: nothing deployable
    metrics: dict[str, float]  # flat, finite: the reported model's figures
    record_url: str


def deployed_pointer_url(output_url: str) -> str:
    """``O/deploy/index.pkl`` for ``OUTPUT_URL`` = ``O/eval/<round>``."""
    if output_url.startswith('s3://'):
        outdir = 's3://' + posixpath.dirname(posixpath.dirname(output_url[5:].rstrip('/')))
    else:
        outdir = posixpath.dirname(posixpath.dirname(output_url.rstrip('/')))
    return join(outdir, 'deploy', 'index.pkl')


def flat_metrics(report: dict) -> dict[str, float]:
    """The flat ``{name: float}`` Sedna's report carries: overall and per-task figures."""
    flat = {'miou': report['miou'], 'pixel_accuracy': report['pixel_accuracy']}
    for task, r in sorted(report['per_task'].items()):
        flat[f'miou_{task}'] = r['miou']
    return {k: float(v) for k, v in flat.items() if math.isfinite(v)}


def evaluate_package(package: mp.ModelPackage, root: Path, samples: list) -> dict:
    """``metrics.iou_report`` of a package on labelled samples, per task."""
    runtime = SegmentationRuntime(package)
    confusions: dict[str, np.ndarray] = {}
    desc = f'eval v{package.version}'
    for sample in tqdm(samples, desc=desc, unit='frame', disable=None, leave=False):
        if not sample.label:
            raise DatasetError(f'{root / sample.rgb}: test sample has no label image')
        loaded = load_sample(root, sample)
        labels = runtime.infer(loaded.rgb, loaded.depth_mm).labels
        task = sample.task or 'default'
        c = confusion(labels, loaded.labels, NUM_CLASSES)
        confusions[task] = confusions.get(task, 0) + c
    return iou_report(confusions)


def _deployed(env: SednaEnv, cache: Path) -> tuple[mp.ModelPackage, mp.DeployPointer] | None:
    url = deployed_pointer_url(env.output_url)
    environ = env.s3_environ()
    parent, name = url.rsplit('/', 1)
    try:
        if not open_storage(parent, environ).exists(name):
            log.info('no deployed model at %s: judging the candidate alone', url)
            return None
        package_url, pointer = mp.locate_package(url, environ, env.data_path_prefix)
        package = mp.open_model(url, cache, environ, env.data_path_prefix)
    except ModelPackageError as e:
        log.warning('deployed model at %s is unreadable, judging the candidate alone: %s', url, e)
        return None
    if pointer is None:
        pointer = mp.DeployPointer.for_package(package, package_url)
    return package, pointer


def run_eval(env: SednaEnv) -> EvalOutput:
    environ = env.s3_environ()
    if len(env.model_urls) > 1:
        log.warning('MODEL_URLS lists %d models; evaluating the first', len(env.model_urls))
    candidate_url = env.model_urls[0]
    with tempfile.TemporaryDirectory(prefix='robo-eval-') as tmp:
        workdir = Path(tmp)
        root, samples = resolve_dataset(
            env.test_dataset_url, env.original_dataset_url, workdir, environ, 'TEST_DATASET_URL'
        )
        package_url, pointer = mp.locate_package(candidate_url, environ, env.data_path_prefix)
        candidate = mp.open_model(candidate_url, workdir / 'cache', environ, env.data_path_prefix)
        if pointer is None:
            pointer = mp.DeployPointer.for_package(
                candidate, mp.strip_data_prefix(package_url, env.data_path_prefix)
            )
        deployed = _deployed(env, workdir / 'cache')
        cand_report = evaluate_package(candidate, root, samples)
        dep_report = None
        if deployed is not None:
            dep_report = evaluate_package(deployed[0], root, samples)
        decision = decide(
            cand_report,
            dep_report,
            env.params.operator,
            env.params.model_threshold,
            max_task_drop=env.params.max_task_drop,
            deployed_tasks=None if deployed is None else deployed[0].known_tasks,
        )
        log.info('deploy=%s: %s', decision.deploy, '; '.join(decision.reasons))
        out = open_storage(env.output_url, environ)
        chart = plots.metrics_chart(cand_report, workdir / 'metrics.png', deployed=dep_report)
        out.upload_file(chart, 'plots/metrics.png')
        record = {
            'created': datetime.now(UTC).isoformat(timespec='seconds'),
            'decision': decision.to_json(),
            'test_samples': len(samples),
            'candidate': _model_record(candidate_url, candidate, cand_report),
            'deployed': None
            if deployed is None
            else _model_record(deployed_pointer_url(env.output_url), deployed[0], dep_report),
        }
        out.write_bytes('decision.json', json.dumps(record, indent=1, allow_nan=False).encode())
    if decision.deploy:
        chosen, metrics = pointer, flat_metrics(cand_report)
    elif deployed is not None:
        chosen, metrics = deployed[1], flat_metrics(dep_report)
    else:
        chosen, metrics = None, flat_metrics(cand_report)
    pointer_url = None
    if chosen is not None:
        pointer_url = join(env.output_url, 'index.json')
        mp.write_pointer(pointer_url, chosen, environ)
    return EvalOutput(decision, pointer_url, metrics, join(env.output_url, 'decision.json'))


def _model_record(url: str, package: mp.ModelPackage, report: dict) -> dict:
    return {
        'url': url,
        'version': package.version,
        'content_hash': package.content_hash,
        'known_tasks': list(package.known_tasks),
        'report': report,
    }
