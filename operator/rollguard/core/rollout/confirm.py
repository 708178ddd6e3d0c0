"""The confirm-promotion gate: after the last step passes, promotion waits for the gate's 2xx.

The reconciler calls the gate (core/notify.gate_due) and hands its answer in as Inputs.confirmation.
"""

from __future__ import annotations

from rollguard.api.status import Confirmation, RolloutStatus
from rollguard.core.rollout.state import Pass


def confirmed(p: Pass, rollout: RolloutStatus) -> bool:
    """True when the last step may promote: no gate, or the gate answered 2xx this round."""
    canary = p.spec.strategy.canary
    gate = canary.confirm_promotion if canary is not None else None
    steps = canary.steps if canary is not None else []
    if gate is None or rollout.step_index < len(steps) - 1:
        return True
    waiting = rollout.confirmation
    if waiting is None:
        rollout.confirmation = Confirmation(requested_at=p.now_iso)
        p.event(
            "Normal",
            "AwaitingConfirmation",
            f"version {rollout.target.version} passed every step; holding until endpoint {gate.endpoint} "
            "(strategy.canary.confirmPromotion) answers 2xx",
        )
        return False
    answer = p.inputs.confirmation
    if answer is None or not answer.confirmed:
        return False
    rollout.confirmation = None
    p.event(
        "Normal",
        "PromotionConfirmed",
        f"endpoint {gate.endpoint} confirmed version {rollout.target.version} ({answer.detail}); promoting",
    )
    return True


def take_answer(p: Pass, rollout: RolloutStatus) -> None:
    """Records the gate's answer of this pass, whatever the round's verdict, so the next call waits an interval."""
    answer = p.inputs.confirmation
    if answer is not None and rollout.confirmation is not None:
        rollout.confirmation.asked_at, rollout.confirmation.answer = p.now_iso, answer.detail
