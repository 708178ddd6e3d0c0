"""Metric verdicts: free functions with explicit limits, each explained by value, limit and query.

"Cannot measure" (query error, no data) is kept apart from "measured bad": the first holds the
rollout, only the second counts toward a rollback. A query Prometheus refuses ("Invalid") is a
third kind: the spec's fault, which holds the rollout until the spec changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from rollguard.api.spec import DriftGate, MetricCheck
from rollguard.api.status import CheckPhase, CheckResult

RoundVerdict = Literal["Passed", "Failed", "Inconclusive", "Unavailable", "Invalid"]


@dataclass(frozen=True)
class QueryFailure:
    """Why one query gave no number; `refused` when Prometheus refused the query itself (HTTP 400/422)."""

    message: str
    refused: bool = False


Answer = tuple[float | None, QueryFailure | None]


@dataclass(frozen=True)
class Measurement:
    """What Prometheus said for one check in one round (None = no data).

    `error` is why the value could not be read; `samples_error` / `stable_error` why the sample
    count or the stable side could not: either makes the round "cannot measure", never judged.
    `refused` names the query Prometheus refused (its text is in the error), if any.
    """

    name: str
    query: str
    value: float | None = None
    samples: float | None = None
    stable_value: float | None = None
    error: str | None = None
    samples_error: str | None = None
    stable_error: str | None = None
    refused: str | None = None
    samples_queried: bool = False


def measurement(
    name: str, query: str, current: Answer, samples: Answer, stable: Answer, samples_queried: bool
) -> Measurement:
    """One check's three answers (value, sample count, stable side) as a Measurement."""
    answers = {"value": current, "sample-count": samples, "stable-side": stable}
    refused = next((which for which, (_, failure) in answers.items() if failure and failure.refused), None)
    return Measurement(
        name,
        query,
        value=current[0],
        samples=samples[0],
        stable_value=stable[0],
        error=current[1].message if current[1] else None,
        samples_error=samples[1].message if samples[1] else None,
        stable_error=stable[1].message if stable[1] else None,
        refused=refused,
        samples_queried=samples_queried,
    )


def _clean(value: float | None) -> float | None:
    """NaN and infinities are 'no data', never a number to compare."""
    return None if value is None or math.isnan(value) or math.isinf(value) else value


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _limit_text(check: MetricCheck | DriftGate, stable_value: float | None) -> str:
    if isinstance(check, DriftGate):
        return f"<= {_fmt(check.max_score)}"
    parts = []
    if check.threshold_range is not None:
        if check.threshold_range.min is not None:
            parts.append(f">= {_fmt(check.threshold_range.min)}")
        if check.threshold_range.max is not None:
            parts.append(f"<= {_fmt(check.threshold_range.max)}")
    if check.relative_to_stable is not None:
        ratio = check.relative_to_stable.max_ratio
        if stable_value is None:
            parts.append(f"<= stable x {_fmt(ratio)}")
        else:
            parts.append(f"<= stable x {_fmt(ratio)} = {_fmt(stable_value * ratio)}")
    return " and ".join(parts)


def _min_samples(check: MetricCheck | DriftGate) -> int:
    return check.min_samples if isinstance(check, DriftGate) else check.min_sample_count


def _evaluate(check: MetricCheck | DriftGate, value: float, stable_value: float | None) -> tuple[CheckPhase, str]:
    if isinstance(check, DriftGate):
        if value > check.max_score:
            return "Failed", f"{check.kind} drift {_fmt(value)} exceeds {_fmt(check.max_score)}"
        return "Passed", f"{check.kind} drift {_fmt(value)} within {_fmt(check.max_score)}"
    bounds = check.threshold_range
    if bounds is not None and bounds.max is not None and value > bounds.max:
        return "Failed", f"{_fmt(value)} is above the maximum {_fmt(bounds.max)}"
    if bounds is not None and bounds.min is not None and value < bounds.min:
        return "Failed", f"{_fmt(value)} is below the minimum {_fmt(bounds.min)}"
    relative = check.relative_to_stable
    if relative is not None:
        if stable_value is None:
            if bounds is None:
                return "Inconclusive", "stable has no data to compare against"
        elif value > stable_value * relative.max_ratio and value > relative.min_absolute:
            return "Failed", (f"{_fmt(value)} is worse than stable {_fmt(stable_value)} x {_fmt(relative.max_ratio)}")
    return "Passed", f"{_fmt(value)} within limits"


def judge(
    check: MetricCheck | DriftGate,
    measurement: Measurement,
    previous: CheckResult | None,
    measured_at: str,
) -> CheckResult:
    """One check's verdict for this round, with its running counters carried forward."""
    value = _clean(measurement.value)
    stable_value = _clean(measurement.stable_value)
    samples = _clean(measurement.samples)
    needed = _min_samples(check)
    phase: CheckPhase
    if measurement.refused is not None:
        reason = {
            "value": measurement.error,
            "sample-count": measurement.samples_error,
            "stable-side": measurement.stable_error,
        }.get(measurement.refused)
        phase, message = "Invalid", f"Prometheus refused the {measurement.refused} query: {reason}"
    elif measurement.error is not None:
        phase, message = "Error", f"query failed: {measurement.error}"
    elif measurement.samples_error is not None:
        phase, message = "Error", f"sample-count query failed, so the check is not judged: {measurement.samples_error}"
    elif measurement.stable_error is not None:
        phase, message = "Error", f"stable-side query failed, so the check is not judged: {measurement.stable_error}"
    elif value is None:
        phase, message = "Error", "no data: the query returned no series (is the model receiving traffic?)"
    elif samples is not None and samples < needed:
        phase = "Inconclusive"
        message = f"only {_fmt(samples)} samples, fewer than the {needed} needed to judge"
    elif samples is None and measurement.samples_queried and needed > 0:
        phase = "Inconclusive"
        message = f"the sample-count query returned no series: no samples, fewer than the {needed} needed to judge"
    else:
        phase, message = _evaluate(check, value, stable_value)
    before = previous or CheckResult(name=check.name)
    return CheckResult(
        name=check.name,
        kind="drift" if isinstance(check, DriftGate) else "metric",
        phase=phase,
        value=value,
        stable_value=stable_value,
        samples=samples,
        limit=_limit_text(check, stable_value),
        query=measurement.query,
        message=message,
        successes=before.successes + (phase == "Passed"),
        failures=before.failures + (phase == "Failed"),
        inconclusive=before.inconclusive + (phase == "Inconclusive"),
        errors=before.errors + (phase in ("Error", "Invalid")),
        consecutive_errors=before.consecutive_errors + 1 if phase == "Error" else 0,
        measured_at=measured_at,
    )


def round_verdict(results: list[CheckResult]) -> RoundVerdict:
    """Measured bad beats an invalid query beats cannot-measure beats not-enough-data beats pass."""
    phases = {result.phase for result in results}
    if "Failed" in phases:
        return "Failed"
    if "Invalid" in phases:
        return "Invalid"
    if "Error" in phases:
        return "Unavailable"
    if "Inconclusive" in phases:
        return "Inconclusive"
    return "Passed"


def first_failure(results: list[CheckResult]) -> CheckResult | None:
    return next((result for result in results if result.phase == "Failed"), None)


def invalid_checks(results: list[CheckResult]) -> list[CheckResult]:
    return [result for result in results if result.phase == "Invalid"]
