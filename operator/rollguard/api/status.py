"""ModelDeployment status: written only by the operator, read by users, kubectl wait and the plugin.

Everything a restarted operator needs to resume a rollout exactly where it was lives here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from rollguard.api.base import StatusModel

Phase = Literal["Pending", "Progressing", "Paused", "Promoting", "Ready", "RolledBack", "Failed", "Holding"]
CheckPhase = Literal["Pending", "Passed", "Failed", "Inconclusive", "Error", "Invalid"]
RolloutKind = Literal["Initial", "Rolling", "Canary", "Rollback"]
Outcome = Literal["Promoted", "RolledBack", "Superseded", "Aborted"]
Cause = Literal["Model", "Data", "Infrastructure", "Configuration", "Observability", "Dependency", "Manual"]
CAUSE_DESCRIPTION = (
    "Whose fault it was: Model (the version measured worse than its limits or stable), Data (a drift gate), "
    "Infrastructure (pods not ready), Configuration (spec, route, query or policy), Observability (metrics "
    "unavailable or too thin), Dependency (stable broke the same limits in the same round), Manual (a user)."
)


class Condition(StatusModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int = 0


class RevisionRef(StatusModel):
    """One servable revision: the model and runtime it was built from, so it can be rebuilt later."""

    revision: str = Field(description="Hash of model+runtime; also the rollout id label on its pods.")
    version: str
    image: str
    uri: str
    template: dict[str, Any] = Field(
        default_factory=dict, description="The spec.model and spec.runtime this revision was built from."
    )


class CheckResult(StatusModel):
    """The latest measurement of one check, with the evidence behind it."""

    name: str
    kind: Literal["metric", "drift"] = "metric"
    phase: CheckPhase = "Pending"
    value: float | None = None
    stable_value: float | None = None
    samples: float | None = None
    limit: str = ""
    query: str = ""
    message: str = ""
    successes: int = 0
    failures: int = 0
    inconclusive: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    measured_at: str | None = None


class Confirmation(StatusModel):
    """The confirm-promotion gate (strategy.canary.confirmPromotion) while every step has passed."""

    requested_at: str = Field(description="When every step had passed and the gate was first due.")
    asked_at: str | None = Field(default=None, description="When the gate was last called.")
    answer: str | None = Field(default=None, description="What the gate last answered (status or error).")


class RolloutStatus(StatusModel):
    """The version being rolled out (a canary, a rolling update, or a rollback to known-good)."""

    kind: RolloutKind
    target: RevisionRef
    started_at: str
    step_index: int = 0
    step_started_at: str | None = None
    weight_reached_at: str | None = None
    weight: int = 0
    promoting: bool = False
    reason: str = ""
    checks: list[CheckResult] = Field(default_factory=list)
    failures: int = 0
    inconclusive: int = 0
    consecutive_errors: int = 0
    passed_rounds_at_step: int = 0
    last_analysis_at: str | None = None
    last_verdict: str | None = None
    metrics_unavailable_since: str | None = None
    paused_reason: str | None = None
    paused_at: str | None = Field(
        default=None, description="When spec.paused or the paused annotation stopped the deadline clocks."
    )
    dependency_hold_since: str | None = Field(
        default=None, description="Since when stable and canary break the same limits (a shared outage): held."
    )
    dependency_recovered_at: str | None = Field(
        default=None, description="When stable stopped breaking them; the hold lasts one more window and interval."
    )
    cause: Cause | None = Field(default=None, description="While phase is Holding: why. " + CAUSE_DESCRIPTION)
    confirmation: Confirmation | None = None


class WatchStatus(StatusModel):
    """Post-promotion watch of the stable version."""

    revision: str
    started_at: str
    until: str | None = None
    checks: list[CheckResult] = Field(default_factory=list)
    failures: int = 0
    consecutive_errors: int = 0
    last_analysis_at: str | None = None
    last_verdict: str | None = None
    metrics_unavailable_since: str | None = None
    verifies: str | None = Field(
        default=None,
        description="After a post-promotion rollback: the rejected revision whose failure this watch checks on the "
        "known-good version (the same check failing here too is a shared outage, cause Dependency). Never rolls back.",
    )


class Rejection(StatusModel):
    """A version the operator rolled back; the same spec is not retried until it changes (or `retry`)."""

    revision: str
    version: str
    reason: str
    message: str
    check: str | None = None
    value: float | None = None
    limit: str | None = None
    query: str | None = None
    cause: Cause | None = Field(default=None, description=CAUSE_DESCRIPTION)
    at: str


class HistoryEntry(StatusModel):
    """The known-good registry: every version that served, with its outcome and evidence."""

    revision: str
    version: str
    uri: str
    image: str
    outcome: Outcome
    reason: str = ""
    cause: Cause | None = Field(default=None, description="For a rollback: " + CAUSE_DESCRIPTION)
    kind: RolloutKind | None = Field(
        default=None,
        description="For a promotion: the rollout that promoted it (Rollback: back to a known-good version).",
    )
    at: str
    metrics: dict[str, float] = Field(default_factory=dict, description="Check values at promotion/rollback.")
    template: dict[str, Any] = Field(default_factory=dict)


class Retired(StatusModel):
    revision: str
    delete_after: str


class FallbackStatus(StatusModel):
    """spec.fallback: whether it serves the model's traffic now, and why."""

    version: str = Field(description="The fallback model's version (spec.fallback.model.version).")
    revision: str = Field(description="Hash of the fallback's model+runtime; its pods' rollout id.")
    ready_replicas: int = Field(default=0, description="Ready pods of the Deployment <name>-fallback.")
    active: bool = Field(default=False, description="True while the fallback's pods get the model's traffic.")
    since: str | None = Field(
        default=None, description="When it last took the traffic (while active) or gave it back (after)."
    )
    reason: str | None = Field(
        default=None,
        description="While active: ServingNotReady (the serving version has no ready pod) or "
        "PostPromotionAnalysisFailed (it failed its post-promotion checks, no known-good version to go back to).",
    )
    cause: Cause | None = Field(default=None, description="While active: " + CAUSE_DESCRIPTION)
    message: str = Field(
        default="",
        description="The last switch's announcement: while active, the evidence and when the traffic comes back; "
        "after, what recovered.",
    )
    unready_since: str | None = Field(
        default=None, description="Since when no pod of the serving version is ready (the activateAfter clock)."
    )


class ModelDeploymentStatus(StatusModel):
    observed_generation: int = 0
    phase: Phase = "Pending"
    message: str = ""
    conditions: list[Condition] = Field(default_factory=list)
    stable: RevisionRef | None = None
    rollout: RolloutStatus | None = None
    watch: WatchStatus | None = None
    rejected: Rejection | None = None
    retired: list[Retired] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    handled_actions: dict[str, str] = Field(default_factory=dict)
    replicas: int = 0
    ready_replicas: int = 0
    canary_weight: int = 0
    selector: str = ""
    serving_version: str | None = None
    fallback: FallbackStatus | None = None
