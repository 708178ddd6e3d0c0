"""kstatus conditions (Ready, Reconciling, Stalled) plus MetricsAvailable, with stable transition times."""

from __future__ import annotations

from typing import Literal

from rollguard.api.status import Condition

Truth = Literal["True", "False", "Unknown"]


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: Truth,
    reason: str,
    message: str,
    generation: int,
    now_iso: str,
) -> list[Condition]:
    """Returns the list with one condition set; lastTransitionTime moves only when status flips."""
    previous = next((c for c in conditions if c.type == type_), None)
    transition = previous.last_transition_time if previous and previous.status == status else now_iso
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    )
    others = [c for c in conditions if c.type != type_]
    return sorted([*others, updated], key=lambda c: _ORDER.get(c.type, 99))


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


_ORDER = {"Ready": 0, "Reconciling": 1, "Stalled": 2, "MetricsAvailable": 3}
