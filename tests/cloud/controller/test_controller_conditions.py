"""GM's stage machine table and condition data re-serialisation (PROTOCOL.md §1.5, §1.6)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import yaml

from robo_lifelong_cloud.controller.conditions import (
    ConditionType,
    DataError,
    Phase,
    Stage,
    condition_data,
    gm_step,
    knowledge_base,
    last,
    latest_output_models,
    make_condition,
    model_urls,
)


def _history(*states: str, data: dict[int, str] | None = None) -> list[dict]:
    out = []
    for i, state in enumerate(states):
        stage, type_ = state.split('/')
        out.append(make_condition(stage, type_, (data or {}).get(i, '')))
    return out


@pytest.mark.parametrize(
    ('last', 'phase', 'expected'),
    [
        (None, Phase.NONE, ('Train', 'Waiting')),
        ('Train/Waiting', Phase.NONE, None),
        ('Eval/Waiting', Phase.RUNNING, None),
        ('Train/Starting', Phase.NONE, None),  # pod pending/none: nothing
        ('Train/Starting', Phase.RUNNING, ('Train', 'Running')),
        ('Train/Running', Phase.RUNNING, None),  # same type: no append
        ('Eval/Running', Phase.SUCCEEDED, ('Eval', 'Completed')),
        ('Eval/Starting', Phase.FAILED, ('Eval', 'Failed')),
        ('Train/Completed', Phase.SUCCEEDED, ('Eval', 'Waiting')),
        ('Eval/Completed', Phase.NONE, ('Deploy', 'Waiting')),
        ('Deploy/Completed', Phase.NONE, ('Train', 'Waiting')),
        ('Eval/Failed', Phase.FAILED, ('Train', 'Waiting')),
        ('Deploy/Failed', Phase.NONE, ('Train', 'Waiting')),
    ],
)
def test_gm_table(last: str | None, phase: Phase, expected: tuple[str, str] | None) -> None:
    history = _history(last) if last else []
    assert gm_step(history, phase) == expected


def test_condition_shape() -> None:
    condition = make_condition('Train', 'Ready', '{"input":{}}', from_lc=True)
    assert condition['status'] == 'True' and condition['message'] == 'reported by lc'
    assert condition['lastHeartbeatTime'] == condition['lastTransitionTime']
    with pytest.raises(ValueError):
        make_condition('Train', 'Paused')


def test_data_is_reserialised_like_gm() -> None:
    raw = condition_data(
        output={
            'models': [
                {
                    'Format': 'pkl',  # keys match case-insensitively
                    'url': 's3://b/x/index.pkl',
                    'metrics': None,
                    'ownerInfo': {'x': 1},  # unknown: dropped
                    'number_of_model': 0,  # empty: dropped
                    'history_metric': 0.5,
                }
            ]
        }
    )
    assert json.loads(raw) == {
        'output': {
            'models': [
                {
                    'format': 'pkl',
                    'url': 's3://b/x/index.pkl',
                    'history_metric': 0.5,
                    'classes': None,
                }
            ]
        }
    }
    assert condition_data(input_={'dataURL': 'd', 'dataIndexURL': '', 'outputDir': 'o'}) == (
        '{"input":{"dataURL":"d","outputDir":"o"}}'
    )
    assert condition_data() == ''
    assert condition_data(output={'models': []}) == '{"output":{}}'


@pytest.mark.parametrize(
    'model',
    [
        {'url': 'u', 'number_of_model': 3.0},
        {'url': 'u', 'number_of_labeled_unseen_sample': 1e3},
        {'url': 'u', 'metrics': [1]},
        {'url': 'u', 'metrics': {'a': 'high'}},
        {'url': 'u', 'classes': [1, 2]},
        {'url': 7},
        'not an object',
    ],
)
def test_type_mismatches_are_refused(model: object) -> None:
    with pytest.raises(DataError):
        condition_data(output={'models': [model]})


def test_latest_output_models_skips_data_less_completed_only() -> None:
    train1 = '{"output":{"models":[{"url":"t1","classes":null}]}}'
    history = _history(
        'Train/Completed', 'Eval/Completed', 'Train/Completed', data={0: train1, 1: ''}
    )
    assert latest_output_models(history, 'Train') == [{'url': 't1', 'classes': None}]
    assert latest_output_models(history, 'Eval') is None
    history += _history('Train/Completed', data={0: '{"output":{}}'})
    assert latest_output_models(history, 'Train') == []  # no fallback to older rounds


def test_model_urls() -> None:
    assert model_urls({'models': [{'url': 'a'}, {'url': 'b'}]}) == ['a', 'b']
    assert model_urls({'model': {'url': 'm'}, 'models': [{'url': 'a'}]}) == ['m']


def test_knowledge_base() -> None:
    kb = knowledge_base(
        [
            {
                'current_metric': {'sunny': {'miou': 0.4, 'acc': 0.9}},
                'classes': ['road'],
                'number_of_labeled_unseen_sample': 2,
            },
            {'number_of_labeled_unseen_sample': 5},
        ]
    )
    assert kb['AIModels'] == {
        'numberOfAIModels': 1,
        'listOfAIModels': [
            {'modelID': 'sunny', 'averagePrecision': 0.4, 'numberOfTrainSamples': 0}
        ],
    }
    assert kb['AIClasses'] == {'numberOfAIClasses': 1, 'listOfAIClasses': ['road']}
    assert kb['samples'] == {'numberOfLabeledUnseenSample': 7, 'numberOfUnseenSample': 0}


def test_stages_and_types_are_the_strings_sedna_writes() -> None:
    # Sedna's LLJobStage and LLJobStageConditionType (PROTOCOL.md §1.3): what GM and kubectl see
    assert [s.value for s in Stage] == ['Train', 'Eval', 'Deploy']
    assert [t.value for t in ConditionType] == [
        'Waiting',
        'Ready',
        'Starting',
        'Running',
        'Completed',
        'Failed',
    ]
    condition = make_condition(Stage.EVAL, ConditionType.READY)
    assert type(condition['stage']) is str and type(condition['type']) is str  # YAML-safe
    assert yaml.safe_dump(condition).count('Eval') == 1
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    typed = make_condition(Stage.EVAL, ConditionType.READY, now=at)
    assert json.dumps(typed) == json.dumps(make_condition('Eval', 'Ready', now=at))
    assert last([condition]) == (Stage.EVAL, ConditionType.READY) == ('Eval', 'Ready')
    assert f'{Stage.DEPLOY}/{ConditionType.FAILED}' == 'Deploy/Failed'  # log lines, annotations
