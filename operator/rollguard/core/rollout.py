"""The rollout state machine: `decide(inputs) -> Decision`, a pure function of spec, status,
what the cluster shows, this round's analysis, and the time.

A restarted operator resumes exactly where it was because every fact it needs is in status.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from rollguard.api.base import duration_seconds
from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import (
    Cause,
    CheckResult,
    HistoryEntry,
    ModelDeploymentStatus,
    Outcome,
    Rejection,
    Retired,
    RevisionRef,
    RolloutKind,
    RolloutStatus,
    WatchStatus,
)
from rollguard.core import actions, analysis, attribution, clock, naming, policy
from rollguard.core.builders import revision_ref
from rollguard.core.facts import Event, RevisionObserved
from rollguard.core.plan import has_checks
from rollguard.core.summary import summarize
from rollguard.core.validation import problems_of


@dataclass(frozen=True)
class Inputs:
    name: str
    namespace: str
    generation: int
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus
    annotations: dict[str, str]
    revisions: dict[str, RevisionObserved]
    now: datetime
    analysis: list[CheckResult] | None = None
    route_missing: bool = False
    metrics_configured: bool = True
    pod_policy: policy.PodPolicy = policy.LOCKED_DOWN


@dataclass(frozen=True)
class Workload:
    """A revision the cluster should run, and with how many replicas (with an HPA: its current count)."""

    ref: RevisionRef
    replicas: int
    role: Literal["stable", "canary"]


@dataclass
class Decision:
    status: ModelDeploymentStatus
    workloads: list[Workload] = field(default_factory=list)
    keep_revisions: set[str] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    route_weights: tuple[int, int] | None = None
    invalid: list[str] = field(default_factory=list)
    invalid_reason: str = "InvalidSpec"


def canary_replicas(total: int, weight: int) -> int:
    """Canary pods for a step at `weight`%: ceil(total x weight / 100), at least one.

    Stable keeps all `total` pods until promotion (capacity never dips), so a rollout costs at
    most `total` extra pods, which matters for GPU models. Without a traffic router the canary's
    actual share is canary / (canary + stable); status.canaryWeight reports that share.
    """
    if total <= 0:
        return 0
    return min(total, max(1, math.ceil(total * weight / 100)))


class _Pass:
    """The mutable working state of one decide() call: a copy of status, plus what happened."""

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        self.spec = inputs.spec
        self.status = inputs.status.model_copy(deep=True)
        self.now = inputs.now
        self.now_iso = clock.iso(inputs.now)
        self.events: list[Event] = []
        template = naming.template_of(inputs.spec)
        self.desired = revision_ref(template, naming.revision_of(template))
        self.paused = inputs.spec.paused or actions.paused_by_annotation(inputs.annotations)

    # -- facts -------------------------------------------------------------------------------
    def observed(self, revision: str) -> RevisionObserved:
        return self.inputs.revisions.get(revision, RevisionObserved(revision, 0, 0))

    def base_replicas(self) -> int:
        """Replicas the stable version should have (the autoscaler's current count if it owns it)."""
        autoscaling = self.spec.autoscaling
        if autoscaling is None:
            return self.spec.replicas
        stable = self.status.stable
        seen = self.observed(stable.revision).replicas if stable is not None else 0
        current = seen or self.spec.replicas
        return min(max(current, autoscaling.min_replicas), autoscaling.max_replicas)

    def ready_at(self, revision: str, want: int) -> bool:
        seen = self.observed(revision)
        return seen.up_to_date and seen.replicas == want and seen.ready >= want

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    # -- history -----------------------------------------------------------------------------
    def record(
        self, ref: RevisionRef, outcome: Outcome, reason: str, checks: list[CheckResult], cause: Cause | None = None
    ) -> None:
        entry = HistoryEntry(
            revision=ref.revision,
            version=ref.version,
            uri=ref.uri,
            image=ref.image,
            outcome=outcome,
            reason=reason,
            cause=cause,
            at=self.now_iso,
            metrics={c.name: c.value for c in checks if c.value is not None},
            template=ref.template,
        )
        self.status.history = [*self.status.history, entry][-self.spec.history_limit :]

    def last_known_good(self, exclude: str) -> RevisionRef | None:
        rejected = {self.status.rejected.revision} if self.status.rejected else set()
        for entry in reversed(self.status.history):
            if entry.outcome == "Promoted" and entry.revision != exclude and entry.revision not in rejected:
                return revision_ref(entry.template, entry.revision)
        return None

    def known_good_version(self, version: str) -> RevisionRef | None:
        for entry in reversed(self.status.history):
            if entry.outcome == "Promoted" and version in (entry.version, entry.revision):
                return revision_ref(entry.template, entry.revision)
        return None

    # -- transitions ------------------------------------------------------------------------
    def start(self, kind: RolloutKind, target: RevisionRef, reason: str = "") -> None:
        self.status.rollout = RolloutStatus(
            kind=kind, target=target, started_at=self.now_iso, step_started_at=self.now_iso, reason=reason
        )
        self.status.watch = None
        stable = self.status.stable.version if self.status.stable else "nothing"
        self.event("Normal", "RolloutStarted", f"{kind} rollout of version {target.version} started (serving {stable})")

    def retire_stable(self, delay_seconds: float) -> None:
        if self.status.stable is not None:
            retired = [r for r in self.status.retired if r.revision != self.status.stable.revision]
            retired.append(
                Retired(revision=self.status.stable.revision, delete_after=clock.later(self.now, delay_seconds))
            )
            self.status.retired = retired

    def promote(self, rollout: RolloutStatus) -> None:
        target = rollout.target
        previous = self.status.stable
        rolled_back = rollout.kind == "Rollback"
        self.retire_stable(0 if rolled_back else self.scale_down_delay())
        self.status.stable = target
        self.status.rollout = None
        self.status.retired = [r for r in self.status.retired if r.revision != target.revision]
        reason = rollout.reason or {"Initial": "first version", "Rolling": "all replicas ready"}.get(
            rollout.kind, "all steps passed"
        )
        self.record(target, "Promoted", reason, rollout.checks)
        if rolled_back:
            self.event("Normal", "RollbackComplete", f"serving known-good version {target.version} again ({reason})")
        else:
            was = f" (was {previous.version})" if previous else ""
            self.event("Normal", "Promoted", f"version {target.version} promoted to stable{was}: {reason}")
        post = self.spec.analysis.post_promotion
        if post is not None and has_checks(self.spec) and not rolled_back:
            until = (
                None
                if post.continuous or post.duration is None
                else clock.later(self.now, duration_seconds(post.duration))
            )
            self.status.watch = WatchStatus(revision=target.revision, started_at=self.now_iso, until=until)

    def reject(self, target: RevisionRef, reason: str, message: str, evidence: CheckResult | None) -> Cause | None:
        cause = attribution.cause_of(reason, evidence)
        self.status.rejected = Rejection(
            revision=target.revision,
            version=target.version,
            reason=reason,
            message=message,
            check=evidence.name if evidence else None,
            value=evidence.value if evidence else None,
            limit=evidence.limit if evidence else None,
            query=evidence.query if evidence else None,
            cause=cause,
            at=self.now_iso,
        )
        return cause

    def roll_back(self, rollout: RolloutStatus, reason: str, message: str, evidence: CheckResult | None) -> None:
        cause = self.reject(rollout.target, reason, message, evidence)
        self.record(rollout.target, "RolledBack", f"{reason}: {message}", rollout.checks, cause)
        self.status.rollout = None
        serving = self.status.stable.version if self.status.stable else "nothing"
        self.event(
            "Warning",
            "RolledBack",
            f"version {rollout.target.version} rolled back ({reason}, cause {cause}): {message}; serving {serving}",
        )

    def scale_down_delay(self) -> float:
        canary = self.spec.strategy.canary
        return duration_seconds(canary.scale_down_delay) if canary else 30.0


def _apply_actions(p: _Pass) -> None:
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
            _advance(p, rollout, "promoted by a user")
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


def _undo(p: _Pass, version: str) -> None:
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


def _advance(p: _Pass, rollout: RolloutStatus, why: str) -> None:
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


def _choose_rollout(p: _Pass) -> None:
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


def _stop_clocks_while_paused(p: _Pass, rollout: RolloutStatus) -> None:
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


def _deadline_passed(p: _Pass, rollout: RolloutStatus) -> bool:
    return clock.seconds_since(rollout.step_started_at, p.now) > p.spec.progress_deadline_seconds


def _not_ready_message(p: _Pass, rollout: RolloutStatus, want: int) -> str:
    seen = p.observed(rollout.target.revision)
    why = f": {seen.failure}" if seen.failure else ""
    return (
        f"{seen.ready}/{want} pods of version {rollout.target.version} ready after "
        f"{p.spec.progress_deadline_seconds}s (progressDeadlineSeconds){why}"
    )


def _progress_readiness_gated(p: _Pass, rollout: RolloutStatus) -> None:
    want = p.base_replicas()
    if p.ready_at(rollout.target.revision, want):
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


def _take_analysis(p: _Pass, rollout: RolloutStatus, results: list[CheckResult]) -> None:
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


def _shared_outage(p: _Pass, rollout: RolloutStatus, results: list[CheckResult], verdict: str) -> bool:
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


def _step_done(p: _Pass, rollout: RolloutStatus) -> bool:
    assert p.spec.strategy.canary is not None
    step = p.spec.strategy.canary.steps[rollout.step_index]
    if step.pause.duration is None:
        return False  # held until promoted by hand
    if clock.seconds_since(rollout.weight_reached_at, p.now) < duration_seconds(step.pause.duration):
        return False
    return not has_checks(p.spec) or (rollout.last_verdict == "Passed" and rollout.passed_rounds_at_step > 0)


def _progress_canary(p: _Pass, rollout: RolloutStatus) -> None:
    assert p.spec.strategy.canary is not None
    steps = p.spec.strategy.canary.steps
    if rollout.promoting:
        _progress_readiness_gated(p, rollout)
        return
    rollout.step_index = min(rollout.step_index, len(steps) - 1)
    weight = steps[rollout.step_index].weight
    if rollout.weight_reached_at is None:
        if p.ready_at(rollout.target.revision, canary_replicas(p.base_replicas(), weight)):
            rollout.weight_reached_at, rollout.weight = p.now_iso, weight
        elif _deadline_passed(p, rollout) and not p.paused:
            want = canary_replicas(p.base_replicas(), weight)
            p.roll_back(rollout, "ProgressDeadlineExceeded", _not_ready_message(p, rollout, want), None)
        return
    if p.inputs.analysis is not None:
        _take_analysis(p, rollout, p.inputs.analysis)
    limits = p.spec.analysis
    if rollout.failures > limits.failure_limit:
        failed = analysis.first_failure(rollout.checks)
        detail = f"check {failed.name}: {failed.message} (limit {failed.limit})" if failed else ""
        p.roll_back(rollout, "AnalysisFailed", detail or "analysis failed", failed)
        return
    if _dependency_hold_expired(p, rollout):
        return
    unavailable_for = clock.seconds_since(rollout.metrics_unavailable_since, p.now)
    if unavailable_for != float("inf") and unavailable_for > duration_seconds(limits.metrics_unavailable.deadline):
        if limits.metrics_unavailable.action == "Rollback":
            p.roll_back(rollout, "MetricsUnavailable", f"no usable metrics for {int(unavailable_for)}s", None)
            return
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
    if not p.paused and rollout.paused_reason is None and _step_done(p, rollout):
        _advance(p, rollout, "checks passed" if has_checks(p.spec) else "pause elapsed")


def _dependency_hold_expired(p: _Pass, rollout: RolloutStatus) -> bool:
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


def _progress_watch(p: _Pass) -> None:
    watch, stable = p.status.watch, p.status.stable
    if watch is None or stable is None:
        return
    if watch.revision != stable.revision or (watch.until and clock.seconds_since(watch.until, p.now) >= 0):
        p.status.watch = None
        return
    if p.inputs.analysis is None:
        return
    verdict = analysis.round_verdict(p.inputs.analysis)
    watch.checks, watch.last_analysis_at, watch.last_verdict = p.inputs.analysis, p.now_iso, verdict
    watch.failures += verdict == "Failed"
    watch.consecutive_errors = watch.consecutive_errors + 1 if verdict == "Unavailable" else 0
    watch.metrics_unavailable_since = (
        (watch.metrics_unavailable_since or p.now_iso) if verdict == "Unavailable" else None
    )
    if watch.failures > p.spec.analysis.failure_limit:
        failed = analysis.first_failure(watch.checks)
        previous = p.last_known_good(exclude=stable.revision)
        detail = f"check {failed.name}: {failed.message} (limit {failed.limit})" if failed else "analysis failed"
        cause = p.reject(stable, "PostPromotionAnalysisFailed", detail, failed)
        p.record(stable, "RolledBack", f"PostPromotionAnalysisFailed: {detail}", watch.checks, cause)
        p.status.watch = None
        if previous is None:
            p.event(
                "Warning",
                "DegradedNoKnownGood",
                f"stable version {stable.version} degraded (cause {cause}: {detail}) and there is no earlier "
                "known-good version",
            )
            return
        p.event(
            "Warning",
            "RolledBack",
            f"stable version {stable.version} degraded after promotion (cause {cause}: {detail}); "
            f"rolling back to known-good {previous.version}",
        )
        p.start("Rollback", previous, f"stable {stable.version} degraded after promotion: {detail}")


def _workloads(p: _Pass) -> tuple[list[Workload], set[str]]:
    stable, rollout = p.status.stable, p.status.rollout
    workloads: list[Workload] = []
    base = p.base_replicas()
    if stable is not None:
        # With an autoscaler, `base` is its current count, so applying it never fights the HPA.
        workloads.append(Workload(stable, base, "stable"))
    if rollout is not None:
        if rollout.kind == "Canary" and not rollout.promoting and p.spec.strategy.canary is not None:
            step = min(rollout.step_index, len(p.spec.strategy.canary.steps) - 1)
            want = canary_replicas(base, p.spec.strategy.canary.steps[step].weight)
        else:
            want = base
        workloads.append(Workload(rollout.target, want, "canary"))
    keep = {w.ref.revision for w in workloads}
    p.status.retired = [
        r for r in p.status.retired if r.revision not in keep and clock.seconds_since(r.delete_after, p.now) < 0
    ]
    keep |= {r.revision for r in p.status.retired}
    return workloads, keep


def _route_weights(p: _Pass) -> tuple[int, int] | None:
    canary = p.spec.strategy.canary
    if canary is None or canary.traffic_routing.type != "GatewayAPI":
        return None
    rollout = p.status.rollout
    if rollout is None or rollout.kind != "Canary" or (rollout.weight_reached_at is None and not rollout.promoting):
        return (100, 0)
    return (100 - rollout.weight, rollout.weight)


def decide(inputs: Inputs) -> Decision:
    """One reconcile pass: what to run, what status to write, what to tell the user."""
    p = _Pass(inputs)
    invalid = problems_of(inputs.spec, inputs.route_missing, inputs.metrics_configured)
    invalid_reason = "InvalidSpec"
    if not invalid:
        # The platform's pod policy gates every new revision: a refused one is never written.
        invalid = policy.violations(p.desired.template["runtime"], inputs.pod_policy)
        invalid_reason = "PolicyViolation" if invalid else invalid_reason
    if not invalid:
        _apply_actions(p)
        _choose_rollout(p)
        rollout = p.status.rollout
        if rollout is not None:
            _stop_clocks_while_paused(p, rollout)
        if rollout is not None and not p.paused:
            if rollout.kind == "Canary":
                _progress_canary(p, rollout)
            else:
                _progress_readiness_gated(p, rollout)
        elif rollout is None:
            _progress_watch(p)
    workloads, keep = _workloads(p)
    p.events += summarize(
        p.status,
        spec=inputs.spec,
        name=inputs.name,
        generation=inputs.generation,
        desired=p.desired,
        revisions=inputs.revisions,
        base_replicas=p.base_replicas(),
        paused=p.paused,
        invalid=invalid,
        invalid_reason=invalid_reason,
        now_iso=p.now_iso,
    )
    return Decision(
        status=p.status,
        workloads=workloads,
        keep_revisions=keep,
        events=p.events,
        route_weights=_route_weights(p),
        invalid=invalid,
        invalid_reason=invalid_reason,
    )
