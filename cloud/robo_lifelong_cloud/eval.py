"""The eval worker's job: candidate vs reference model on the test list -> deploy decision.

Both models run through the robot's own runtime (onnxruntime on the package, labels from its
full-resolution label head), so the numbers are what the robot will see. The candidate is the
first of ``MODEL_URLS`` (Sedna passes one model).

What it reads, and from where (only what a Sedna eval pod mounts, PROTOCOL.md §3.1-3.2):

- ``MODEL_URLS[0]``: the candidate's pointer ``T/index.json`` in its train output ``T`` =
  ``O/train/<round>/`` (or a package URL), and through it the package ``T/package/``;
- ``T/reference/``: the copy of the reference package the train worker put there (the model that
  is deployed while the candidate is judged, see ``reference.py``), verified against the
  candidate manifest's ``training.reference`` record (version, content hash);
- ``TEST_DATASET_URL`` and the sample files under ``dirname(ORIGINAL_DATASET_URL)``.

It never reads ``O/deploy/`` or other rounds' outputs (a host-path eval pod cannot see them).
The rule (``deploy_rule.decide``) compares both models on the same test samples: no task the
reference knew may lose more than ``max_task_drop`` mIoU and the new tasks must improve. An
initial candidate (no reference recorded) has no old tasks to protect. An incremental candidate
whose reference copy is missing or corrupt (or not recorded) is refused, never judged alone.

Writes: under ``OUTPUT_URL`` ``decision.json`` (the decision record; ``deployed`` = the
reference), ``plots/metrics.png`` and ``index.json``, the pointer reported to the LC: the
candidate's if it is deployed, else the reference's as it was originally published (so the LC's
deploy step re-deploys the package that is already deployed). Then ``T/verdict.json`` (which
model was reported), which the next round's train worker reads to know what is deployed. With no
reference and the candidate rejected, or a refused candidate, there is nothing to deploy:
``EvalOutput.pointer_url`` is None and the worker reports ``failed``.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from robo_lifelong.errors import DatasetError
from robo_lifelong.io.dataset import load_sample
from robo_lifelong.labels import NUM_CLASSES
from robo_lifelong.models import package as mp
from robo_lifelong.models.runtime import SegmentationRuntime
from robo_lifelong.transfer import model_store
from robo_lifelong.transfer.storage import join, open_storage, parent_of
from robo_lifelong_cloud import plots
from robo_lifelong_cloud.data import resolve_dataset
from robo_lifelong_cloud.deploy_rule import Decision, decide
from robo_lifelong_cloud.metrics import confusion, iou_report
from robo_lifelong_cloud.reference import open_reference, write_verdict
from robo_lifelong_cloud.sedna_env import SednaEnv

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalOutput:
    decision: Decision
    pointer_url: str | None  # what to report; None: nothing deployable
    metrics: dict[str, float]  # flat, finite: the reported model's figures
    record_url: str
    refused: str | None = None  # why the candidate could not be judged (then never deployed)


def flat_metrics(report: dict) -> dict[str, float]:
    """The flat ``{name: float}`` Sedna's report carries: overall and per-task figures."""
    flat = {'miou': report['miou'], 'pixel_accuracy': report['pixel_accuracy']}
    for task, r in sorted(report['per_task'].items()):
        flat[f'miou_{task}'] = r['miou']
    return {k: float(v) for k, v in flat.items() if math.isfinite(v)}


def runtime_report(
    runtime: SegmentationRuntime,
    frames: Iterable[tuple[str, np.ndarray, np.ndarray | None, np.ndarray]],
) -> dict:
    """``metrics.iou_report`` of the robot runtime's labels on ``(task, rgb, depth_mm, labels)``
    frames, per task."""
    confusions: dict[str, np.ndarray] = {}
    for task, rgb, depth_mm, target in frames:
        c = confusion(runtime.infer(rgb, depth_mm).labels, target, NUM_CLASSES)
        confusions[task] = confusions.get(task, 0) + c
    return iou_report(confusions)


def evaluate_package(package: mp.ModelPackage, root: Path, samples: list) -> dict:
    """``metrics.iou_report`` of a package on labelled samples, per task."""

    def frames() -> Iterator[tuple[str, np.ndarray, np.ndarray | None, np.ndarray]]:
        desc = f'eval v{package.version}'
        for sample in tqdm(samples, desc=desc, unit='frame', disable=None, leave=False):
            if not sample.label:
                raise DatasetError(f'{root / sample.rgb}: test sample has no label image')
            loaded = load_sample(root, sample)
            yield sample.task or 'default', loaded.rgb, loaded.depth_mm, loaded.labels

    return runtime_report(SegmentationRuntime(package), frames())


def run_eval(env: SednaEnv) -> EvalOutput:
    s3 = env.s3

    def host(url: str) -> str:  # as the LC and the user see it: without the pod's mount prefix
        return model_store.strip_data_prefix(url, env.data_path_prefix)

    if len(env.model_urls) > 1:
        log.warning('MODEL_URLS lists %d models; evaluating the first', len(env.model_urls))
    candidate_url = env.model_urls[0]
    with tempfile.TemporaryDirectory(prefix='robo-eval-') as tmp:
        workdir = Path(tmp)
        root, samples = resolve_dataset(
            env.test_dataset_url, env.original_dataset_url, workdir, s3, 'TEST_DATASET_URL'
        )
        package_url, pointer = model_store.locate_package(candidate_url, s3, env.data_path_prefix)
        candidate = model_store.open_located(package_url, pointer, workdir / 'cache', s3)
        if pointer is None:
            pointer = mp.DeployPointer.for_package(candidate, host(package_url))
        reference, refused = open_reference(candidate, package_url, workdir / 'ref', s3)
        if refused:
            log.error('not judging candidate v%d: %s', candidate.version, refused)
        cand_report = evaluate_package(candidate, root, samples)
        ref_report = None
        if reference is not None:
            ref_report = evaluate_package(reference.package, root, samples)
        decision = decide(
            cand_report,
            ref_report,
            env.params.operator,
            env.params.model_threshold,
            max_task_drop=env.params.max_task_drop,
            deployed_tasks=None if reference is None else reference.package.known_tasks,
            refused=refused,
        )
        log.info('deploy=%s: %s', decision.deploy, '; '.join(decision.reasons))
        out = open_storage(env.output_url, s3)
        chart = plots.metrics_chart(cand_report, workdir / 'metrics.png', deployed=ref_report)
        out.upload_file(chart, 'plots/metrics.png')
        record = {
            'created': datetime.now(timezone.utc).isoformat(timespec='seconds'),
            'decision': decision.to_json(),
            'test_samples': len(samples),
            'candidate': _model_record(host(candidate_url), candidate, cand_report),
            'deployed': None
            if reference is None
            else _model_record(host(reference.url), reference.package, ref_report),
        }
        out.write_bytes('decision.json', json.dumps(record, indent=1, allow_nan=False).encode())
    if decision.deploy:
        chosen, metrics = pointer, flat_metrics(cand_report)
    elif reference is not None:
        chosen, metrics = reference.record.pointer, flat_metrics(ref_report)
    else:
        chosen, metrics = None, flat_metrics(cand_report)
    pointer_url = None
    if chosen is not None:
        pointer_url = join(env.output_url, 'index.json')
        model_store.write_pointer(pointer_url, chosen, s3)
    record_url = join(env.output_url, 'decision.json')
    verdict_url = write_verdict(
        parent_of(package_url),
        candidate,
        chosen,
        host(record_url),
        record['created'],
        s3,
    )
    log.info('verdict on candidate v%d at %s', candidate.version, verdict_url)
    return EvalOutput(decision, pointer_url, metrics, record_url, refused)


def _model_record(url: str, package: mp.ModelPackage, report: dict) -> dict:
    return {
        'url': url,
        'version': package.version,
        'content_hash': package.content_hash,
        'known_tasks': list(package.known_tasks),
        'report': report,
    }
