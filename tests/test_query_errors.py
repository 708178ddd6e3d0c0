"""What a rollout does when a check cannot be judged: a query Prometheus refuses (the spec's fault),
a failed sample-count or stable-side query, or a sample count that is never reached.

Driven pass by pass through decide() with the simulated cluster of test_rollout; the fake
Prometheus answers each of a check's three queries (value, sample count, stable side) on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rollguard.core import plan
from rollguard.core.analysis import Answer, Measurement, QueryFailure, measurement
from tests.test_rollout import ERROR_RATE, Cluster, condition, kstatus, reach_weight, reasons, serving, spec_for

PARSE_ERROR = 'bad_data: invalid parameter "query": 1:36: parse error: unexpected end of input inside brackets'
REFUSED = QueryFailure(PARSE_ERROR, refused=True)
TIMED_OUT = QueryFailure("Prometheus http://prometheus:9090 answered timeout: query timed out in expression evaluation")
TYPO = {
    "name": "conversion",
    "query": 'sum(rate(orders_total{version="{{ version }}"}[',
    "thresholdRange": {"min": 0.02},
}


@dataclass
class ScriptedPrometheus:
    """Every value query answers `value`; `answers` overrides one query of one check: (check, role)."""

    value: float | None = 0.001
    samples: float | None = 1000.0
    stable: float | None = 0.001
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)

    def measure(self, planned: plan.PlannedCheck) -> Measurement:
        name = planned.check.name

        def answer(role: str, query: str | None, default: float | None) -> Answer:
            if query is None:
                return None, None
            return self.answers.get((name, role), (default, None))

        return measurement(
            name,
            planned.query,
            answer("value", planned.query, self.value),
            answer("samples", planned.samples_query, self.samples),
            answer("stable", planned.stable_query, self.stable),
            planned.samples_query is not None,
        )


def canary_with(analysis: dict[str, Any], prometheus: ScriptedPrometheus) -> Cluster:
    cluster = serving("1.0.0", analysis=analysis)
    cluster.set_spec(spec_for("2.0.0", analysis=analysis))
    reach_weight(cluster)
    cluster.prometheus = prometheus  # type: ignore[assignment]
    return cluster


# -- a query Prometheus refuses -----------------------------------------------------------------
ROLLBACK_WHEN_BLIND = {**ERROR_RATE, "metricsUnavailable": {"deadline": "2m", "action": "Rollback"}}


def test_a_refused_query_stalls_its_canary_at_once_naming_the_field_and_prometheus_reason() -> None:
    analysis = {**ROLLBACK_WHEN_BLIND, "metrics": [*ERROR_RATE["metrics"], TYPO]}
    cluster = canary_with(analysis, ScriptedPrometheus(answers={("conversion", "value"): (None, REFUSED)}))
    held = cluster.run_until(lambda s: cluster.rounds == 1, "first analysis round")
    stalled = condition(held.status, "Stalled")
    assert (held.status.phase, kstatus(held.status), stalled.reason) == (
        "Holding",
        ("False", "False", "True"),
        "InvalidQuery",
    ), f"one refused round is enough: {held.status.phase} {kstatus(held.status)} {stalled}"
    assert f"spec.analysis.metrics[1] (check conversion): Prometheus refused the value query: {PARSE_ERROR}" in (
        stalled.message
    ), stalled.message
    assert PARSE_ERROR in stalled.message, f"Prometheus' own words: {stalled.message}"
    assert held.status.message == stalled.message, "the one-line message says the same"
    metrics = condition(held.status, "MetricsAvailable")
    assert (metrics.status, metrics.reason) == ("False", "InvalidQuery"), metrics
    assert reasons(held.events, "Warning").count("InvalidQuery") == 1, f"one Warning Event: {held.events}"

    for _ in range(60):  # 10 min: far past the 2m metricsUnavailable deadline and progressDeadlineSeconds
        cluster.reconcile()
    rollout = cluster.status.rollout
    assert rollout is not None and rollout.step_index == 0 and cluster.status.rejected is None, (
        f"the canary holds: neither promoted nor rolled back, got {cluster.status.message}"
    )
    assert (rollout.failures, rollout.metrics_unavailable_since) == (0, None), "no counter or deadline clock runs"
    assert cluster.status.canary_weight == 25, f"the canary keeps its traffic share: {cluster.status.canary_weight}"
    assert reasons(cluster.events, "Warning").count("InvalidQuery") == 1, "the Warning is not repeated every round"


def test_fixing_the_query_in_the_spec_resumes_the_same_canary() -> None:
    analysis = {**ERROR_RATE, "metrics": [*ERROR_RATE["metrics"], TYPO]}
    cluster = canary_with(analysis, ScriptedPrometheus(answers={("conversion", "value"): (None, REFUSED)}))
    cluster.run_until(lambda s: s.phase == "Holding", "held on the refused query")
    fixed = {**TYPO, "query": 'sum(rate(orders_total{version="{{ version }}"}[1m]))'}
    cluster.set_spec(spec_for("2.0.0", analysis={**analysis, "metrics": [*ERROR_RATE["metrics"], fixed]}))
    cluster.prometheus = ScriptedPrometheus(answers={("conversion", "value"): (0.5, None)})  # answered, within limits
    cluster.run_until(lambda s: s.rollout is None, "promotion once the query is fixed")
    assert cluster.status.stable and cluster.status.stable.version == "2.0.0", cluster.status.message
    assert condition(cluster.status, "Stalled").status == "False", condition(cluster.status, "Stalled")


def test_a_measured_failure_still_rolls_back_beside_a_refused_query() -> None:
    analysis = {**ERROR_RATE, "failureLimit": 0, "metrics": [*ERROR_RATE["metrics"], TYPO]}
    scripted = ScriptedPrometheus(value=0.5, answers={("conversion", "value"): (None, REFUSED)})
    cluster = canary_with(analysis, scripted)
    done = cluster.run_until(lambda s: s.rollout is None, "rollback")
    assert done.status.rejected is not None and done.status.rejected.check == "error-rate", done.status.rejected


def test_a_refused_post_promotion_query_stalls_the_serving_version_without_rolling_back() -> None:
    analysis = {**ERROR_RATE, "postPromotion": {"continuous": True}, "metrics": [*ERROR_RATE["metrics"], TYPO]}
    cluster = serving("1.0.0", analysis=analysis)
    cluster.prometheus = ScriptedPrometheus(answers={("conversion", "value"): (None, REFUSED)})  # type: ignore[assignment]
    cluster.run_until(lambda s: cluster.rounds >= 3, "three post-promotion rounds")
    stalled = condition(cluster.status, "Stalled")
    assert (cluster.status.phase, stalled.status, stalled.reason) == ("Ready", "True", "InvalidQuery"), stalled
    assert "post-promotion analysis cannot run" in stalled.message and PARSE_ERROR in stalled.message, stalled.message
    assert cluster.status.rejected is None and cluster.status.serving_version == "1.0.0", "1.0.0 keeps serving"


# -- thin data ------------------------------------------------------------------------------------
UNREACHABLE_SAMPLES = {
    **ROLLBACK_WHEN_BLIND,
    "failureLimit": 0,
    "metricsUnavailable": {"deadline": "1h", "action": "Rollback"},
    "metrics": [{**ERROR_RATE["metrics"][0], "minSampleCount": 10_000_000}],
}


def never_judged(cluster: Cluster) -> None:
    for _ in range(60):
        cluster.reconcile()
    rollout = cluster.status.rollout
    assert rollout is not None and rollout.step_index == 0, f"not promoted: {cluster.status.message}"
    assert cluster.status.rejected is None and rollout.failures == 0, f"not rolled back: {cluster.status.rejected}"
    assert cluster.rounds >= 10, f"analysis ran every interval: {cluster.rounds} rounds"


def test_an_unreachable_min_sample_count_never_promotes_a_good_canary() -> None:
    cluster = canary_with(UNREACHABLE_SAMPLES, ScriptedPrometheus(value=0.001, samples=4200.0))
    never_judged(cluster)
    assert cluster.status.rollout and cluster.status.rollout.checks[0].phase == "Inconclusive"
    assert "fewer than the 10000000 needed" in cluster.status.rollout.checks[0].message


def test_an_unreachable_min_sample_count_never_rolls_back_a_bad_canary() -> None:
    never_judged(canary_with(UNREACHABLE_SAMPLES, ScriptedPrometheus(value=0.9, samples=4200.0)))


def test_a_failed_sample_count_query_is_cannot_measure_never_a_verdict() -> None:
    for value in (0.001, 0.9):  # good and bad canaries alike
        failing = ScriptedPrometheus(value=value, answers={("error-rate", "samples"): (None, TIMED_OUT)})
        cluster = canary_with(UNREACHABLE_SAMPLES, failing)
        never_judged(cluster)
        check = cluster.status.rollout.checks[0] if cluster.status.rollout else None
        assert check is not None and check.phase == "Error", check
        assert "sample-count query failed" in check.message and "query timed out" in check.message, check.message
        metrics = condition(cluster.status, "MetricsAvailable")
        assert (metrics.status, metrics.reason) == ("False", "QueryFailed"), metrics


def test_no_sample_series_with_a_minimum_is_inconclusive() -> None:
    cluster = canary_with(UNREACHABLE_SAMPLES, ScriptedPrometheus(value=0.9, samples=None))
    never_judged(cluster)
    check = cluster.status.rollout.checks[0] if cluster.status.rollout else None
    assert check is not None and check.phase == "Inconclusive", check
    assert "sample-count query returned no series" in check.message, check.message


def test_a_failed_stable_side_query_is_cannot_measure_never_a_verdict() -> None:
    relative = {
        **ERROR_RATE,
        "failureLimit": 0,
        "metrics": [{"name": "vs-stable", "template": "error-rate", "relativeToStable": {"maxRatio": 1.2}}],
    }
    failing = ScriptedPrometheus(value=0.9, answers={("vs-stable", "stable"): (None, TIMED_OUT)})
    cluster = canary_with(relative, failing)
    never_judged(cluster)
    check = cluster.status.rollout.checks[0] if cluster.status.rollout else None
    assert check is not None and check.phase == "Error", check
    assert "stable-side query failed" in check.message, check.message
