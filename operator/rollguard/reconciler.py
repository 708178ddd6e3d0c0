"""One reconcile pass: read -> (measure) -> decide -> apply children -> one status patch -> events.

Called by the kopf handlers; knows the adapters, holds no decision logic of its own.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import ValidationError

from rollguard import metrics
from rollguard.adapters.gateway import HTTPRouteRouter
from rollguard.adapters.kube import Kube
from rollguard.adapters.prometheus import MetricsProvider, PrometheusQueryError
from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import CheckResult, ModelDeploymentStatus
from rollguard.core import actions, builders, clock, naming, plan
from rollguard.core.analysis import Measurement, judge
from rollguard.core.conditions import set_condition
from rollguard.core.facts import Event
from rollguard.core.rollout import Decision, Inputs, decide

log = structlog.get_logger("rollguard")


@dataclass
class Context:
    """What the handlers hand in: adapters built at startup, one lock per object."""

    kube: Kube
    prometheus: MetricsProvider | None
    post_event: Any
    locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self.locks.setdefault((namespace, name), asyncio.Lock())


def merge_patch(old: Any, new: Any) -> Any:
    """RFC 7386 merge patch turning `old` into `new` (None deletes a key); None when equal."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None if old == new else new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        else:
            sub = merge_patch(old[key], value)
            if sub is not None or (value is None and old[key] is not None):
                patch[key] = sub
    return patch or None


async def _measure(
    prometheus: MetricsProvider, planned: list[plan.PlannedCheck], previous: list[CheckResult], now_iso: str
) -> list[CheckResult]:
    async def value(query: str | None) -> tuple[float | None, str | None]:
        if query is None:
            return None, None
        try:
            return await prometheus.scalar(query), None
        except PrometheusQueryError as error:
            return None, str(error)

    async def one(check: plan.PlannedCheck) -> CheckResult:
        (current, error), (samples, _), (stable, _) = await asyncio.gather(
            value(check.query), value(check.samples_query), value(check.stable_query)
        )
        measurement = Measurement(check.check.name, check.query, current, samples, stable, error)
        before = next((r for r in previous if r.name == check.check.name), None)
        return judge(check.check, measurement, before, now_iso)

    started = time.perf_counter()
    results = list(await asyncio.gather(*(one(check) for check in planned)))
    metrics.ANALYSIS_SECONDS.observe(time.perf_counter() - started)
    return results


def _children(owner: builders.Owner, spec: ModelDeploymentSpec, decision: Decision) -> list[dict[str, Any]]:
    children = [builders.deployment(owner, spec, w.ref, w.replicas, w.role) for w in decision.workloads]
    canary = spec.strategy.canary
    routed = canary is not None and canary.traffic_routing.type == "GatewayAPI"
    roles = {w.role: w.ref.revision for w in decision.workloads}
    stable_id = roles.get("stable", roles.get("canary"))
    # Behind a router, the model's own Service reaches only stable pods: the route does the split.
    children.append(builders.service(owner, spec.runtime.port, rollout_id=stable_id if routed else None))
    if routed:
        for role in ("stable", "canary"):
            rollout_id = roles.get(role, stable_id)
            name = naming.role_service_name(owner.name, role)
            children.append(builders.service(owner, spec.runtime.port, name=name, rollout_id=rollout_id))
    if spec.disruption_budget.enabled:
        children.append(builders.disruption_budget(owner, spec.disruption_budget.max_unavailable))
    stable = decision.status.stable
    if spec.autoscaling is not None and stable is not None:
        children.append(builders.autoscaler(owner, spec, stable.revision))
    return children


def _tracked_checks(status: ModelDeploymentStatus) -> list[CheckResult]:
    """The checks of the rollout in progress, else of the post-promotion watch."""
    if status.rollout is not None:
        return status.rollout.checks
    return status.watch.checks if status.watch is not None else []


def _record_metrics(namespace: str, name: str, status: ModelDeploymentStatus, events: list[Event]) -> None:
    for phase in ("Pending", "Progressing", "Paused", "Promoting", "Ready", "RolledBack", "Failed", "Holding"):
        metrics.PHASE.labels(namespace, name, phase).set(1 if status.phase == phase else 0)
    metrics.CANARY_WEIGHT.labels(namespace, name).set(status.canary_weight)
    available = next((c for c in status.conditions if c.type == "MetricsAvailable"), None)
    if available is not None:
        metrics.METRICS_AVAILABLE.labels(namespace, name).set(1 if available.status == "True" else 0)
    tracked = _tracked_checks(status)
    for check in tracked:
        if check.value is not None:
            metrics.CHECK_VALUE.labels(namespace, name, check.name).set(check.value)
    for event in events:
        if event.reason == "Promoted":
            metrics.PROMOTIONS.labels(namespace, name).inc()
        elif event.reason == "RolledBack":
            rejected = status.rejected
            reason = rejected.reason if rejected else "Unknown"
            metrics.ROLLBACKS.labels(namespace, name, reason, (rejected.check if rejected else None) or "").inc()


def _check_limits(namespace: str, name: str, spec: ModelDeploymentSpec) -> None:
    for check in spec.analysis.metrics:
        bounds = check.threshold_range
        for bound, value in (("min", bounds.min if bounds else None), ("max", bounds.max if bounds else None)):
            if value is not None:
                metrics.CHECK_LIMIT.labels(namespace, name, check.name, bound).set(value)
    for gate in spec.analysis.drift:
        metrics.CHECK_LIMIT.labels(namespace, name, gate.name, "max").set(gate.max_score)


async def reconcile(ctx: Context, namespace: str, name: str) -> None:
    async with ctx.lock(namespace, name):
        started = time.perf_counter()
        try:
            await _reconcile(ctx, namespace, name)
        except Exception:
            metrics.RECONCILE_ERRORS.labels(namespace, name).inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)


async def _reconcile(ctx: Context, namespace: str, name: str) -> None:
    kube = ctx.kube
    body = await kube.run(kube.get_model_deployment, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    meta = body["metadata"]
    generation = int(meta.get("generation", 0))
    bound = log.bind(namespace=namespace, name=name, generation=generation)
    old_status = body.get("status") or {}
    try:
        spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        await _invalid(ctx, body, old_status, generation, error)
        return
    status = ModelDeploymentStatus.model_validate(old_status)
    rollout_id = status.rollout.target.revision if status.rollout else (status.stable.revision if status.stable else "")
    bound = bound.bind(rollout_id=rollout_id)
    revisions, live = await kube.run(kube.revisions, namespace, name)
    router = HTTPRouteRouter(kube)
    canary = spec.strategy.canary
    route_name = canary.traffic_routing.http_route.name if canary and canary.traffic_routing.http_route else None
    route = await kube.run(router.get, namespace, route_name) if route_name else None
    route_missing = bool(route_name) and route is None
    now = datetime.now(UTC)
    now_iso = clock.iso(now)
    paused = spec.paused or actions.paused_by_annotation(meta.get("annotations") or {})
    results = None
    due = plan.due(spec, status, now, paused)
    if due is not None and ctx.prometheus is not None:
        subject, baseline = due
        planned = plan.render_all(spec, name, namespace, subject, baseline)
        previous = _tracked_checks(status)
        results = await _measure(ctx.prometheus, planned, previous, now_iso)
        for result in results:
            bound.info(
                "check measured",
                check=result.name,
                phase=result.phase,
                value=result.value,
                stable_value=result.stable_value,
                samples=result.samples,
                limit=result.limit,
                query=result.query,
                detail=result.message,
            )
    decision = decide(
        Inputs(
            name=name,
            namespace=namespace,
            generation=generation,
            spec=spec,
            status=status,
            annotations=meta.get("annotations") or {},
            revisions=revisions,
            now=now,
            analysis=results,
            route_missing=route_missing,
            metrics_configured=ctx.prometheus is not None,
        )
    )
    if not decision.invalid:
        owner = builders.Owner(name, namespace, meta["uid"])
        for manifest in _children(owner, spec, decision):
            revision = manifest["metadata"]["labels"].get(naming.LABEL_ROLLOUT_ID)
            known = live.get(revision) if manifest["kind"] == "Deployment" and revision else None
            if await kube.run(kube.apply, manifest, known):
                bound.info("applied", kind=manifest["kind"], child=manifest["metadata"]["name"])
        for revision in set(live) - decision.keep_revisions:
            await kube.run(kube.delete_deployment, namespace, naming.deployment_name(name, revision))
        if not spec.disruption_budget.enabled:
            await kube.run(kube.delete_if_exists, "policy/v1", "PodDisruptionBudget", namespace, name)
        if spec.autoscaling is None:
            await kube.run(kube.delete_if_exists, "autoscaling/v2", "HorizontalPodAutoscaler", namespace, name)
        if route is not None and decision.route_weights is not None:
            stable_weight, canary_weight = decision.route_weights
            weights = {
                naming.role_service_name(name, "stable"): stable_weight,
                naming.role_service_name(name, "canary"): canary_weight,
            }
            await kube.run(router.set_weights, route, weights)
    new_status = decision.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    patch = merge_patch(old_status, new_status)
    if patch is not None:
        await kube.run(kube.patch_status, namespace, name, patch)
        bound.debug("status patched", patch=patch)
    for event in decision.events:
        (bound.warning if event.type == "Warning" else bound.info)(
            event.message, reason=event.reason, phase=decision.status.phase, evidence=_evidence(decision, event)
        )
        ctx.post_event(body, event)
    _record_metrics(namespace, name, decision.status, decision.events)
    _check_limits(namespace, name, spec)


def _evidence(decision: Decision, event: Event) -> dict[str, Any] | None:
    rejected = decision.status.rejected
    if event.reason == "RolledBack" and rejected is not None:
        return rejected.model_dump(mode="json", by_alias=True, exclude_none=True)
    return None


async def _invalid(
    ctx: Context, body: dict[str, Any], old_status: dict[str, Any], generation: int, error: ValidationError
) -> None:
    """A spec the schema let through but the models reject (e.g. an older CRD is installed)."""
    problems = "; ".join(
        f"spec.{'.'.join(str(p) for p in issue['loc'])}: {issue['msg']}" for issue in error.errors()[:5]
    )
    status = ModelDeploymentStatus.model_validate(old_status)
    now_iso = clock.iso(datetime.now(UTC))
    conditions = set_condition(status.conditions, "Stalled", "True", "InvalidSpec", problems, generation, now_iso)
    conditions = set_condition(conditions, "Ready", "False", "InvalidSpec", problems, generation, now_iso)
    status = status.model_copy(
        update={"phase": "Failed", "message": problems, "conditions": conditions, "observed_generation": generation}
    )
    new_status = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    patch = merge_patch(old_status, new_status)
    if patch is not None:
        meta = body["metadata"]
        await ctx.kube.run(ctx.kube.patch_status, meta["namespace"], meta["name"], patch)
        ctx.post_event(body, Event("Warning", "InvalidSpec", problems))
        log.warning("invalid spec", namespace=meta["namespace"], name=meta["name"], problems=problems)
