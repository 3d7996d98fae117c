"""Deploy rule: Sedna's operator semantics, forgetting guard, new-task improvement."""

from __future__ import annotations

import json

import pytest

from robo_lifelong.errors import ConfigError
from robo_lifelong_cloud.deploy_rule import decide, sedna_dropped_tasks


def report(**task_miou: float) -> dict:
    per_task = {
        t: {'miou': v, 'pixel_accuracy': v + 0.1, 'per_class': {}} for t, v in task_miou.items()
    }
    return {'miou': sum(task_miou.values()) / len(task_miou), 'per_task': per_task}


@pytest.mark.parametrize(
    ('operator', 'threshold', 'dropped'),
    [
        ('<', '0', set()),  # the robot example: nothing is dropped
        ('>', '0.1', {'sunny', 'night'}),  # Sedna's defaults drop every task scoring above 0.1
        ('>', 0.95, set()),
        ('<', 0.5, {'night'}),
        ('<=', 0.4, {'night'}),
        ('<', 0.4, set()),
        ('>=', 0.8, {'sunny'}),
        ('=', 0.4, {'night'}),
        ('!=', 0.5, {'night'}),  # unknown operator behaves as '<'
        ('<', 0.92, {'sunny', 'night'}),  # sunny's pixel accuracy 0.9 also counts
    ],
)
def test_sedna_filter_operator_semantics(operator, threshold, dropped):
    candidate = report(sunny=0.8, night=0.4)
    decision = decide(candidate, None, operator, threshold)
    assert decision.deploy == (not dropped)
    if operator != '!=':
        assert set(sedna_dropped_tasks(candidate, operator, float(threshold))) == dropped
    assert all(any(repr(t) in r for r in decision.reasons) for t in dropped)


def test_unknown_operator_is_recorded_as_less_than():
    decision = decide(report(sunny=0.8), None, 'gt', '0.5')
    assert decision.operator == '<' and decision.deploy


def test_bad_threshold_names_the_value():
    with pytest.raises(ConfigError, match="'abc'"):
        decide(report(sunny=0.8), None, '<', 'abc')


def test_forgetting_more_than_one_point_blocks():
    deployed = report(sunny=0.80, overcast=0.70, night=0.20)
    ok = decide(
        report(sunny=0.791, overcast=0.70, night=0.5),
        deployed,
        '<',
        '0',
        deployed_tasks=['sunny', 'overcast'],
    )
    assert ok.deploy, ok.reasons
    assert ok.new_tasks == ['night']
    blocked = decide(
        report(sunny=0.785, overcast=0.70, night=0.5),
        deployed,
        '<',
        '0',
        deployed_tasks=['sunny', 'overcast'],
    )
    assert not blocked.deploy
    assert any("'sunny' loses 1.50 mIoU points" in r for r in blocked.reasons)


def test_new_task_improvement_is_required():
    deployed = report(sunny=0.80, night=0.30)
    same = decide(report(sunny=0.80, night=0.30), deployed, '<', '0', deployed_tasks=['sunny'])
    assert not same.deploy
    assert any('not better' in r for r in same.reasons)
    better = decide(report(sunny=0.80, night=0.31), deployed, '<', '0', deployed_tasks=['sunny'])
    assert better.deploy


def test_without_new_tasks_overall_must_improve():
    deployed = report(sunny=0.80, overcast=0.70)
    assert not decide(report(sunny=0.80, overcast=0.70), deployed, '<', '0').deploy
    assert decide(report(sunny=0.80, overcast=0.72), deployed, '<', '0').deploy
    # the filter still applies when a model is deployed
    assert not decide(report(sunny=0.80, overcast=0.72), deployed, '>', '0.1').deploy


def test_decision_record_is_json():
    decision = decide(report(sunny=0.8), report(sunny=0.7), '<', '0')
    record = json.loads(json.dumps(decision.to_json(), allow_nan=False))
    assert record['deploy'] is True
    assert record['rule'] == {'operator': '<', 'model_threshold': 0.0, 'max_task_drop': 0.01}
    assert record['reasons'] == decision.reasons


def test_a_refused_candidate_is_never_deployed():
    """No reference to judge against (e.g. its copy is missing): not deployed, whatever the
    figures, and never judged alone."""
    decision = decide(report(sunny=0.99), None, '<', '0', refused='reference copy missing')
    assert not decision.deploy
    assert 'refused, not judged: reference copy missing' in decision.reasons
    assert 'no model is deployed' not in decision.reasons
