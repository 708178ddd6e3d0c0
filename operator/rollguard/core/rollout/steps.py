"""Starting a rollout and moving it through its steps until promotion."""

from __future__ import annotations

from rollguard.api.base import duration_seconds
from rollguard.api.status import RolloutStatus
from rollguard.core import analysis, clock
from rollguard.core.plan import has_checks
from rollguard.core.rollout.confirm import confirmed, take_answer
from rollguard.core.rollout.holds import dependency_hold_expired, hold_if_stuck, take_analysis
from rollguard.core.rollout.sizing import canary_target, reached
from rollguard.core.rollout.state import Pass, failure_detail


def advance(p: Pass, rollout: RolloutStatus, why: str) -> None:
    steps = p.spec.strategy.canary.steps if p.spec.strategy.canary else []
    rollout.step_index += 1
    rollout.step_started_at = p.now_iso
    rollout.weight_reached_at = None
    rollout.passed_rounds_at_step = 0
    if rollout.step_index >= len(steps):
        rollout.promoting = True
        p.event("Normal", "Promoting", f"version {rollout.target.version} passed every step ({why}); promoting")
    else:
        p.event(
            "Normal",
            "StepAdvanced",
            f"version {rollout.target.version} moving to step {rollout.step_index + 1}/{len(steps)} "
            f"at {steps[rollout.step_index].weight}% ({why})",
        )


def choose_rollout(p: Pass) -> None:
    """Start, supersede or hold, comparing what the spec asks for with what is serving."""
    rollout, stable, desired = p.status.rollout, p.status.stable, p.desired
    if rollout is not None and rollout.kind != "Rollback" and rollout.target.revision != desired.revision:
        p.record(rollout.target, "Superseded", f"spec moved to version {desired.version}", rollout.checks)
        p.event(
            "Normal",
            "Superseded",
            f"rollout of {rollout.target.version} abandoned: spec now asks for {desired.version}",
        )
        p.status.rollout = rollout = None
    if rollout is not None or p.paused:
        return
    if stable is None:
        if p.status.rejected is None or p.status.rejected.revision != desired.revision:
            p.status.rejected = None
            p.start("Initial", desired)
    elif desired.revision == stable.revision:
        if p.status.rejected is not None and p.status.rejected.revision != desired.revision:
            p.status.rejected = None
    elif p.status.rejected is None or p.status.rejected.revision != desired.revision:
        p.status.rejected = None
        p.start("Canary" if p.spec.strategy.type == "Canary" else "Rolling", desired)


def stop_clocks_while_paused(p: Pass, rollout: RolloutStatus) -> None:
    """A pause stops every deadline clock: on resume their start times move on by the time paused."""
    if p.paused:
        rollout.paused_at = rollout.paused_at or p.now_iso
        return
    if rollout.paused_at is None:
        return
    paused_seconds = max(0.0, clock.seconds_since(rollout.paused_at, p.now))
    for clock_field in (
        "step_started_at",
        "metrics_unavailable_since",
        "dependency_hold_since",
        "dependency_recovered_at",
    ):
        started = getattr(rollout, clock_field)
        if started is not None:
            setattr(rollout, clock_field, clock.later(clock.parse(started), paused_seconds))
    rollout.paused_at = None


def _deadline_passed(p: Pass, rollout: RolloutStatus) -> bool:
    return clock.seconds_since(rollout.step_started_at, p.now) > p.spec.progress_deadline_seconds


def _not_ready_message(p: Pass, rollout: RolloutStatus, want: int) -> str:
    seen = p.observed(rollout.target.revision)
    why = f": {seen.failure}" if seen.failure else ""
    return (
        f"{seen.ready}/{want} pods of version {rollout.target.version} ready after "
        f"{p.spec.progress_deadline_seconds}s (progressDeadlineSeconds){why}"
    )


def progress_readiness_gated(p: Pass, rollout: RolloutStatus) -> None:
    want = p.base_replicas()
    if reached(p, rollout):
        p.promote(rollout)
    elif _deadline_passed(p, rollout) and not p.paused:
        message = _not_ready_message(p, rollout, want)
        if rollout.kind == "Initial" or p.status.stable is None:
            if rollout.paused_reason != "ProgressDeadlineExceeded":
                rollout.paused_reason = "ProgressDeadlineExceeded"
                p.event(
                    "Warning",
                    "ProgressDeadlineExceeded",
                    f"{message}; no known-good version to go back to (cause Infrastructure)",
                )
        else:
            p.roll_back(rollout, "ProgressDeadlineExceeded", message, None)


def _step_done(p: Pass, rollout: RolloutStatus) -> bool:
    assert p.spec.strategy.canary is not None
    step = p.spec.strategy.canary.steps[rollout.step_index]
    if step.pause.duration is None:
        return False  # held until promoted by hand
    if clock.seconds_since(rollout.weight_reached_at, p.now) < duration_seconds(step.pause.duration):
        return False
    return not has_checks(p.spec) or (rollout.last_verdict == "Passed" and rollout.passed_rounds_at_step > 0)


def progress_canary(p: Pass, rollout: RolloutStatus) -> None:
    assert p.spec.strategy.canary is not None
    steps = p.spec.strategy.canary.steps
    if rollout.promoting:
        progress_readiness_gated(p, rollout)
        return
    rollout.step_index = min(rollout.step_index, len(steps) - 1)
    weight = steps[rollout.step_index].weight
    if rollout.weight_reached_at is None:
        if reached(p, rollout):
            rollout.weight_reached_at, rollout.weight = p.now_iso, weight
        elif _deadline_passed(p, rollout) and not p.paused:
            want = canary_target(p, rollout)
            p.roll_back(rollout, "ProgressDeadlineExceeded", _not_ready_message(p, rollout, want), None)
        return
    if p.inputs.analysis is not None:
        take_analysis(p, rollout, p.inputs.analysis)
    take_answer(p, rollout)
    limits = p.spec.analysis
    if rollout.failures > limits.failure_limit:
        failed = analysis.first_failure(rollout.checks)
        p.roll_back(rollout, "AnalysisFailed", failure_detail(failed), failed)
        return
    if dependency_hold_expired(p, rollout):
        return
    if hold_if_stuck(p, rollout):
        return
    if not p.paused and rollout.paused_reason is None and _step_done(p, rollout) and confirmed(p, rollout):
        advance(p, rollout, "checks passed" if has_checks(p.spec) else "pause elapsed")
