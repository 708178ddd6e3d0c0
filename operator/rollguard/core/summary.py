"""Phase, kstatus conditions, counts and the one-line message, derived at the end of every pass."""

from __future__ import annotations

from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import ModelDeploymentStatus, RevisionRef, RolloutStatus, WatchStatus
from rollguard.core import naming
from rollguard.core.analysis import invalid_checks
from rollguard.core.attribution import cause_of
from rollguard.core.conditions import Truth, get_condition, set_condition
from rollguard.core.facts import Event, RevisionObserved
from rollguard.core.plan import has_checks

HOLD_REASONS = {
    "MetricsUnavailable": "metrics unavailable past analysis.metricsUnavailable.deadline",
    "InconclusiveAnalysis": "too many inconclusive rounds (analysis.inconclusiveLimit)",
    "ProgressDeadlineExceeded": "pods not ready within spec.progressDeadlineSeconds",
    "DependencyOutage": "stable and canary broke the same limits past analysis.dependencyHold.maxDuration",
}


def _rollout_message(rollout: RolloutStatus, spec: ModelDeploymentSpec, stable: RevisionRef | None) -> str:
    serving = f"; serving {stable.version}" if stable else ""
    target = rollout.target.version
    if rollout.kind == "Canary" and spec.strategy.canary is not None:
        steps = spec.strategy.canary.steps
        if rollout.promoting:
            return f"promoting canary {target}: scaling it to full size{serving}"
        step = min(rollout.step_index, len(steps) - 1)
        reached = "" if rollout.weight_reached_at else " (waiting for canary pods)"
        return f"canary {target} at step {step + 1}/{len(steps)}, {steps[step].weight}%{reached}{serving}"
    if rollout.kind == "Rollback":
        return f"rolling back to known-good {target}: {rollout.reason}"
    return f"{rollout.kind.lower()} rollout of {target}: waiting for all pods to be ready{serving}"


def _waiting(spec: ModelDeploymentSpec, rollout: RolloutStatus, name: str) -> tuple[str, str] | None:
    """(reason, text) while the rollout waits on metrics or on a human without being stuck."""
    limits = spec.analysis
    if rollout.dependency_hold_since is not None:
        hold = limits.dependency_hold
        return "DependencyHold", (
            f"stable breaks the same limits as the canary since {rollout.dependency_hold_since} (a shared outage, "
            f"see the DependencyHold Event); resumes when stable recovers; after analysis.dependencyHold.maxDuration "
            f"({hold.max_duration}) it will {'roll back' if hold.action == 'Rollback' else 'hold for a human'}"
        )
    if rollout.metrics_unavailable_since is not None and rollout.consecutive_errors > limits.consecutive_error_limit:
        return "WaitingForMetrics", (
            f"waiting for metrics since {rollout.metrics_unavailable_since}, no counter advances; after "
            f"analysis.metricsUnavailable.deadline ({limits.metrics_unavailable.deadline}) it will "
            f"{'roll back' if limits.metrics_unavailable.action == 'Rollback' else 'hold for a human'}"
        )
    canary = spec.strategy.canary
    if rollout.kind != "Canary" or canary is None or rollout.promoting or rollout.weight_reached_at is None:
        return None
    if rollout.confirmation is not None and canary.confirm_promotion is not None:
        answer = rollout.confirmation.answer or "not asked yet"
        return "AwaitingConfirmation", (
            f"every step passed; promotion waits for a 2xx from endpoint {canary.confirm_promotion.endpoint} "
            f"(strategy.canary.confirmPromotion), asked every analysis.interval; last answer: {answer}"
        )
    step = min(rollout.step_index, len(canary.steps) - 1)
    if canary.steps[step].pause.duration is None:
        return "AwaitingPromotion", f"step {step + 1} waits for a human: `kubectl rollguard promote {name}`"
    return None


def _held(reason: str, text: str) -> str:
    cause = cause_of(reason)
    return f"held (cause {cause}): {text}" if cause else f"held: {text}"


def _refused_queries(spec: ModelDeploymentSpec, tracked: RolloutStatus | WatchStatus | None) -> str | None:
    """What Prometheus refused in the last round, naming each check's field; None when nothing was."""
    if tracked is None or tracked.last_verdict != "Invalid":
        return None
    fields = {c.name: f"spec.analysis.metrics[{i}]" for i, c in enumerate(spec.analysis.metrics)}
    fields |= {g.name: f"spec.analysis.drift[{i}]" for i, g in enumerate(spec.analysis.drift)}
    refused = [
        f"{fields.get(c.name, 'spec.analysis')} (check {c.name}): {c.message}" for c in invalid_checks(tracked.checks)
    ]
    return "; ".join(refused) + "; fix the query in the spec: no analysis can pass until then"


def _metrics_condition(
    spec: ModelDeploymentSpec, tracked: RolloutStatus | WatchStatus | None
) -> tuple[Truth, str, str] | None:
    if not has_checks(spec) or tracked is None or tracked.last_verdict is None:
        return None
    refused = _refused_queries(spec, tracked)
    if refused is not None:
        return "False", "InvalidQuery", f"cannot measure: {refused}"
    if tracked.metrics_unavailable_since is None:
        return "True", "Measured", "the last analysis round got data for every check"
    if tracked.consecutive_errors <= spec.analysis.consecutive_error_limit:
        return None
    broken = next((c for c in tracked.checks if c.phase == "Error"), None)
    detail = f"{broken.name}: {broken.message}" if broken else "no data"
    return (
        "False",
        "QueryFailed",
        (f"cannot measure since {tracked.metrics_unavailable_since} ({detail}); holding, no counter advances"),
    )


def summarize(
    status: ModelDeploymentStatus,
    *,
    spec: ModelDeploymentSpec,
    name: str,
    generation: int,
    desired: RevisionRef,
    revisions: dict[str, RevisionObserved],
    base_replicas: int,
    paused: bool,
    invalid: list[str],
    now_iso: str,
    invalid_reason: str = "InvalidSpec",
) -> list[Event]:
    """Fills phase, conditions and counters in place; returns events for condition changes."""
    events: list[Event] = []
    conditions = status.conditions
    previous_stalled = get_condition(conditions, "Stalled")
    stable, rollout = status.stable, status.rollout
    stable_seen = revisions.get(stable.revision) if stable else None
    stable_ready = bool(stable_seen and stable_seen.ready >= base_replicas)
    rejected = status.rejected if status.rejected and status.rejected.revision == desired.revision else None

    ready: tuple[Truth, str, str]
    reconciling: tuple[Truth, str, str] = ("False", "Idle", "nothing to roll out")
    stalled: tuple[Truth, str, str] = ("False", "Progressing", "no blocker")
    if invalid:
        message = "; ".join(invalid)
        status.phase = "Failed"
        ready = ("False", invalid_reason, f"spec cannot be applied: {message}")
        stalled = ("True", invalid_reason, message)
        if previous_stalled is None or previous_stalled.message != message:
            events.append(Event("Warning", invalid_reason, f"{message} (the running version keeps serving)"))
    elif rollout is not None:
        message = _rollout_message(rollout, spec, stable)
        ready = ("False", "RollingBack" if rollout.kind == "Rollback" else "RolloutInProgress", message)
        refused = _refused_queries(spec, rollout)
        if rollout.paused_reason:
            status.phase = "Holding"
            held = _held(
                rollout.paused_reason, f"{HOLD_REASONS.get(rollout.paused_reason, rollout.paused_reason)}; {message}"
            )
            stalled = ("True", rollout.paused_reason, held)
            message = held
        elif refused is not None:
            status.phase = "Holding"
            held = _held("InvalidQuery", f"invalid query in {refused}; {message}")
            stalled = ("True", "InvalidQuery", held)
            message = held
        elif paused:
            status.phase = "Paused"
            reconciling = ("True", "Paused", f"paused by spec.paused or the rollguard.io/paused annotation; {message}")
        elif (waiting := _waiting(spec, rollout, name)) is not None:
            status.phase = "Holding"
            held = _held(waiting[0], f"{waiting[1]}; {message}")
            reconciling = ("True", waiting[0], held)
            message = held
        else:
            status.phase = "Promoting" if rollout.promoting else "Progressing"
            reconciling = ("True", rollout.kind, message)
        hold_reason = (stalled if stalled[0] == "True" else reconciling)[1] if status.phase == "Holding" else None
        rollout.cause = cause_of(hold_reason) if hold_reason else None
    elif rejected is not None:
        serving = stable.version if stable else "nothing"
        message = (
            f"version {rejected.version} was rolled back ({rejected.reason}"
            f"{f', cause {rejected.cause}' if rejected.cause else ''}: {rejected.message}); serving "
            f"{serving}. Push a new version, or `kubectl rollguard retry {name}`"
        )
        status.phase = "RolledBack"
        ready = ("False", "RolledBack", message)
        stalled = ("True", "RolledBack", message)
    elif paused and (stable is None or stable.revision != desired.revision):
        status.phase = "Paused"
        message = f"paused before rolling out {desired.version}"
        ready = ("False", "Paused", message)
        reconciling = ("True", "Paused", message)
    elif stable is not None and stable_ready:
        status.phase = "Ready"
        message = f"serving {stable.version} on {stable_seen.ready if stable_seen else 0} ready replicas"
        ready = ("True", "Serving", message)
    else:
        status.phase = "Progressing" if stable is not None else "Pending"
        have = stable_seen.ready if stable_seen else 0
        message = f"{have}/{base_replicas} replicas ready"
        ready = ("False", "ScalingUp", message)
        reconciling = ("True", "ScalingUp", message)

    refused_after_promotion = _refused_queries(spec, status.watch) if rollout is None and not invalid else None
    if refused_after_promotion is not None and stalled[0] == "False":
        stalled = (
            "True",
            "InvalidQuery",
            f"post-promotion analysis cannot run: invalid query in {refused_after_promotion}",
        )
        message = f"{message}; {stalled[2]}"
    if stalled[1] == "InvalidQuery" and (
        previous_stalled is None or previous_stalled.reason != "InvalidQuery" or previous_stalled.message != stalled[2]
    ):
        events.append(Event("Warning", "InvalidQuery", stalled[2]))
    status.message = message
    for type_, (truth, reason, text) in (("Ready", ready), ("Reconciling", reconciling), ("Stalled", stalled)):
        conditions = set_condition(conditions, type_, truth, reason, text, generation, now_iso)
    metrics = _metrics_condition(spec, rollout or status.watch)
    if metrics is not None:
        before = get_condition(conditions, "MetricsAvailable")
        conditions = set_condition(conditions, "MetricsAvailable", *metrics, generation, now_iso)
        if metrics[0] == "False" and (before is None or before.status != "False"):
            events.append(
                Event(
                    "Warning", "MetricsUnavailable", f"metrics unavailable (cause {cause_of(metrics[1])}): {metrics[2]}"
                )
            )
        elif metrics[0] == "True" and before is not None and before.status == "False":
            events.append(Event("Normal", "MetricsAvailable", "metrics are back; analysis resumes"))
    status.conditions = conditions
    status.observed_generation = generation
    status.replicas = sum(seen.replicas for seen in revisions.values())
    status.ready_replicas = sum(seen.ready for seen in revisions.values())
    status.selector = f"{naming.LABEL_MD}={name}"
    status.serving_version = stable.version if stable else None
    status.canary_weight = _effective_weight(spec, status, revisions)
    return events


def _effective_weight(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, revisions: dict[str, RevisionObserved]
) -> int:
    """Traffic share of the canary as the cluster routes it now."""
    rollout = status.rollout
    if rollout is None or rollout.kind != "Canary":
        return 0
    canary = spec.strategy.canary
    if canary is not None and canary.traffic_routing.type == "GatewayAPI":
        return rollout.weight if (rollout.weight_reached_at or rollout.promoting) else 0
    canary_ready = revisions[rollout.target.revision].ready if rollout.target.revision in revisions else 0
    stable_ready = (
        revisions[status.stable.revision].ready if status.stable and status.stable.revision in revisions else 0
    )
    total = canary_ready + stable_ready
    return round(100 * canary_ready / total) if total else 0
