"""Failure attribution and the dependency hold: the cause of every rollback and hold, and a shared
outage (stable breaking the same limits in the same round) held instead of blamed on the canary."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from rollguard.api.spec import MetricCheck
from rollguard.api.status import CheckResult, WatchStatus
from rollguard.cli_render import render_status
from rollguard.core.analysis import Measurement
from rollguard.core.attribution import cause_of, shared_outage, stable_breach
from rollguard.core.plan import PlannedCheck
from tests.test_cli import NOW, canary_status, lines_of, md, rolled_back_status
from tests.test_rollout import (
    Cluster,
    FakePrometheus,
    condition,
    reach_weight,
    reasons,
    serving,
    spec_for,
    unavailable,
)

DRIFT = CheckResult(name="psi", kind="drift", phase="Failed", value=0.7)
METRIC = CheckResult(name="error-rate", kind="metric", phase="Failed", value=0.3)


@pytest.mark.parametrize(
    ("reason", "failed", "cause"),
    [
        ("AnalysisFailed", METRIC, "Model"),
        ("AnalysisFailed", DRIFT, "Data"),
        ("AnalysisFailed", None, "Model"),
        ("PostPromotionAnalysisFailed", METRIC, "Model"),
        ("PostPromotionAnalysisFailed", DRIFT, "Data"),
        ("ProgressDeadlineExceeded", None, "Infrastructure"),
        ("MetricsUnavailable", None, "Observability"),
        ("WaitingForMetrics", None, "Observability"),
        ("QueryFailed", None, "Observability"),
        ("InconclusiveAnalysis", None, "Observability"),
        ("DependencyHold", None, "Dependency"),
        ("DependencyOutage", METRIC, "Dependency"),
        ("InvalidSpec", None, "Configuration"),
        ("InvalidQuery", None, "Configuration"),
        ("PolicyViolation", None, "Configuration"),
        ("NameConflict", None, "Configuration"),
        ("ChildRejected", None, "Configuration"),
        ("Aborted", None, "Manual"),
        ("Undone", None, "Manual"),
        ("AwaitingPromotion", None, None),
    ],
)
def test_each_reason_has_its_cause(reason: str, failed: CheckResult | None, cause: str | None) -> None:
    assert cause_of(reason, failed) == cause, f"{reason} with {failed and failed.kind} should be {cause}"


BOUNDED = MetricCheck.model_validate({"name": "error-rate", "template": "error-rate", "thresholdRange": {"max": 0.05}})
FLOOR = MetricCheck.model_validate({"name": "accuracy", "query": "acc", "thresholdRange": {"min": 0.9}})
RELATIVE = MetricCheck.model_validate(
    {"name": "vs-stable", "template": "error-rate", "relativeToStable": {"maxRatio": 1.5}}
)


@pytest.mark.parametrize(
    ("check", "stable_value", "breach"),
    [
        (BOUNDED, 0.3, "stable 0.3 is above the maximum 0.05"),
        (BOUNDED, 0.01, None),
        (BOUNDED, None, None),
        (FLOOR, 0.5, "stable 0.5 is below the minimum 0.9"),
        (FLOOR, 0.95, None),
        (RELATIVE, 0.9, None),  # stable cannot be worse than itself
    ],
)
def test_stable_breach_uses_only_absolute_limits(check: MetricCheck, stable_value: float | None, breach: Any) -> None:
    assert stable_breach(check, stable_value) == breach


def _result(name: str, phase: str, stable_value: float | None, kind: str = "metric") -> CheckResult:
    return CheckResult.model_validate(
        {"name": name, "kind": kind, "phase": phase, "value": 0.3, "stableValue": stable_value, "message": "bad"}
    )


@pytest.mark.parametrize(
    ("results", "shared"),
    [
        ([_result("error-rate", "Failed", 0.3)], ["error-rate"]),
        ([_result("error-rate", "Failed", 0.01)], []),  # stable healthy: the canary's fault
        ([_result("error-rate", "Failed", None)], []),  # stable unknown: the canary is judged alone
        ([_result("error-rate", "Failed", 0.3), _result("accuracy", "Failed", 0.95)], []),  # one is its own
        ([_result("error-rate", "Failed", 0.3), _result("accuracy", "Passed", 0.5)], ["error-rate"]),
        ([_result("error-rate", "Failed", 0.3), _result("psi", "Failed", None, kind="drift")], []),
        ([_result("error-rate", "Passed", 0.3)], []),  # nothing failed: nothing to hold
    ],
)
def test_a_round_is_a_shared_outage_only_when_every_failure_is_stables_too(
    results: list[CheckResult], shared: list[str]
) -> None:
    found = shared_outage([BOUNDED, FLOOR], results)
    assert [failure.check.name for failure in found] == shared, [f.describe() for f in found]


# -- the state machine ---------------------------------------------------------------------------
ANALYSIS = {
    "interval": "30s",
    "failureLimit": 0,
    "metrics": [{"name": "error-rate", "template": "error-rate", "thresholdRange": {"max": 0.01}}],
}


def canary_at_weight(**dependency_hold: Any) -> Any:
    analysis = {**ANALYSIS, "dependencyHold": dependency_hold} if dependency_hold else ANALYSIS
    cluster = serving("1.0.0", analysis=analysis)
    cluster.set_spec(spec_for("2.0.0", analysis=analysis))
    reach_weight(cluster)
    return cluster


def test_a_shared_outage_holds_the_canary_with_cause_dependency_then_it_resumes_and_is_promoted() -> None:
    cluster = canary_at_weight()
    cluster.prometheus = FakePrometheus(value=0.3, stable_value=0.2)
    held = cluster.run_until(lambda s: cluster.rounds >= 3, "three rounds of a shared outage")
    rollout = held.status.rollout
    assert rollout is not None and held.status.rejected is None, "the canary is not rolled back"
    assert (held.status.phase, rollout.cause, rollout.failures) == ("Holding", "Dependency", 0), (
        f"held, cause Dependency, no failure counted: {held.status.phase} {rollout.cause} {rollout.failures}"
    )
    assert held.status.message.startswith("held (cause Dependency): stable breaks the same limits"), held.status.message
    assert condition(held.status, "Reconciling").reason == "DependencyHold"
    warnings = [e for e in cluster.events if e.reason == "DependencyHold"]
    assert len(warnings) == 1 and warnings[0].type == "Warning", f"one Warning on entering the hold: {warnings}"
    assert "canary 0.3" in warnings[0].message and "stable 0.2 is above the maximum 0.01" in warnings[0].message, (
        f"the Event names both values: {warnings[0].message}"
    )
    assert rollout.step_index == 0, "no step advances while held"

    cluster.prometheus = FakePrometheus(value=0.001, stable_value=0.001)
    promoted = cluster.run_until(lambda s: s.phase == "Ready", "promoted once stable recovers")
    assert promoted.status.serving_version == "2.0.0"
    assert "DependencyRecovered" in reasons(cluster.events, "Normal"), reasons(cluster.events)


def test_a_canary_failing_while_stable_is_healthy_is_rolled_back_with_cause_model() -> None:
    cluster = canary_at_weight()
    cluster.prometheus = FakePrometheus(value=0.3, stable_value=0.001)
    decision = cluster.run_until(lambda s: s.rejected is not None, "rollback")
    rejected = decision.status.rejected
    assert rejected is not None and (rejected.reason, rejected.cause) == ("AnalysisFailed", "Model"), rejected
    assert decision.status.history[-1].cause == "Model", decision.status.history[-1]
    warning = next(e for e in decision.events if e.reason == "RolledBack")
    assert "(AnalysisFailed, cause Model)" in warning.message, warning.message
    assert "cause Model" in decision.status.message, decision.status.message


def test_still_failing_after_stable_recovers_is_the_canarys_fault() -> None:
    cluster = canary_at_weight()
    cluster.prometheus = FakePrometheus(value=0.3, stable_value=0.3)
    cluster.run_until(lambda s: s.phase == "Holding", "held by the shared outage")
    cluster.prometheus = FakePrometheus(value=0.3, stable_value=0.001)
    decision = cluster.run_until(lambda s: s.rejected is not None, "rollback once stable recovers alone")
    assert decision.status.rejected is not None and decision.status.rejected.cause == "Model"


def test_the_canary_lagging_stables_recovery_by_less_than_a_window_and_interval_is_still_held() -> None:
    cluster = canary_at_weight()  # windows of 30s, interval 30s: 60s to settle
    cluster.prometheus = FakePrometheus(value=0.3, stable_value=0.3)
    cluster.run_until(lambda s: s.phase == "Holding", "held by the shared outage")
    cluster.prometheus = FakePrometheus(value=0.05, stable_value=0.001)  # its window still holds outage errors
    lagging = cluster.reconcile(after=30)
    assert lagging.status.rejected is None and lagging.status.phase == "Holding", lagging.status.message
    assert lagging.status.rollout is not None and lagging.status.rollout.failures == 0
    cluster.prometheus = FakePrometheus(value=0.001, stable_value=0.001)
    promoted = cluster.run_until(lambda s: s.phase == "Ready", "promoted once the canary's window clears")
    assert promoted.status.serving_version == "2.0.0" and promoted.status.rejected is None


def test_with_the_dependency_hold_disabled_a_shared_outage_rolls_the_canary_back() -> None:
    cluster = canary_at_weight(enabled=False)
    cluster.prometheus = FakePrometheus(value=0.3, stable_value=0.3)
    decision = cluster.run_until(lambda s: s.rejected is not None, "rollback")
    assert decision.status.rejected is not None and decision.status.rejected.cause == "Model"


def test_a_shared_outage_past_max_duration_rolls_back_with_cause_dependency_when_asked_to() -> None:
    cluster = canary_at_weight(maxDuration="5m", action="Rollback")
    cluster.prometheus = FakePrometheus(value=0.3, stable_value=0.3)
    cluster.run_until(lambda s: s.phase == "Holding", "held by the shared outage")
    cluster.reconcile(after=200)
    assert cluster.status.rejected is None, "within maxDuration it keeps holding"
    decision = cluster.run_until(lambda s: s.rejected is not None, "rollback after maxDuration")
    rejected = decision.status.rejected
    assert rejected is not None and (rejected.reason, rejected.cause) == ("DependencyOutage", "Dependency"), rejected


def test_a_shared_outage_past_max_duration_holds_for_a_human_by_default() -> None:
    cluster = canary_at_weight(maxDuration="5m")
    cluster.prometheus = FakePrometheus(value=0.3, stable_value=0.3)
    cluster.run_until(lambda s: s.rollout is not None and s.rollout.paused_reason is not None, "hold for a human")
    rollout = cluster.status.rollout
    assert rollout is not None and (rollout.paused_reason, rollout.cause) == ("DependencyOutage", "Dependency")
    assert condition(cluster.status, "Stalled").reason == "DependencyOutage"
    assert cluster.status.rejected is None


def test_a_version_whose_pods_never_become_ready_is_rolled_back_with_cause_infrastructure() -> None:
    cluster = serving("1.0.0", progressDeadlineSeconds=60)
    cluster.never_ready.add("2.0.0")
    cluster.set_spec(spec_for("2.0.0", progressDeadlineSeconds=60))
    decision = cluster.run_until(lambda s: s.rejected is not None, "rollback after the progress deadline")
    assert decision.status.rejected is not None and decision.status.rejected.cause == "Infrastructure"
    assert decision.status.history[-1].cause == "Infrastructure"


def test_unavailable_metrics_past_the_deadline_hold_with_cause_observability() -> None:
    cluster = canary_at_weight()
    cluster.prometheus = FakePrometheus(error="connection refused")
    cluster.run_until(lambda s: s.phase == "Holding", "waiting for metrics")
    rollout = cluster.status.rollout
    assert rollout is not None and rollout.cause == "Observability", rollout


# -- the plugin's status view ----------------------------------------------------------------------
def test_the_status_view_shows_the_cause_of_a_rejection_and_of_a_dependency_hold() -> None:
    rolled_back = rolled_back_status()
    assert rolled_back.rejected is not None
    rolled_back.rejected.cause = "Model"
    rolled_back.history[-1].cause = "Model"
    lines = lines_of(render_status(md(rolled_back), NOW))
    assert "  Cause:     Model: the version measured worse than its limits or than stable, while stable was" in lines
    assert lines[-1].split()[:5] == ["1.1.0", "RolledBack", "1m", "ago", "[Model]"], lines[-1]

    held = canary_status(dependency_hold_since="2026-03-01T12:08:00Z", cause="Dependency", last_verdict="Failed")
    text = render_status(md(held), NOW)
    assert "held (cause Dependency) since 2m ago: stable breaks the same limits as the canary" in text, text
    assert "at 50% for" not in text, "a held canary does not claim to be moving on"

    verifying = rolled_back_status()
    verifying.watch = WatchStatus(
        revision="rev-1-0-0", started_at="2026-03-01T12:09:00Z", until="2026-03-01T12:12:00Z", verifies="rev-1-1-0"
    )
    words = " ".join(render_status(md(verifying), NOW).split())
    assert "checking known-good revision rev-1-0-0 for a shared outage that rolled back rev-1-1-0" in words, words


WATCHED = {**ANALYSIS, "postPromotion": {"duration": "10m"}}


@dataclass
class ByRevision(FakePrometheus):
    """Every check reads `bad` on the pods of revision `bad_revision`, and a healthy value on any other."""

    bad_revision: str = ""
    bad: float = 0.3

    def measure(self, planned: PlannedCheck) -> Measurement:
        healthy = super().measure(planned)
        return replace(healthy, value=self.bad if self.bad_revision in planned.query else healthy.value)


def degraded_after_promotion(prometheus: FakePrometheus, **dependency_hold: Any) -> Cluster:
    """2.0.0 promoted and watched, 1.0.0 its known-good; `prometheus` from then on; back on 1.0.0."""
    watched = {**WATCHED, "dependencyHold": dependency_hold} if dependency_hold else WATCHED
    cluster = serving("1.0.0", analysis=watched)
    cluster.set_spec(spec_for("2.0.0", analysis=watched))
    cluster.run_until(lambda s: s.watch is not None and s.stable is not None and s.stable.version == "2.0.0", "2.0.0")
    if isinstance(prometheus, ByRevision):
        prometheus.bad_revision = cluster.status.stable.revision  # type: ignore[union-attr]
    cluster.prometheus = prometheus
    # With one version serving nothing tells a shared outage from a regression: rolled back, cause Model.
    failed = cluster.run_until(lambda s: s.rejected is not None, "post-promotion failure")
    rejected, rollout = failed.status.rejected, failed.status.rollout
    assert rejected is not None and (rejected.reason, rejected.cause) == ("PostPromotionAnalysisFailed", "Model")
    assert rollout is not None and (rollout.kind, rollout.target.version) == ("Rollback", "1.0.0"), rollout
    cluster.run_until(lambda s: s.rollout is None, "back on 1.0.0")
    return cluster


def test_a_shared_outage_after_promotion_is_found_on_the_known_good_and_the_version_comes_back() -> None:
    cluster = degraded_after_promotion(FakePrometheus(value=0.3, stable_value=0.3))  # every version reads 0.3
    again = cluster.run_until(lambda s: s.rollout is not None, "the known-good version measured on the same traffic")
    found = [e for e in again.events if e.reason == "SharedOutageAfterPromotion"]
    assert len(found) == 1 and found[0].type == "Warning", again.events
    assert "known-good version 1.0.0 breaks check error-rate too" in found[0].message, found[0].message
    assert "0.3 is above the maximum 0.01" in found[0].message and "(cause Dependency)" in found[0].message
    rolled_back = [h for h in again.status.history if h.outcome == "RolledBack"]
    assert [(h.version, h.cause) for h in rolled_back] == [("2.0.0", "Dependency")], "the record is corrected"
    rollout = again.status.rollout
    assert rollout is not None and (rollout.kind, rollout.target.version) == ("Canary", "2.0.0"), rollout
    assert again.status.rejected is None and again.status.serving_version == "1.0.0"

    # The outage goes on: the canary beside stable is held for it, then promoted once it is over.
    held = cluster.run_until(lambda s: s.phase == "Holding", "the canary held by the same outage")
    assert held.status.rollout is not None and held.status.rollout.cause == "Dependency", held.status.message
    cluster.prometheus = FakePrometheus(value=0.001, stable_value=0.001)
    done = cluster.run_until(lambda s: s.phase == "Ready" and s.serving_version == "2.0.0", "2.0.0 back")
    assert done.status.rejected is None and [h.outcome for h in done.status.history][-1] == "Promoted"


def test_a_regression_after_promotion_stays_the_versions_own_when_the_known_good_is_healthy() -> None:
    cluster = degraded_after_promotion(ByRevision())  # only 2.0.0's pods read 0.3
    verified = cluster.run_until(lambda s: s.watch is None, "the known-good version measured healthy")
    rejected = verified.status.rejected
    assert rejected is not None and (rejected.version, rejected.cause) == ("2.0.0", "Model"), rejected
    assert verified.status.history[-2].cause == "Model" and verified.status.rollout is None
    assert "SharedOutageAfterPromotion" not in reasons(cluster.events), reasons(cluster.events)
    for _ in range(5):
        assert cluster.reconcile().status.rollout is None, "2.0.0 stays rejected until a new version or a retry"


def test_with_the_dependency_hold_disabled_the_known_good_is_not_checked_after_a_rollback() -> None:
    cluster = degraded_after_promotion(FakePrometheus(value=0.3, stable_value=0.3), enabled=False)
    assert cluster.status.watch is None, "nothing is measured after a rollback to known-good"
    for _ in range(5):
        assert cluster.reconcile().status.rollout is None, "the known-good version is never rolled back"
    assert cluster.status.rejected is not None and cluster.status.rejected.cause == "Model"


def test_every_warning_of_a_metrics_outage_names_cause_observability() -> None:
    cluster = unavailable()  # deadline 2m, action Hold
    cluster.run_until(lambda s: s.rollout is not None and s.rollout.paused_reason == "MetricsUnavailable", "held")
    warnings = [e for e in cluster.events if e.reason == "MetricsUnavailable"]
    assert len(warnings) == 2, f"one when metrics go, one at the deadline: {warnings}"
    assert warnings[0].message.startswith("metrics unavailable (cause Observability): cannot measure"), warnings[0]
    assert "(cause Observability): no usable metrics" in warnings[1].message, warnings[1]
