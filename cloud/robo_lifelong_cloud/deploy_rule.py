"""Deploy decision of the eval worker: Sedna's metric filter plus our no-forgetting rule.

Sedna's filter (PROTOCOL.md §2.5, §8.3 item 17): a task is DROPPED when any of its metric values
``v`` satisfies ``v <operator> model_threshold`` (so the default ``>`` / 0.1 drops every task
scoring above 0.1; the robot example uses ``<`` / 0, which drops nothing). We apply it to each
task's summary metrics (``miou``, ``pixel_accuracy``) of the candidate; any dropped task blocks
the deploy. Our rule on top, when there is a deployed model (the candidate's reference, whose copy
the train worker put in the candidate's output: see ``reference.py``; evaluated on the same test
samples): the candidate must be better on the tasks the deployed model did not know (or overall
when there are none), and no task both models were evaluated on and the deployed model knew may
lose more than ``max_task_drop`` mIoU. A candidate that cannot be judged (``refused``: it has a
parent but its reference is unavailable) is never deployed.
"""

from __future__ import annotations

import logging
import math
import operator as op
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from robo_lifelong.errors import ConfigError

log = logging.getLogger(__name__)

# Sedna's defaults when the job sets no ``operator`` / ``model_threshold`` env
DEFAULT_OPERATOR = '>'
DEFAULT_MODEL_THRESHOLD = 0.1
FILTERED_METRICS = ('miou', 'pixel_accuracy')

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    '>': op.gt,
    '<': op.lt,
    '=': op.eq,
    '>=': op.ge,
    '<=': op.le,
}


@dataclass(frozen=True)
class Decision:
    deploy: bool
    reasons: list[str]
    operator: str = DEFAULT_OPERATOR  # as applied (an unknown one is recorded as '<')
    model_threshold: float = DEFAULT_MODEL_THRESHOLD
    max_task_drop: float = 0.01
    new_tasks: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            'deploy': self.deploy,
            'reasons': list(self.reasons),
            'rule': {
                'operator': self.operator,
                'model_threshold': self.model_threshold,
                'max_task_drop': self.max_task_drop,
            },
            'new_tasks': list(self.new_tasks),
        }


def parse_threshold(value: float | str) -> float:
    """``model_threshold`` as Sedna passes it (an env string) -> float; ConfigError otherwise."""
    try:
        threshold = float(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f'model_threshold must be a number, got {value!r}') from e
    if not math.isfinite(threshold):
        raise ConfigError(f'model_threshold must be finite, got {value!r}')
    return threshold


def sedna_dropped_tasks(report: dict, operator: str, model_threshold: float) -> dict[str, str]:
    """Tasks Sedna's filter drops -> why. Unknown operators behave as ``<``, as in Sedna."""
    compare = _OPERATORS.get(operator, op.lt)
    dropped = {}
    for task, metrics in report['per_task'].items():
        hits = [
            f'{name} {metrics[name]:.4f} {operator} {model_threshold:g}'
            for name in FILTERED_METRICS
            if name in metrics and compare(metrics[name], model_threshold)
        ]
        if hits:
            dropped[task] = ', '.join(hits)
    return dropped


def _mean(report: dict, tasks: Collection[str]) -> float:
    return sum(report['per_task'][t]['miou'] for t in tasks) / len(tasks)


def _compare_with_deployed(
    candidate: dict, deployed: dict, known: set[str], max_task_drop: float
) -> tuple[bool, list[str], list[str]]:
    cand_tasks, dep_tasks = set(candidate['per_task']), set(deployed['per_task'])
    reasons: list[str] = []
    ok = True
    for task in sorted(cand_tasks & dep_tasks & known):
        before, after = deployed['per_task'][task]['miou'], candidate['per_task'][task]['miou']
        if before - after > max_task_drop + 1e-12:
            ok = False
            reasons.append(
                f'known task {task!r} loses {100 * (before - after):.2f} mIoU points '
                f'({before:.4f} -> {after:.4f}; at most {100 * max_task_drop:.2f} allowed)'
            )
    new = sorted(cand_tasks - known)
    compared = [t for t in new if t in dep_tasks]
    if new and not compared:
        reasons.append(f'new tasks {new!r}: the deployed model was not evaluated on them')
    elif compared:
        before, after = _mean(deployed, compared), _mean(candidate, compared)
        better = after > before
        ok = ok and better
        reasons.append(
            f'new tasks {compared!r}: mean mIoU {before:.4f} -> {after:.4f} '
            f'({"better" if better else "not better"})'
        )
    else:
        before, after = deployed['miou'], candidate['miou']
        better = after > before
        ok = ok and better
        reasons.append(
            f'no new task; overall mIoU {before:.4f} -> {after:.4f} '
            f'({"better" if better else "not better"})'
        )
    return ok, reasons, new


def decide(
    candidate_report: dict,
    deployed_report: dict | None,
    operator: str,
    model_threshold: float | str,
    max_task_drop: float = 0.01,
    *,
    deployed_tasks: Collection[str] | None = None,
    refused: str | None = None,
) -> Decision:
    """Decide whether the candidate replaces the deployed model.

    :param candidate_report: ``metrics.iou_report`` of the candidate on the test set.
    :param deployed_report: the same for the deployed model, or None when nothing is deployed.
    :param operator: Sedna's ``operator`` env value.
    :param model_threshold: Sedna's ``model_threshold`` env value (string or number).
    :param max_task_drop: largest allowed mIoU loss on a task the deployed model knew.
    :param deployed_tasks: tasks the deployed model was trained on (its manifest); None means
        every task in ``deployed_report``.
    :param refused: why the candidate cannot be compared with the deployed model (e.g. the copy
        of its reference is missing); then it is not deployed whatever its figures.
    """
    threshold = parse_threshold(model_threshold)
    if operator not in _OPERATORS:
        log.warning('unknown operator %r: Sedna falls back to %r', operator, '<')
        operator = '<'
    reasons = []
    dropped = sedna_dropped_tasks(candidate_report, operator, threshold)
    for task, why in sorted(dropped.items()):
        reasons.append(f'Sedna filter drops task {task!r}: {why}')
    ok = not dropped
    if ok:
        reasons.append(f'Sedna filter ({operator} {threshold:g}) keeps every task')
    new: list[str] = []
    if refused:
        ok = False
        reasons.append(f'refused, not judged: {refused}')
    elif deployed_report is None:
        reasons.append('no model is deployed')
    else:
        known = set(deployed_report['per_task'] if deployed_tasks is None else deployed_tasks)
        better, why, new = _compare_with_deployed(
            candidate_report, deployed_report, known, max_task_drop
        )
        ok = ok and better
        reasons.extend(why)
    return Decision(ok, reasons, operator, threshold, max_task_drop, new)
