"""Failure attribution: whose fault a rollback, a hold or a degradation was, from the evidence.

Model: the version measured worse than its limits (or than stable) while stable was healthy.
Data: a drift gate. Infrastructure: its pods did not become ready. Configuration: the spec, the
route, a query or the platform's policy. Observability: metrics unavailable or too thin.
Dependency: stable broke the same limits in the same round (a shared upstream). Manual: a user.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollguard.api.spec import MetricCheck
from rollguard.api.status import Cause, CheckResult

# What each cause means for the person reading it (the plugin's status view).
MEANING: dict[str, str] = {
    "Model": "Model: the version measured worse than its limits or than stable, while stable was healthy",
    "Data": "Data: a drift gate failed (the inputs moved away from what the model was trained on)",
    "Infrastructure": "Infrastructure: its pods did not become ready (scheduling, image, crash, OOM, pod policy)",
    "Configuration": "Configuration: the spec, the route, a query or the platform's policy must be fixed",
    "Observability": "Observability: metrics were unavailable or too thin to judge",
    "Dependency": "Dependency: stable broke the same limits in the same round (a shared upstream)",
    "Manual": "Manual: a user asked for it",
}

# Reasons whose cause does not depend on which check failed.
_BY_REASON: dict[str, Cause] = {
    "ProgressDeadlineExceeded": "Infrastructure",
    "MetricsUnavailable": "Observability",
    "WaitingForMetrics": "Observability",
    "QueryFailed": "Observability",
    "InconclusiveAnalysis": "Observability",
    "DependencyOutage": "Dependency",
    "DependencyHold": "Dependency",
    "SharedOutageAfterPromotion": "Dependency",
    "InvalidSpec": "Configuration",
    "InvalidQuery": "Configuration",
    "PolicyViolation": "Configuration",
    "NameConflict": "Configuration",
    "ChildRejected": "Configuration",
    "Aborted": "Manual",
    "Undone": "Manual",
}
# Reasons whose cause is the failed check's: a drift gate is the data's fault, a metric the model's.
_BY_CHECK = {"AnalysisFailed", "PostPromotionAnalysisFailed"}


def cause_of(reason: str, failed: CheckResult | None = None) -> Cause | None:
    """The cause of a rollback, hold or degradation with this reason; None when it is no failure."""
    if reason in _BY_CHECK:
        return "Data" if failed is not None and failed.kind == "drift" else "Model"
    return _BY_REASON.get(reason)


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def stable_breach(check: MetricCheck, stable_value: float | None) -> str | None:
    """How stable's own value breaks the check's absolute limits (thresholdRange), or None."""
    bounds = check.threshold_range
    if bounds is None or stable_value is None:
        return None
    if bounds.max is not None and stable_value > bounds.max:
        return f"stable {_fmt(stable_value)} is above the maximum {_fmt(bounds.max)}"
    if bounds.min is not None and stable_value < bounds.min:
        return f"stable {_fmt(stable_value)} is below the minimum {_fmt(bounds.min)}"
    return None


@dataclass(frozen=True)
class SharedFailure:
    """One check that failed on the canary and, in the same round, on stable."""

    check: CheckResult
    stable_breach: str

    def describe(self) -> str:
        canary = _fmt(self.check.value) if self.check.value is not None else "no value"
        return f"check {self.check.name}: canary {canary} ({self.check.message}); {self.stable_breach}"


def shared_outage(checks: list[MetricCheck], results: list[CheckResult]) -> list[SharedFailure]:
    """The round's failures when EVERY one also broke on stable (a shared outage); [] otherwise.

    One failed check that stable passes, or any failed drift gate, is the canary's own fault.
    """
    by_name = {check.name: check for check in checks}
    shared: list[SharedFailure] = []
    for result in results:
        if result.phase != "Failed":
            continue
        check = by_name.get(result.name)
        breach = stable_breach(check, result.stable_value) if check is not None and result.kind == "metric" else None
        if breach is None:
            return []
        shared.append(SharedFailure(result, breach))
    return shared
