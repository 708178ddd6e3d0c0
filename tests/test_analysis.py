"""Judging one measurement of one check, and a round's verdict over all checks."""

from __future__ import annotations

import math
from typing import Any

import pytest

from rollguard.api.spec import DriftGate, MetricCheck
from rollguard.api.status import CheckPhase, CheckResult
from rollguard.core.analysis import Measurement, first_failure, judge, round_verdict

AT = "2026-03-01T12:00:00Z"
QUERY = 'sum(rate(model_requests_total{code=~"5.."}[1m]))'


def metric(**fields: Any) -> MetricCheck:
    return MetricCheck.model_validate({"name": "error-rate", "template": "error-rate", **fields})


MAX_1PCT = metric(thresholdRange={"max": 0.01})
RANGE = metric(name="throughput", template="request-rate", thresholdRange={"min": 100, "max": 200})
RELATIVE = metric(relativeToStable={"maxRatio": 1.2})
RELATIVE_FLOOR = metric(relativeToStable={"maxRatio": 1.2, "minAbsolute": 0.005})
RELATIVE_AND_MAX = metric(thresholdRange={"max": 0.05}, relativeToStable={"maxRatio": 1.2})
MIN_SAMPLES = metric(thresholdRange={"max": 0.01}, minSampleCount=50)
DRIFT = DriftGate(name="feature-drift", max_score=0.2)

NAN, INF = math.nan, math.inf


def measure(value: float | None = None, **fields: Any) -> Measurement:
    return Measurement(name="error-rate", query=QUERY, value=value, **fields)


JUDGE_TABLE = [
    # (id, check, measurement, expected phase, message fragment)
    ("below max", MAX_1PCT, measure(0.005), "Passed", "0.005 within limits"),
    ("at max is allowed", MAX_1PCT, measure(0.01), "Passed", "within limits"),
    ("above max", MAX_1PCT, measure(0.02), "Failed", "0.02 is above the maximum 0.01"),
    ("below min", RANGE, measure(50.0), "Failed", "50 is below the minimum 100"),
    ("inside range", RANGE, measure(150.0), "Passed", "within limits"),
    ("above range", RANGE, measure(250.0), "Failed", "above the maximum 200"),
    ("relative within ratio", RELATIVE, measure(0.011, stable_value=0.01), "Passed", "within limits"),
    (
        "relative beyond ratio",
        RELATIVE,
        measure(0.013, stable_value=0.01),
        "Failed",
        "0.013 is worse than stable 0.01 x 1.2",
    ),
    ("stable at zero, canary not", RELATIVE, measure(0.001, stable_value=0.0), "Failed", "worse than stable 0"),
    ("beyond ratio under minAbsolute", RELATIVE_FLOOR, measure(0.004, stable_value=0.001), "Passed", "within"),
    ("at minAbsolute", RELATIVE_FLOOR, measure(0.005, stable_value=0.001), "Passed", "within limits"),
    ("beyond ratio over minAbsolute", RELATIVE_FLOOR, measure(0.006, stable_value=0.001), "Failed", "worse than"),
    ("relative, stable no data", RELATIVE, measure(0.02), "Inconclusive", "stable has no data"),
    ("relative, stable NaN", RELATIVE, measure(0.02, stable_value=NAN), "Inconclusive", "stable has no data"),
    ("stable no data, threshold judges", RELATIVE_AND_MAX, measure(0.02), "Passed", "within limits"),
    ("threshold fails before ratio", RELATIVE_AND_MAX, measure(0.06, stable_value=0.1), "Failed", "above the max"),
    ("no data", MAX_1PCT, measure(None), "Error", "no data"),
    ("NaN is no data", MAX_1PCT, measure(NAN), "Error", "no data"),
    ("infinity is no data", MAX_1PCT, measure(INF), "Error", "no data"),
    ("query error", MAX_1PCT, measure(error="connection refused"), "Error", "query failed: connection refused"),
    ("query error beats a value", MAX_1PCT, measure(0.5, error="timeout"), "Error", "query failed: timeout"),
    ("too few samples", MIN_SAMPLES, measure(0.5, samples=10.0), "Inconclusive", "only 10 samples, fewer than the 50"),
    ("enough samples", MIN_SAMPLES, measure(0.5, samples=50.0), "Failed", "above the maximum"),
    ("sample count unknown", MIN_SAMPLES, measure(0.001), "Passed", "within limits"),
    ("NaN samples are unknown", MIN_SAMPLES, measure(0.001, samples=NAN), "Passed", "within limits"),
    ("drift within", DRIFT, measure(0.1, samples=500.0), "Passed", "feature drift 0.1 within 0.2"),
    ("drift exceeds", DRIFT, measure(0.3, samples=500.0), "Failed", "feature drift 0.3 exceeds 0.2"),
    ("drift too few scored", DRIFT, measure(0.3, samples=99.0), "Inconclusive", "fewer than the 100 needed"),
]


@pytest.mark.parametrize(
    ("check", "measurement", "phase", "fragment"),
    [case[1:] for case in JUDGE_TABLE],
    ids=[case[0] for case in JUDGE_TABLE],
)
def test_judge(check: MetricCheck | DriftGate, measurement: Measurement, phase: CheckPhase, fragment: str) -> None:
    result = judge(check, measurement, None, AT)
    assert result.phase == phase, f"expected {phase}, got {result.phase} ({result.message})"
    assert fragment in result.message, f"message should contain {fragment!r}, got {result.message!r}"


@pytest.mark.parametrize(
    ("check", "stable_value", "limit"),
    [
        (MAX_1PCT, None, "<= 0.01"),
        (RANGE, None, ">= 100 and <= 200"),
        (RELATIVE, 0.01, "<= stable x 1.2 = 0.012"),
        (RELATIVE, None, "<= stable x 1.2"),
        (RELATIVE_AND_MAX, 0.01, "<= 0.05 and <= stable x 1.2 = 0.012"),
        (DRIFT, None, "<= 0.2"),
    ],
)
def test_result_explains_the_limit(check: MetricCheck | DriftGate, stable_value: float | None, limit: str) -> None:
    result = judge(check, measure(0.001, stable_value=stable_value, samples=1000.0), None, AT)
    assert result.limit == limit, f"limit should read {limit!r}, got {result.limit!r}"


def test_result_keeps_the_evidence() -> None:
    result = judge(RELATIVE, measure(0.013, stable_value=0.01, samples=1234.0), None, AT)
    assert (result.name, result.kind, result.query, result.measured_at) == ("error-rate", "metric", QUERY, AT), (
        f"the result should name the check, kind, exact query and time, got {result}"
    )
    assert (result.value, result.stable_value, result.samples) == (0.013, 0.01, 1234.0), f"evidence: {result}"
    drift = judge(DRIFT, measure(0.3, samples=500.0), None, AT)
    assert drift.kind == "drift", f"a drift gate's result should have kind drift, got {drift.kind}"


def test_nan_is_not_stored_as_a_value() -> None:
    result = judge(MAX_1PCT, measure(NAN, stable_value=NAN, samples=NAN), None, AT)
    assert (result.value, result.stable_value, result.samples) == (None, None, None), (
        f"NaN must not reach status (it is not valid JSON), got {result}"
    )


def test_counters_are_carried_forward() -> None:
    previous = CheckResult(
        name="error-rate", successes=4, failures=1, inconclusive=2, errors=3, consecutive_errors=2, phase="Error"
    )
    cases: list[tuple[Measurement, dict[str, int]]] = [
        (measure(0.001), {"successes": 5, "failures": 1, "inconclusive": 2, "errors": 3, "consecutive_errors": 0}),
        (measure(0.5), {"successes": 4, "failures": 2, "inconclusive": 2, "errors": 3, "consecutive_errors": 0}),
        (measure(None), {"successes": 4, "failures": 1, "inconclusive": 2, "errors": 4, "consecutive_errors": 3}),
    ]
    for measurement, expected in cases:
        result = judge(MAX_1PCT, measurement, previous, AT)
        counters = {key: getattr(result, key) for key in expected}
        assert counters == expected, f"after a {result.phase} round counters should be {expected}, got {counters}"
    inconclusive = judge(MIN_SAMPLES, measure(0.001, samples=1.0), previous, AT)
    assert (inconclusive.inconclusive, inconclusive.consecutive_errors) == (3, 0), (
        f"an inconclusive round counts once and ends the error streak, got {inconclusive}"
    )


def test_first_measurement_starts_counters_at_one() -> None:
    result = judge(MAX_1PCT, measure(None), None, AT)
    assert (result.errors, result.consecutive_errors, result.successes) == (1, 1, 0), f"got {result}"


def results(*phases: CheckPhase) -> list[CheckResult]:
    return [CheckResult(name=f"c{i}", phase=phase) for i, phase in enumerate(phases)]


@pytest.mark.parametrize(
    ("phases", "verdict"),
    [
        (("Passed", "Passed"), "Passed"),
        (("Passed", "Inconclusive"), "Inconclusive"),
        (("Inconclusive", "Error"), "Unavailable"),
        (("Passed", "Error"), "Unavailable"),
        (("Error", "Failed"), "Failed"),
        (("Inconclusive", "Failed", "Error", "Passed"), "Failed"),
        (("Failed",), "Failed"),
    ],
)
def test_round_verdict_precedence(phases: tuple[CheckPhase, ...], verdict: str) -> None:
    assert round_verdict(results(*phases)) == verdict, (
        f"{phases} should give {verdict}: Failed > Unavailable > Inconclusive > Passed"
    )


def test_first_failure_names_the_failing_check() -> None:
    found = first_failure(results("Passed", "Error", "Failed", "Failed"))
    assert found is not None and found.name == "c2", f"the first Failed result should be the evidence, got {found}"
    assert first_failure(results("Passed", "Error")) is None, "no Failed result means no failure evidence"
