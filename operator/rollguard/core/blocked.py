"""A pass that could not write its children (NameConflict, ChildRejected) says so in its one status write."""

from __future__ import annotations

from rollguard.api.status import Condition, ModelDeploymentStatus
from rollguard.core.conditions import Truth, get_condition, set_condition
from rollguard.core.facts import Event


def block(
    status: ModelDeploymentStatus,
    before: list[Condition],
    reason: str,
    message: str,
    generation: int,
    now_iso: str,
) -> list[Event]:
    """Sets Stalled=True / Ready=False with `reason` on the status decided this pass.

    Transition times come from the conditions before the pass, so a blocker that persists costs no
    status write; the Warning Event is returned only when the blocker is new or its message changed.
    """
    conditions = status.conditions
    pairs: tuple[tuple[str, Truth], ...] = (("Stalled", "True"), ("Ready", "False"))
    for type_, truth in pairs:
        old = get_condition(before, type_)
        base = [c for c in conditions if c.type != type_] + ([old] if old is not None else [])
        conditions = set_condition(base, type_, truth, reason, message, generation, now_iso)
    status.conditions = conditions
    status.message = message
    previous = get_condition(before, "Stalled")
    if previous is not None and (previous.status, previous.reason, previous.message) == ("True", reason, message):
        return []
    return [Event("Warning", reason, message)]
