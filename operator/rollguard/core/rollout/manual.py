"""Annotations a user sets with the kubectl plugin: abort, retry, resume, promote, undo."""

from __future__ import annotations

from rollguard.api.status import RolloutStatus
from rollguard.core import actions
from rollguard.core.rollout.state import Pass
from rollguard.core.rollout.steps import advance


def apply_actions(p: Pass) -> None:
    handled = dict(p.status.handled_actions)
    for action in actions.pending(p.inputs.annotations, handled):
        handled[action.name] = action.value
        rollout = p.status.rollout
        if action.name == "abort" and rollout is not None and rollout.kind != "Rollback":
            p.roll_back(rollout, "Aborted", "aborted by a user", None)
        elif action.name == "retry" and p.status.rejected is not None:
            p.event("Normal", "Retry", f"retrying rejected version {p.status.rejected.version}")
            p.status.rejected = None
        elif action.name == "resume" and rollout is not None:
            _release_hold(rollout)
            p.event("Normal", "Resumed", f"hold on version {rollout.target.version} released by a user")
        elif action.name == "promote-full" and rollout is not None and rollout.kind == "Canary":
            _release_hold(rollout)
            rollout.promoting = True
            rollout.step_started_at = p.now_iso
            rollout.reason = "promoted fully by a user"
            p.event("Normal", "PromoteFull", f"version {rollout.target.version} promoted fully by a user")
        elif action.name == "promote" and rollout is not None and rollout.kind == "Canary":
            _release_hold(rollout)
            advance(p, rollout, "promoted by a user")
            rollout.reason = rollout.reason or "a step promoted by a user"
        elif action.name == "undo":
            _undo(p, action.argument)
        else:
            p.event("Normal", "ActionIgnored", f"{action.name} ignored: nothing it applies to right now")
    p.status.handled_actions = handled


def _release_hold(rollout: RolloutStatus) -> None:
    """A human released the hold: forget what caused it, so it does not trip again on old counts."""
    rollout.paused_reason = None
    rollout.inconclusive = 0
    rollout.metrics_unavailable_since = None
    rollout.dependency_hold_since = rollout.dependency_recovered_at = None


def _undo(p: Pass, version: str) -> None:
    target = p.known_good_version(version)
    if target is None:
        known = sorted({e.version for e in p.status.history if e.outcome == "Promoted"})
        p.event("Warning", "UndoRejected", f"no known-good version {version!r} in history; known: {known}")
        return
    if p.status.stable is not None and target.revision == p.status.stable.revision and p.status.rollout is None:
        p.event("Normal", "ActionIgnored", f"version {version} is already serving")
        return
    if p.status.rollout is not None:
        p.record(p.status.rollout.target, "Aborted", "undone by a user", p.status.rollout.checks)
    if p.desired.revision != target.revision:
        p.reject(p.desired, "Undone", f"a user rolled back to known-good version {target.version}", None)
    p.status.rollout = None
    if p.status.stable is None or p.status.stable.revision != target.revision:
        p.start("Rollback", target, f"undo to known-good version {target.version} requested by a user")
