"""This round's verdict, and the holds it can start: shared outages, missing or thin metrics."""

from __future__ import annotations

from rollguard.api.base import duration_seconds
from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import CheckResult, RolloutStatus
from rollguard.core import analysis, attribution, clock
from rollguard.core.rollout.state import Pass


def take_analysis(p: Pass, rollout: RolloutStatus, results: list[CheckResult]) -> None:
    verdict = analysis.round_verdict(results)
    rollout.checks = results
    rollout.last_analysis_at = p.now_iso
    rollout.last_verdict = verdict
    if verdict == "Invalid":
        # The spec's fault, not Prometheus': hold (summary says Stalled) and start no deadline clock.
        rollout.consecutive_errors = 0
        rollout.metrics_unavailable_since = None
        return
    if verdict == "Unavailable":
        rollout.consecutive_errors += 1
        rollout.metrics_unavailable_since = rollout.metrics_unavailable_since or p.now_iso
        return
    rollout.consecutive_errors = 0
    rollout.metrics_unavailable_since = None
    if _shared_outage(p, rollout, results, verdict):
        return
    if verdict == "Failed":
        rollout.failures += 1
    elif verdict == "Inconclusive":
        rollout.inconclusive += 1
    else:
        rollout.passed_rounds_at_step += 1


def _shared_outage(p: Pass, rollout: RolloutStatus, results: list[CheckResult], verdict: str) -> bool:
    """True when this round's failures are stable's too: held (cause Dependency), not counted."""
    shared = attribution.shared_outage(p.spec.analysis.metrics, results) if verdict == "Failed" else []
    if shared and p.spec.analysis.dependency_hold.enabled:
        rollout.dependency_recovered_at = None
        if rollout.dependency_hold_since is None:
            rollout.dependency_hold_since = p.now_iso
            evidence = "; ".join(failure.describe() for failure in shared)
            p.event(
                "Warning",
                "DependencyHold",
                f"holding version {rollout.target.version} (cause Dependency): stable breaks the same limits in "
                f"the same round, a shared outage, not the canary's fault: {evidence}; resumes when stable recovers",
            )
        return True
    if rollout.dependency_hold_since is not None:
        # The canary's own windows still hold outage data for a while after stable's clear: not its fault yet.
        rollout.dependency_recovered_at = rollout.dependency_recovered_at or p.now_iso
        settling = clock.seconds_since(rollout.dependency_recovered_at, p.now) < _settle_seconds(p.spec)
        if verdict == "Failed" and settling:
            return True
        held_for = int(clock.seconds_since(rollout.dependency_hold_since, p.now))
        rollout.dependency_hold_since = rollout.dependency_recovered_at = None
        p.event(
            "Normal",
            "DependencyRecovered",
            f"stable recovered after a {held_for}s shared outage; judging version {rollout.target.version} again",
        )
    return False


def _settle_seconds(spec: ModelDeploymentSpec) -> float:
    """After stable recovers: one query window (the longest check's) plus one interval to clear the outage."""
    analysis_ = spec.analysis
    windows = [duration_seconds(check.interval or analysis_.interval) for check in analysis_.metrics]
    return max(windows, default=0.0) + analysis_.interval_seconds


def dependency_hold_expired(p: Pass, rollout: RolloutStatus) -> bool:
    """After dependencyHold.maxDuration a shared outage gets its action; True when rolled back."""
    hold = p.spec.analysis.dependency_hold
    held_for = clock.seconds_since(rollout.dependency_hold_since, p.now)
    if held_for == float("inf") or held_for <= duration_seconds(hold.max_duration):
        return False
    message = f"stable and canary broke the same limits for {int(held_for)}s (dependencyHold.maxDuration)"
    if hold.action == "Rollback":
        p.roll_back(rollout, "DependencyOutage", message, analysis.first_failure(rollout.checks))
        return True
    if rollout.paused_reason is None:
        rollout.paused_reason = "DependencyOutage"
        p.event(
            "Warning",
            "DependencyOutage",
            f"holding version {rollout.target.version} (cause Dependency): {message}; resume, promote or abort by hand",
        )
    return False


def hold_if_stuck(p: Pass, rollout: RolloutStatus) -> bool:
    """Hold on metrics missing past their deadline or too many inconclusive rounds; True when rolled back."""
    limits = p.spec.analysis
    unavailable_for = clock.seconds_since(rollout.metrics_unavailable_since, p.now)
    if unavailable_for != float("inf") and unavailable_for > duration_seconds(limits.metrics_unavailable.deadline):
        if limits.metrics_unavailable.action == "Rollback":
            p.roll_back(rollout, "MetricsUnavailable", f"no usable metrics for {int(unavailable_for)}s", None)
            return True
        if rollout.paused_reason != "MetricsUnavailable":
            rollout.paused_reason = "MetricsUnavailable"
            p.event(
                "Warning",
                "MetricsUnavailable",
                f"holding version {rollout.target.version} (cause Observability): no usable "
                f"metrics for {int(unavailable_for)}s; resume, promote or abort by hand",
            )
    if rollout.inconclusive > limits.inconclusive_limit and rollout.paused_reason is None:
        rollout.paused_reason = "InconclusiveAnalysis"
        p.event(
            "Warning",
            "InconclusiveAnalysis",
            f"holding version {rollout.target.version} (cause Observability): "
            f"{rollout.inconclusive} inconclusive rounds (limit {limits.inconclusive_limit})",
        )
    return False
