"""The LC train trigger: operators (PROTOCOL.md §1.2/§2.3) and the HH:MM timer window."""

from __future__ import annotations

from datetime import datetime

import pytest

from robo_lifelong.errors import ConfigError
from robo_lifelong_cloud.controller.trigger import OPERATORS, Trigger, compare, in_window

# (operator aliases, value, threshold, expected)
CASES = [
    (('>', 'gt'), 101, 100, True),
    (('>', 'gt'), 100, 100, False),
    (('>', 'gt'), 100 + 5e-7, 100, False),  # equal within 1e-6: strict > is false
    (('>', 'gt'), 99, 100, False),
    (('>=', 'ge'), 100, 100, True),
    (('>=', 'ge'), 100 - 5e-7, 100, True),
    (('>=', 'ge'), 99.9, 100, False),
    (('=', '==', 'eq'), 100 + 5e-7, 100, True),
    (('=', '==', 'eq'), 100.01, 100, False),
    (('!=', 'ne'), 100 + 5e-7, 100, False),
    (('!=', 'ne'), 101, 100, True),
    (('<=', 'le'), 100 + 5e-7, 100, True),
    (('<=', 'le'), 100.1, 100, False),
    (('<', 'lt'), 99, 100, True),
    (('<', 'lt'), 100 - 5e-7, 100, False),
    (('<', 'lt'), 100, 100, False),
]


@pytest.mark.parametrize(('aliases', 'value', 'threshold', 'expected'), CASES)
def test_operators(aliases: tuple[str, ...], value: float, threshold: float, expected: bool):
    for operator in aliases:
        assert compare(value, operator, threshold) is expected, operator


def test_every_sedna_operator_is_covered() -> None:
    assert {op for aliases, *_ in CASES for op in aliases} == set(OPERATORS)


def test_unknown_operator_never_fires_and_is_refused_in_a_manifest() -> None:
    assert compare(5, '=>', 1) is False
    with pytest.raises(ConfigError, match='=>'):
        Trigger.from_spec(
            {'condition': {'metric': 'num_of_samples', 'operator': '=>', 'threshold': 1}}
        )


@pytest.mark.parametrize(
    ('start', 'end', 'now', 'expected'),
    [
        ('00:00', '24:00', '00:00', True),
        ('00:00', '24:00', '23:59', True),
        ('09:00', '17:00', '09:00', True),  # bounds are inclusive
        ('09:00', '17:00', '17:00', True),
        ('09:00', '17:00', '17:01', False),
        ('09:00', '17:00', '08:59', False),
        ('22:00', '02:00', '23:30', True),  # wraps midnight
        ('22:00', '02:00', '00:15', True),
        ('22:00', '02:00', '02:00', True),
        ('22:00', '02:00', '12:00', False),
        ('23:00', '24:00', '23:59', True),
        ('12:00', '12:00', '12:00', True),
        ('12:00', '12:00', '12:01', False),
    ],
)
def test_timer_window(start: str, end: str, now: str, expected: bool) -> None:
    assert in_window(start, end, now) is expected


def test_ready_needs_timer_and_condition() -> None:
    trigger = Trigger.from_spec(
        {
            'checkPeriodSeconds': 30,
            'timer': {'start': '22:00', 'end': '02:00'},
            'condition': {'metric': 'num_of_samples', 'operator': '>', 'threshold': 100},
        }
    )
    assert trigger.check_period_s == 30
    night, noon = datetime(2026, 1, 1, 23, 0), datetime(2026, 1, 1, 12, 0)
    assert trigger.ready({'num_of_samples': 101}, night)
    assert not trigger.ready({'num_of_samples': 100}, night)
    assert not trigger.ready({'num_of_samples': 101}, noon)
    assert not trigger.ready({'other_metric': 101}, night)  # a missing metric never fires
    untimed = Trigger.from_spec(
        {'condition': {'metric': 'num_of_samples', 'operator': 'ge', 'threshold': 3}}
    )
    assert untimed.timer is None and untimed.ready({'num_of_samples': 3}, noon)
