"""The job's condition history and GM's stage machine (PROTOCOL.md §1.3, §1.5, §1.6), pure.

Conditions are CR-shaped dicts (``type``, ``status``, ``stage``, ``lastHeartbeatTime``,
``lastTransitionTime``, ``reason``, ``message``, ``data``), append-only; the last one is the job
state; their ``stage`` and ``type`` are the values of ``Stage`` and ``ConditionType``, kept as
plain strings in the dicts so the YAML and JSON stay what GM writes. ``gm_step(conditions,
phase)`` is one GM sync: the (stage, type) GM would append given the
phase of the stage's newest worker, or None. ``condition_data`` re-serialises LC/worker data
through GM's ConditionData shape (unknown keys dropped, empty optional keys omitted, ``classes``
always present).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from enum import Enum, StrEnum
from typing import Any


class Stage(StrEnum):
    """``stage`` of a condition (Sedna's LLJobStage, PROTOCOL.md §1.3)."""

    TRAIN = 'Train'
    EVAL = 'Eval'
    DEPLOY = 'Deploy'


class ConditionType(StrEnum):
    """``type`` of a condition (Sedna's LLJobStageConditionType, PROTOCOL.md §1.3)."""

    WAITING = 'Waiting'
    READY = 'Ready'
    STARTING = 'Starting'
    RUNNING = 'Running'
    COMPLETED = 'Completed'
    FAILED = 'Failed'


NEXT_STAGE = {Stage.TRAIN: Stage.EVAL, Stage.EVAL: Stage.DEPLOY, Stage.DEPLOY: Stage.TRAIN}
# what a condition's ``status`` always is (Sedna never writes False or Unknown)
CONDITION_STATUS = 'True'
LC_MESSAGE = 'reported by lc'
# GM's Model struct (§1.6) with each field's Go kind, for re-serialisation and type checks
MODEL_FIELDS: dict[str, str] = {
    'format': 'str',
    'url': 'str',
    'device_soc_versions': 'str_list',
    'metrics': 'object',
    'history_metric': 'number',
    'current_metric': 'object',
    'classes': 'str_list',
    'number_of_labeled_unseen_sample': 'int',
    'number_of_model': 'int',
    'number_of_unseen_sample': 'int',
}
INPUT_FIELDS = ('dataURL', 'dataIndexURL', 'outputDir')


class Phase(Enum):
    """A worker process seen as a pod phase (PROTOCOL.md §8.2 item 4)."""

    NONE = 'None'  # no worker for this stage (yet)
    RUNNING = 'Running'  # process alive
    SUCCEEDED = 'Succeeded'  # exit 0
    FAILED = 'Failed'  # non-zero exit or killed by a signal


class DataError(ValueError):
    """Condition data GM could not decode into its typed structs (nothing is appended)."""


def now_rfc3339(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def make_condition(
    stage: Stage | str,
    type_: ConditionType | str,
    data: str = '',
    from_lc: bool = False,
    reason: str = '',
    message: str = '',
    now: datetime | None = None,
) -> dict[str, str]:
    """One CRD-shaped condition; LC-originated ones carry ``message: reported by lc``."""
    try:
        stage, type_ = Stage(stage), ConditionType(type_)
    except ValueError as e:
        raise ValueError(f'bad condition {stage!r}/{type_!r}') from e
    stamp = now_rfc3339(now)
    return {
        'type': type_.value,
        'status': CONDITION_STATUS,
        'stage': stage.value,
        'lastHeartbeatTime': stamp,
        'lastTransitionTime': stamp,
        'reason': reason,
        'message': LC_MESSAGE if from_lc else message,
        'data': data,
    }


def last(conditions: Sequence[Mapping[str, Any]]) -> tuple[Stage, ConditionType] | None:
    """``(stage, type)`` of the last condition: the job's state; None before the first."""
    if not conditions:
        return None
    return Stage(conditions[-1]['stage']), ConditionType(conditions[-1]['type'])


def gm_step(
    conditions: Sequence[Mapping[str, Any]], phase: Phase
) -> tuple[Stage, ConditionType] | None:
    """The condition GM appends on one sync (§1.5), or None; ``phase`` is the stage's worker.

    ``Ready`` is not handled here: creating the worker is a side effect (see the runner).
    """
    state = last(conditions)
    if state is None:
        return Stage.TRAIN, ConditionType.WAITING
    stage, type_ = state
    if type_ in (ConditionType.STARTING, ConditionType.RUNNING):
        mapped = {
            Phase.RUNNING: ConditionType.RUNNING,
            Phase.SUCCEEDED: ConditionType.COMPLETED,
            Phase.FAILED: ConditionType.FAILED,
        }.get(phase)
        return (stage, mapped) if mapped and mapped != type_ else None
    if type_ == ConditionType.COMPLETED:
        return NEXT_STAGE[stage], ConditionType.WAITING
    if type_ == ConditionType.FAILED:
        return Stage.TRAIN, ConditionType.WAITING
    return None


def _check(value: Any, kind: str, where: str) -> None:
    ok = {
        'str': isinstance(value, str),
        'str_list': isinstance(value, list) and all(isinstance(v, str) for v in value),
        'object': isinstance(value, dict),
        'number': isinstance(value, (int, float)) and not isinstance(value, bool),
        # Go's int fields refuse 3.0 and 1e3, which Python's json decodes to float
        'int': isinstance(value, int) and not isinstance(value, bool),
    }[kind]
    if not ok:
        raise DataError(f'{where}: {value!r} is not a {kind}')


def normalise_model(model: Any, where: str = 'model') -> dict[str, Any]:
    """``model`` through GM's Model struct: known keys only, empty ones dropped, classes kept."""
    if not isinstance(model, dict):
        raise DataError(f'{where}: not an object')
    folded = {str(k).lower(): v for k, v in model.items()}
    out: dict[str, Any] = {}
    for key, kind in MODEL_FIELDS.items():
        value = folded.get(key)
        if value is None:
            continue
        _check(value, kind, f'{where}.{key}')
        if kind == 'object' and key == 'metrics':
            for name, metric in value.items():
                _check(metric, 'number', f'{where}.metrics.{name}')
        if value in ('', 0, [], {}) and key != 'classes':
            continue  # Go's omitempty
        out[key] = value
    out.setdefault('classes', None)
    return out


def _models(value: Any, where: str) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise DataError(f'{where}: not a list')
    return [normalise_model(m, f'{where}[{i}]') for i, m in enumerate(value)]


def condition_data(
    input_: Mapping[str, Any] | None = None, output: Mapping[str, Any] | None = None
) -> str:
    """The ``data`` JSON string GM stores for an LC message with these parts (§1.6)."""
    data: dict[str, Any] = {}
    if input_ is not None:
        part: dict[str, Any] = {}
        if input_.get('model') is not None:
            part['model'] = normalise_model(input_['model'], 'input.model')
        models = _models(input_.get('models'), 'input.models')
        if models:
            part['models'] = models
        for key in INPUT_FIELDS:
            value = input_.get(key)
            if value is not None:
                _check(value, 'str', f'input.{key}')
            if value:
                part[key] = value
        data['input'] = part
    if output is not None:
        part = {}
        if output.get('model') is not None:
            part['model'] = normalise_model(output['model'], 'output.model')
        models = _models(output.get('models'), 'output.models')
        if models:
            part['models'] = models
        data['output'] = part
    return json.dumps(data, separators=(',', ':')) if data else ''


def parse_data(condition: Mapping[str, Any]) -> dict[str, Any] | None:
    """The decoded ``data`` of a condition, or None if it has none or it does not parse."""
    raw = condition.get('data') or ''
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def model_urls(part: Mapping[str, Any]) -> list[str]:
    """URLs of an input/output part: ``[model.url]`` if ``model`` is set, else models[].url."""
    if part.get('model'):
        return [part['model'].get('url', '')]
    return [m.get('url', '') for m in part.get('models') or []]


def latest_output_models(
    conditions: Sequence[Mapping[str, Any]], stage: Stage
) -> list[dict[str, Any]] | None:
    """``output.models`` of the latest ``stage/Completed`` whose data has an ``output`` object.

    GM's own data-less ``Completed`` is skipped; an ``output`` without models gives ``[]``
    (LC does not fall back to older rounds then, PROTOCOL.md §2.5). None if there is none.
    """
    for condition in reversed(conditions):
        if condition['stage'] != stage or condition['type'] != ConditionType.COMPLETED:
            continue
        data = parse_data(condition)
        if data is not None and isinstance(data.get('output'), dict):
            return list(data['output'].get('models') or [])
    return None


def has_completed(conditions: Sequence[Mapping[str, Any]], stage: Stage) -> bool:
    return any(c['stage'] == stage and c['type'] == ConditionType.COMPLETED for c in conditions)


def knowledge_base(models: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``status.knowledgeBase`` recomputed from a message's output models (§1.3, §4.2).

    ``current_metric`` gives one AIModel per model id with its first metric value; classes come
    from the first model; labelled unseen samples are summed. The wire format carries no train
    sample count, so ``numberOfTrainSamples`` is 0 (what GM shows with Sedna's python lib too).
    """
    ai_models = []
    for model in models:
        for model_id, metrics in (model.get('current_metric') or {}).items():
            values = list(metrics.values()) if isinstance(metrics, dict) else []
            ai_models.append(
                {
                    'modelID': str(model_id),
                    'averagePrecision': float(values[0]) if values else 0.0,
                    'numberOfTrainSamples': 0,
                }
            )
    classes = list(models[0].get('classes') or []) if models else []
    unseen = sum(int(m.get('number_of_labeled_unseen_sample') or 0) for m in models)
    return {
        'AIModels': {'numberOfAIModels': len(ai_models), 'listOfAIModels': ai_models},
        'AIClasses': {'numberOfAIClasses': len(classes), 'listOfAIClasses': classes},
        'samples': {'numberOfLabeledUnseenSample': unseen, 'numberOfUnseenSample': 0},
    }
