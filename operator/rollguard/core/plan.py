"""Which checks to query this pass, rendered for the canary (and the stable side, for comparisons)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rollguard.api.spec import DriftGate, MetricCheck, ModelDeploymentSpec
from rollguard.api.status import ModelDeploymentStatus, RevisionRef
from rollguard.core import clock, naming
from rollguard.core.queries import CheckQuery, Target, drift_query, metric_query, render


@dataclass(frozen=True)
class PlannedCheck:
    check: MetricCheck | DriftGate
    query: str
    samples_query: str | None
    stable_query: str | None
    # The stable side is queried only as evidence of a shared outage (dependencyHold), not to judge.
    stable_evidence_only: bool = False


def _target(name: str, namespace: str, ref: RevisionRef, interval: str) -> Target:
    return Target(
        namespace=namespace,
        model=str(ref.template["model"]["name"]),
        version=ref.version,
        deployment=naming.deployment_name(name, ref.revision),
        interval=interval,
        name=name,
    )


def _queries(spec: ModelDeploymentSpec) -> list[tuple[MetricCheck | DriftGate, CheckQuery, str]]:
    analysis = spec.analysis
    found: list[tuple[MetricCheck | DriftGate, CheckQuery, str]] = []
    for check in analysis.metrics:
        found.append((check, metric_query(check, analysis.metric_preset), check.interval or analysis.interval))
    for gate in analysis.drift:
        found.append((gate, drift_query(gate), gate.window))
    return found


def has_checks(spec: ModelDeploymentSpec) -> bool:
    return bool(spec.analysis.metrics or spec.analysis.drift)


def render_all(
    spec: ModelDeploymentSpec, name: str, namespace: str, subject: RevisionRef, baseline: RevisionRef | None
) -> list[PlannedCheck]:
    """Every check rendered for `subject`; comparisons against `baseline` when one is serving."""
    planned = []
    for check, query, window in _queries(spec):
        subject_target = _target(name, namespace, subject, window)
        compare = isinstance(check, MetricCheck) and check.relative_to_stable is not None
        # Stable measured against the same absolute limits tells a shared outage from a bad canary.
        evidence = (
            not compare
            and isinstance(check, MetricCheck)
            and check.threshold_range is not None
            and spec.analysis.dependency_hold.enabled
        )
        stable_query = (
            render(query.value, _target(name, namespace, baseline, window))
            if (compare or evidence) and baseline is not None
            else None
        )
        planned.append(
            PlannedCheck(
                check=check,
                query=render(query.value, subject_target),
                samples_query=render(query.samples, subject_target) if query.samples else None,
                stable_query=stable_query,
                stable_evidence_only=evidence and stable_query is not None,
            )
        )
    return planned


def due(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime, paused: bool
) -> tuple[RevisionRef, RevisionRef | None] | None:
    """(subject, baseline) when an analysis round is due this pass, else None."""
    if not has_checks(spec) or paused:
        return None
    interval = spec.analysis.interval_seconds
    rollout = status.rollout
    if rollout is not None:
        if rollout.kind != "Canary" or rollout.weight_reached_at is None or rollout.paused_reason:
            return None
        since = rollout.last_analysis_at or rollout.weight_reached_at
        if clock.seconds_since(since, now) >= interval:
            return rollout.target, status.stable
        return None
    watch = status.watch
    if watch is not None and status.stable is not None and watch.revision == status.stable.revision:
        since = watch.last_analysis_at or watch.started_at
        if clock.seconds_since(since, now) >= interval:
            return status.stable, None
    return None
