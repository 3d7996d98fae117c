"""The LC's train trigger (PROTOCOL.md §2.3): ``num_of_samples OP threshold`` in a timer window.

The timer compares ``HH:MM`` strings in local time, as Sedna's LC does, so ``"24:00"`` closes
a window that includes every minute of the day and ``start > end`` wraps midnight.
``checkPeriodSeconds`` is kept but, as in Sedna, not used: the controller's tick decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from robo_lifelong.errors import ConfigError

TOLERANCE = 1e-6
OPERATORS = ('>', 'gt', '>=', 'ge', '=', '==', 'eq', '!=', 'ne', '<=', 'le', '<', 'lt')


def compare(value: float, operator: str, threshold: float) -> bool:
    """``value OP threshold``; equality within 1e-6, ``>``/``<`` strict; unknown OP is False."""
    equal = abs(value - threshold) < TOLERANCE
    if operator in ('>', 'gt'):
        return value > threshold and not equal
    if operator in ('>=', 'ge'):
        return value > threshold or equal
    if operator in ('=', '==', 'eq'):
        return equal
    if operator in ('!=', 'ne'):
        return not equal
    if operator in ('<=', 'le'):
        return value < threshold or equal
    if operator in ('<', 'lt'):
        return value < threshold and not equal
    return False


def in_window(start: str, end: str, now_hhmm: str) -> bool:
    """Sedna's string comparison of ``HH:MM`` values; ``start > end`` wraps midnight."""
    if start <= end:
        return start <= now_hhmm <= end
    return now_hhmm >= start or now_hhmm <= end


@dataclass(frozen=True)
class Trigger:
    """``spec.trainSpec.trigger`` of a LifelongLearningJob."""

    metric: str
    operator: str
    threshold: float
    timer: tuple[str, str] | None = None
    check_period_s: int | None = None  # accepted, ignored (Sedna's LC ticks every 10 s)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Trigger:
        condition = spec['condition']
        timer = spec.get('timer')
        if condition['operator'] not in OPERATORS:
            # Sedna silently never fires; a manifest typo is better reported at load time
            raise ConfigError(
                f'spec.trainSpec.trigger.condition.operator {condition["operator"]!r} '
                f'is not one of {OPERATORS}'
            )
        return cls(
            metric=condition['metric'],
            operator=condition['operator'],
            threshold=float(condition['threshold']),
            timer=(str(timer['start']), str(timer['end'])) if timer else None,
            check_period_s=spec.get('checkPeriodSeconds'),
        )

    def ready(self, stats: Mapping[str, float], now: datetime | None = None) -> bool:
        """timerOK and conditionOK; a metric missing from ``stats`` never fires."""
        if self.timer is not None:
            hhmm = (now or datetime.now()).strftime('%H:%M')
            if not in_window(self.timer[0], self.timer[1], hhmm):
                return False
        if self.metric not in stats:
            return False
        return compare(float(stats[self.metric]), self.operator, self.threshold)
