"""When an object next needs a pass though nothing about it changed: pure, from its spec and status.

Changes (the object, a child, its route) wake a pass on their own; this answers only for the clocks
`decide()` reads: the next analysis round, the end of a timed pause, the progress deadline, the
metrics-unavailable and dependency-hold deadlines, a retired revision's scale-down delay and the end
of the post-promotion watch, and the fallback's activateAfter. None means nothing is due: an idle object costs
nothing until it changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from rollguard.api.base import duration_seconds
from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import ModelDeploymentStatus, RolloutStatus
from rollguard.core import clock
from rollguard.core.plan import has_checks


def _at(start: str | None, seconds: float) -> datetime | None:
    return None if start is None else clock.parse(start) + timedelta(seconds=seconds)


def _rollout_times(spec: ModelDeploymentSpec, rollout: RolloutStatus) -> list[datetime | None]:
    analysis = spec.analysis
    times = [
        _at(rollout.step_started_at, spec.progress_deadline_seconds),
        _at(rollout.metrics_unavailable_since, duration_seconds(analysis.metrics_unavailable.deadline)),
        _at(rollout.dependency_hold_since, duration_seconds(analysis.dependency_hold.max_duration)),
    ]
    canary = spec.strategy.canary
    if rollout.kind != "Canary" or rollout.promoting or rollout.weight_reached_at is None or canary is None:
        return times
    step = canary.steps[min(rollout.step_index, len(canary.steps) - 1)]
    if step.pause.duration is not None:
        times.append(_at(rollout.weight_reached_at, duration_seconds(step.pause.duration)))
    if has_checks(spec) and rollout.paused_reason is None:
        times.append(_at(rollout.last_analysis_at or rollout.weight_reached_at, analysis.interval_seconds))
    if rollout.confirmation is not None and rollout.paused_reason is None:  # the confirm-promotion gate's next call
        times.append(_at(rollout.confirmation.asked_at or rollout.confirmation.requested_at, analysis.interval_seconds))
    return times


def next_due(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime, paused: bool = False
) -> datetime | None:
    """The earliest moment after `now` at which a pass would decide something new; None when none is."""
    times: list[datetime | None] = [_at(retired.delete_after, 0) for retired in status.retired]
    if status.rollout is not None and not paused:  # a pause stops every rollout clock (core/rollout.py)
        times += _rollout_times(spec, status.rollout)
    watch, stable = status.watch, status.stable
    if watch is not None and stable is not None and watch.revision == stable.revision:
        times.append(_at(watch.until, 0))
        if has_checks(spec) and not paused:
            times.append(_at(watch.last_analysis_at or watch.started_at, spec.analysis.interval_seconds))
    fallback = status.fallback
    if spec.fallback is not None and fallback is not None and not fallback.active:  # the fallback's activateAfter
        times.append(_at(fallback.unready_since, duration_seconds(spec.fallback.activate_after)))
    # A time already past was evaluated by the pass that computed this: waking for it again would spin.
    future = [moment for moment in times if moment is not None and moment > now]
    return min(future, default=None)
