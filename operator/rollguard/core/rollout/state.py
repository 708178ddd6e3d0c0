"""The mutable working state of one pass: a copy of status, plus the transitions every phase shares."""

from __future__ import annotations

from typing import Literal

from rollguard.api.base import duration_seconds
from rollguard.api.status import (
    Cause,
    CheckResult,
    HistoryEntry,
    Outcome,
    Rejection,
    Retired,
    RevisionRef,
    RolloutKind,
    RolloutStatus,
    WatchStatus,
)
from rollguard.core import actions, attribution, clock, naming
from rollguard.core.builders import revision_ref
from rollguard.core.facts import Event, RevisionObserved
from rollguard.core.plan import has_checks
from rollguard.core.rollout import announce
from rollguard.core.rollout.model import Inputs

VERIFICATION_ROUNDS = 5  # inconclusive first rounds (few samples yet) still leave conclusive ones


class Pass:
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
        self,
        ref: RevisionRef,
        outcome: Outcome,
        reason: str,
        checks: list[CheckResult],
        cause: Cause | None = None,
        kind: RolloutKind | None = None,
    ) -> None:
        entry = HistoryEntry(
            revision=ref.revision,
            version=ref.version,
            uri=ref.uri,
            image=ref.image,
            outcome=outcome,
            reason=reason,
            cause=cause,
            kind=kind,
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
        self.record(target, "Promoted", reason, rollout.checks, kind=rollout.kind)
        self.events.append(
            announce.promoted(target.version, reason, previous.version if previous else None, rolled_back)
        )
        post = self.spec.analysis.post_promotion
        if post is not None and has_checks(self.spec) and not rolled_back:
            until = (
                None
                if post.continuous or post.duration is None
                else clock.later(self.now, duration_seconds(post.duration))
            )
            self.status.watch = WatchStatus(revision=target.revision, started_at=self.now_iso, until=until)
        elif rolled_back:
            self.status.watch = self.verification(target)

    def verification(self, known_good: RevisionRef) -> WatchStatus | None:
        """After a post-promotion rollback, a few rounds on the known-good version, never to roll it back: the
        check that rejected the degraded version failing here too is a shared outage (core/rollout/watch.py)."""
        rejected, analysis_ = self.status.rejected, self.spec.analysis
        if rejected is None or rejected.reason != "PostPromotionAnalysisFailed" or rejected.cause != "Model":
            return None
        if not analysis_.dependency_hold.enabled or not has_checks(self.spec):
            return None
        windows = [duration_seconds(check.interval or analysis_.interval) for check in analysis_.metrics]
        # One full query window on the known-good's own traffic, then a few rounds to get a conclusive one.
        seconds = max(windows, default=0.0) + VERIFICATION_ROUNDS * analysis_.interval_seconds
        return WatchStatus(
            revision=known_good.revision,
            started_at=self.now_iso,
            until=clock.later(self.now, seconds),
            verifies=rejected.revision,
        )

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
        self.events.append(announce.rolled_back(rollout.target.version, reason, cause, message, serving))

    def scale_down_delay(self) -> float:
        canary = self.spec.strategy.canary
        return duration_seconds(canary.scale_down_delay) if canary else 30.0


def failure_detail(failed: CheckResult | None) -> str:
    """The rollback message for a failed round: the first failed check against its limit."""
    return f"check {failed.name}: {failed.message} (limit {failed.limit})" if failed else "analysis failed"
