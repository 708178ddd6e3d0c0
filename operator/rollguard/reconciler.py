"""One reconcile pass: read -> (measure) -> decide -> apply children -> one status patch -> events.

Called by the kopf handlers; knows the adapters, holds no decision logic of its own.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
import urllib3
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from rollguard import announcer, backoff, cache, metrics
from rollguard.adapters.gateway import HTTPRouteRouter
from rollguard.adapters.kube import Kube, NotOwnedError, contains, describe_owner, owned_by
from rollguard.adapters.notify import Notifier
from rollguard.adapters.prometheus import MetricsProvider, PrometheusBadQueryError, PrometheusQueryError
from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import CheckResult, ModelDeploymentStatus
from rollguard.core import actions, blocked, builders, clock, naming, notify, plan, policy, reads, schedule
from rollguard.core.analysis import Answer, QueryFailure, judge
from rollguard.core.analysis import measurement as measure_of
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
    pod_policy: policy.PodPolicy = field(default_factory=policy.PodPolicy)
    holds: backoff.Holds = field(default_factory=backoff.Holds)
    cache: cache.Cache | None = None  # the watch-fed cache; None reads from the API server (tools, tests)
    announced: set[tuple[str, str]] = field(default_factory=set)  # objects re-announced since this start
    notifier: Notifier | None = None  # webhooks to the platform's endpoints (settings); None: none defined
    follow_ups: dict[tuple[str, str], int] = field(default_factory=dict)  # passes in a row that changed status

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
    async def value(query: str | None) -> Answer:
        if query is None:
            return None, None
        try:
            return await prometheus.scalar(query), None
        except PrometheusBadQueryError as error:
            return None, QueryFailure(str(error), refused=True)
        except PrometheusQueryError as error:
            return None, QueryFailure(str(error))

    async def one(check: plan.PlannedCheck) -> CheckResult:
        current, samples, stable = await asyncio.gather(
            value(check.query), value(check.samples_query), value(check.stable_query)
        )
        sampled = check.samples_query is not None
        if check.stable_evidence_only and stable[1] is not None:
            stable = None, None  # only evidence of a shared outage: without it the canary is judged alone
        measurement = measure_of(check.check.name, check.query, current, samples, stable, sampled)
        before = next((r for r in previous if r.name == check.check.name), None)
        return judge(check.check, measurement, before, now_iso)

    started = time.perf_counter()
    results = list(await asyncio.gather(*(one(check) for check in planned)))
    metrics.ANALYSIS_SECONDS.observe(time.perf_counter() - started)
    return results


def _children(
    owner: builders.Owner, spec: ModelDeploymentSpec, decision: Decision, pod_policy: policy.PodPolicy
) -> list[dict[str, Any]]:
    children = [builders.deployment(owner, spec, w.ref, w.replicas, w.role, pod_policy) for w in decision.workloads]
    canary = spec.strategy.canary
    routed = canary is not None and canary.traffic_routing.type == "GatewayAPI"
    roles = {w.role: w.ref.revision for w in decision.workloads}
    stable_id = roles.get("stable", roles.get("canary"))
    # Behind a router, the model's own Service reaches only stable pods: the route does the split.
    # While the fallback serves, every Service of the model selects its pods instead (no pod restarts).
    to_fallback = decision.fallback is not None and decision.fallback.active
    children.append(
        builders.service(owner, spec.runtime.port, rollout_id=stable_id if routed else None, fallback=to_fallback)
    )
    if routed:
        for role in ("stable", "canary"):
            rollout_id = roles.get(role, stable_id)
            name = naming.role_service_name(owner.name, role)
            children.append(
                builders.service(owner, spec.runtime.port, name=name, rollout_id=rollout_id, fallback=to_fallback)
            )
    if spec.disruption_budget.enabled:
        children.append(builders.disruption_budget(owner, decision.min_available))
    stable = decision.status.stable
    if spec.autoscaling is not None and stable is not None:
        children.append(builders.autoscaler(owner, spec, stable.revision))
    fallback = decision.fallback
    if fallback is not None:
        children.append(builders.fallback_deployment(owner, spec, fallback.ref, fallback.replicas, pod_policy))
    return children


async def _fallback_live(
    ctx: Context, namespace: str, name: str, owner_uid: str, declared: bool
) -> dict[str, Any] | None:
    """The Deployment <name>-fallback if this ModelDeployment owns it; read from the API server only when
    spec.fallback is declared (without a cache), so an object without one costs no request."""
    fallback_name = naming.fallback_name(name)
    if ctx.cache is not None:
        found = ctx.cache.child("Deployment", namespace, name, fallback_name)
    elif declared:
        metadata = {"name": fallback_name, "namespace": namespace}
        found = await ctx.kube.run(ctx.kube.read, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata})
    else:
        found = None
    return found if found is not None and owned_by(found, owner_uid) else None


def _unready(deployment: dict[str, Any]) -> bool:
    wanted = int((deployment.get("spec") or {}).get("replicas") or 0)
    return int((deployment.get("status") or {}).get("readyReplicas") or 0) < wanted


def _failure_of(kube: Kube, namespace: str, md_name: str) -> Any:
    return lambda revision: kube._failure(namespace, md_name, revision)


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
    metrics.FALLBACK_ACTIVE.labels(namespace, name).set(1 if status.fallback and status.fallback.active else 0)
    announcer.count(namespace, name, status, events)


def _check_limits(namespace: str, name: str, spec: ModelDeploymentSpec) -> None:
    for check in spec.analysis.metrics:
        bounds = check.threshold_range
        for bound, value in (("min", bounds.min if bounds else None), ("max", bounds.max if bounds else None)):
            if value is not None:
                metrics.CHECK_LIMIT.labels(namespace, name, check.name, bound).set(value)
    for gate in spec.analysis.drift:
        metrics.CHECK_LIMIT.labels(namespace, name, gate.name, "max").set(gate.max_score)


def _transient(error: Exception) -> bool:
    """An outage (API server or network), not the object's fault: kopf retries it as before."""
    if isinstance(error, ApiException):
        return error.status in (0, 409, 429) or error.status >= 500
    return isinstance(error, (urllib3.exceptions.HTTPError, OSError))


def _namespace_terminating(error: Exception) -> bool:
    """The API server refuses new objects in a namespace being deleted: the pass just stops."""
    return isinstance(error, ApiException) and error.status == 403 and "being terminated" in str(error.body or "")


def _deleted_meanwhile(error: Exception, name: str) -> bool:
    """The object (or its namespace) was deleted after the pass read it from the cache: nothing to do."""
    if not isinstance(error, ApiException) or error.status != 404:
        return False
    try:
        details = json.loads(error.body or "{}").get("details") or {}
    except ValueError:
        return False
    kind = details.get("kind")
    return kind == "namespaces" or (kind == naming.PLURAL and details.get("name") == name)


async def reconcile(ctx: Context, namespace: str, name: str) -> float | None:
    """One pass; returns in how many seconds the object next needs one though nothing changes (None: never)."""
    async with ctx.lock(namespace, name):
        started = time.perf_counter()
        key = (namespace, name)
        try:
            if ctx.cache is not None:
                body = ctx.cache.model_deployment(namespace, name)
            else:
                body = await ctx.kube.run(ctx.kube.get_model_deployment, namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return None
            fingerprint = backoff.fingerprint(body)
            hold = ctx.holds.holds.get(key)
            if ctx.holds.holding(key, fingerprint, time.monotonic()) and hold is not None:
                return hold.until - time.monotonic()
            try:
                due = await _reconcile(ctx, body)
                if due is True:
                    return ctx.holds.fail(key, fingerprint, time.monotonic()).delay_seconds
                if ctx.holds.clear(key):
                    metrics.QUARANTINED.labels(namespace, name).set(0)
                return None if due is False else (due - datetime.now(UTC)).total_seconds()
            except Exception as error:
                if _namespace_terminating(error) or _deleted_meanwhile(error, name):
                    log.debug("deleted or terminating, pass stopped", namespace=namespace, name=name)
                    return None
                metrics.RECONCILE_ERRORS.labels(namespace, name).inc()
                if _transient(error):
                    raise
                hold = ctx.holds.fail(key, fingerprint, time.monotonic())
                await _quarantine(ctx, body, error, hold)
                return hold.delay_seconds
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)


async def _quarantine(ctx: Context, body: dict[str, Any], error: Exception, hold: backoff.Hold) -> None:
    """A pass that raised is retried with back-off, never in a silent loop: status and Event where
    they can be written, a log line (with the stack trace) and a metric always."""
    meta = body["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], int(meta.get("generation", 0))
    metrics.QUARANTINED.labels(namespace, name).set(1)
    message = (
        f"reconcile failed ({type(error).__name__}: {str(error)[:500]}); retrying in {hold.delay_seconds:.0f}s "
        "or as soon as the object changes"
    )
    log.error(
        "reconcile failed, object quarantined", namespace=namespace, name=name, generation=generation, exc_info=error
    )
    old: dict[str, Any] = body["status"] if isinstance(body.get("status"), dict) else {}
    now_iso = clock.iso(datetime.now(UTC))
    before = {c.get("type"): c for c in old.get("conditions") or [] if isinstance(c, dict)}
    conditions = [c for type_, c in before.items() if type_ not in ("Ready", "Stalled")]
    for type_, truth in (("Ready", "False"), ("Stalled", "True")):
        previous = before.get(type_) or {}
        since = previous.get("lastTransitionTime") if previous.get("status") == truth else None
        conditions.append(
            {"type": type_, "status": truth, "reason": "ReconcileError", "message": message}
            | {"lastTransitionTime": since or now_iso, "observedGeneration": generation}
        )
    patch = {"phase": "Failed", "message": message, "conditions": conditions, "observedGeneration": generation}
    try:
        await ctx.kube.run(ctx.kube.patch_status, namespace, name, patch)
        if hold.failures == 1:
            ctx.post_event(body, Event("Warning", "ReconcileError", message))
    except Exception:
        log.exception("cannot write the quarantined object's status", namespace=namespace, name=name)


async def _reconcile(ctx: Context, body: dict[str, Any]) -> bool | datetime:
    """One pass over a live object; True when the API server refused a child (back off), else when the
    object's next pass is due (False: only on a change)."""
    kube = ctx.kube
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    generation = int(meta.get("generation", 0))
    bound = log.bind(namespace=namespace, name=name, generation=generation)
    old_status = body.get("status") or {}
    try:
        spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        await _invalid(ctx, body, old_status, generation, error)
        return False
    status = ModelDeploymentStatus.model_validate(old_status)
    rollout_id = status.rollout.target.revision if status.rollout else (status.stable.revision if status.stable else "")
    bound = bound.bind(rollout_id=rollout_id)
    router = HTTPRouteRouter(kube)
    canary = spec.strategy.canary
    route_name = canary.traffic_routing.http_route.name if canary and canary.traffic_routing.http_route else None
    if ctx.cache is not None:
        deployments = ctx.cache.children("Deployment", namespace, name)
        # Pods are read only to say why a revision is not ready, and only once a message can say it.
        if any(_unready(d) for d in deployments) and reads.wants_failure_reason(spec, status, datetime.now(UTC)):
            revisions, live = await kube.run(
                cache.revisions, deployments, meta["uid"], _failure_of(kube, namespace, name)
            )
        else:
            revisions, live = cache.revisions(deployments, meta["uid"], lambda _: None)
        route = ctx.cache.route(namespace, route_name) if route_name else None
    else:
        revisions, live = await kube.run(kube.revisions, namespace, name, meta["uid"])
        route = await kube.run(router.get, namespace, route_name) if route_name else None
    route_missing = bool(route_name) and route is None
    fallback_live = await _fallback_live(ctx, namespace, name, meta["uid"], spec.fallback is not None)
    now = datetime.now(UTC)
    now_iso = clock.iso(now)
    await announcer.reannounce(ctx, body, status, now, bound)
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
    confirmation = None
    gate = notify.gate_due(spec, status, now, paused) if ctx.notifier is not None else None
    if gate is not None and ctx.notifier is not None:
        confirmation = await ctx.notifier.confirm(gate, notify.confirm_request(namespace, name, status, now_iso))
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
            pod_policy=ctx.pod_policy,
            fallback_ready=int(((fallback_live or {}).get("status") or {}).get("readyReplicas") or 0),
            notification_catalog=ctx.notifier.catalog if ctx.notifier is not None else notify.NO_ENDPOINTS,
            confirmation=confirmation,
        )
    )
    blocker = None
    if not decision.invalid:
        owner = builders.Owner(name, namespace, meta["uid"])
        children = _children(owner, spec, decision, ctx.pod_policy)
        retire_kinds = [] if spec.disruption_budget.enabled else [("policy/v1", "PodDisruptionBudget")]
        retire_kinds += [("autoscaling/v2", "HorizontalPodAutoscaler")] if spec.autoscaling is None else []
        blocker = await _write_children(ctx, owner, children, live, decision.keep_revisions, retire_kinds, bound)
        if blocker is None and spec.fallback is None and (fallback_live is not None or ctx.cache is None):
            fallback_name = naming.fallback_name(name)  # spec.fallback removed: its warm Deployment goes
            await kube.run(kube.delete_if_exists, "apps/v1", "Deployment", namespace, fallback_name, meta["uid"])
        if blocker is None and route is not None and decision.route_weights is not None:
            stable_weight, canary_weight = decision.route_weights
            weights = {
                naming.role_service_name(name, "stable"): stable_weight,
                naming.role_service_name(name, "canary"): canary_weight,
            }
            try:
                await kube.run(router.set_weights, route, weights)
            except ApiException as error:
                blocker = _refusal(f"HTTPRoute {namespace}/{route_name}", error)
                if blocker is None:
                    raise
    if blocker is not None:
        reason, message = blocker
        bound.warning("children not written", reason=reason, detail=message)
        before = ModelDeploymentStatus.model_validate(old_status).conditions
        decision.events += blocked.block(decision.status, before, reason, message, generation, now_iso)
    new_status = decision.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    patch = merge_patch(old_status, new_status)
    if patch is not None:
        written = await kube.run(kube.patch_status, namespace, name, patch)
        if ctx.cache is not None:
            ctx.cache.wrote(written)  # the next pass decides on this status, even before the watch delivers it
        bound.debug("status patched", patch=patch)
        announcer.crash_for_test(decision.events)
    for event in decision.events:
        (bound.warning if event.type == "Warning" else bound.info)(
            event.message, reason=event.reason, phase=decision.status.phase, evidence=_evidence(decision, event)
        )
        ctx.post_event(body, event)
    if ctx.notifier is not None and not decision.invalid:
        ctx.notifier.announce(namespace, name, spec, decision.status, decision.events, now)
    _record_metrics(namespace, name, decision.status, decision.events)
    _check_limits(namespace, name, spec)
    if blocker is not None and blocker[0] == "ChildRejected":
        return True
    if _follow_up(ctx, (namespace, name), changed=patch is not None and not set(patch) <= BOOKKEEPING):
        return now
    return schedule.next_due(spec, decision.status, now, paused) or False


MAX_FOLLOW_UPS = 3
BOOKKEEPING = {"observedGeneration", "conditions", "message"}  # status that no decision reads back


def _follow_up(ctx: Context, key: tuple[str, str], changed: bool) -> bool:
    """A pass that changed status (e.g. the last step passed: now Promoting) is followed by another at once,
    deciding on the new state: nothing else would wake it, as the watch's echo of our own status patch is
    skipped (handlers.py) and no child need change. Bounded, so a status that changes every pass cannot spin."""
    if not changed:
        ctx.follow_ups.pop(key, None)
        return False
    ctx.follow_ups[key] = ctx.follow_ups.get(key, 0) + 1
    if ctx.follow_ups[key] > MAX_FOLLOW_UPS:
        ctx.follow_ups.pop(key, None)
        return False
    return True


def _refusal(what: str, error: ApiException) -> tuple[str, str] | None:
    """A refusal by the API server (4xx, not a retried conflict) as ChildRejected; None for outages."""
    if _transient(error) or _namespace_terminating(error) or not 400 <= error.status < 500:
        return None
    if _deleted_meanwhile(error, ""):  # the namespace is gone: the pass stops quietly, nothing to report
        return None
    try:
        detail = json.loads(error.body or "{}").get("message") or error.reason
    except ValueError:
        detail = error.body or error.reason
    return "ChildRejected", f"{what} refused by the API server ({error.status} {error.reason}): {detail}"


async def _write_children(
    ctx: Context,
    owner: builders.Owner,
    children: list[dict[str, Any]],
    live: dict[str, dict[str, Any]],
    keep_revisions: set[str],
    retire_kinds: list[tuple[str, str]],
    bound: Any,
) -> tuple[str, str] | None:
    """Applies the children and deletes retired ones; returns (reason, message) when it could not.

    A child the watch-fed cache does not hold is created with a create-only apply, which the API
    server refuses when the name is taken (then it is read once), instead of a read before every
    create. If any name belongs to something this ModelDeployment does not own, nothing more is
    written (NameConflict), and Deployments, which start pods, are written last so a taken name
    stops them. The first refusal stops the pass (ChildRejected).
    """
    kube, namespace = ctx.kube, owner.namespace
    current: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    conflicts: list[str] = []
    for manifest in children:
        revision = manifest["metadata"]["labels"].get(naming.LABEL_ROLLOUT_ID)
        found = live.get(revision) if manifest["kind"] == "Deployment" and revision else None
        if found is None and ctx.cache is not None:
            found = ctx.cache.child(manifest["kind"], namespace, owner.name, manifest["metadata"]["name"])
        elif found is None:  # no cache (tools, tests): read what it would have held
            found = await kube.run(kube.read, manifest)
        if found is not None and not owned_by(found, owner.uid):
            child = manifest["metadata"]["name"]
            conflicts.append(str(NotOwnedError(manifest["kind"], namespace, child, describe_owner(found))))
        current.append((manifest, found))
    if conflicts:
        return "NameConflict", "; ".join(conflicts)
    current.sort(key=lambda item: item[0]["kind"] == "Deployment")
    what = ""
    try:
        for index, (manifest, found) in enumerate(current):
            what = f"{manifest['kind']} {namespace}/{manifest['metadata']['name']}"
            if found is not None and contains(found, manifest):
                continue  # already as desired (found is ours, checked above): no worker thread for a no-op
            try:
                applied = await kube.run(kube.apply, manifest, owner.uid, found)
            except NotOwnedError as error:  # taken by an object the cache does not hold
                return "NameConflict", "; ".join([str(error), *await _taken(ctx, owner, current[index + 1 :])])
            if applied:
                bound.info("applied", kind=manifest["kind"], child=manifest["metadata"]["name"])
        for revision in set(live) - keep_revisions:
            retired = naming.deployment_name(owner.name, revision)
            what = f"deleting Deployment {namespace}/{retired}"
            await kube.run(kube.delete_deployment, namespace, retired, live[revision]["metadata"]["uid"])
        for api_version, kind in retire_kinds:
            cached = ctx.cache.child(kind, namespace, owner.name, owner.name) if ctx.cache is not None else None
            if ctx.cache is not None and cached is None:
                continue  # none exists (the cache holds every labelled one): nothing to read or delete
            what = f"deleting {kind} {namespace}/{owner.name}"
            await kube.run(kube.delete_if_exists, api_version, kind, namespace, owner.name, owner.uid, cached)
    except NotOwnedError as error:  # the name was taken between the read and the write
        return "NameConflict", str(error)
    except ApiException as error:
        refusal = _refusal(what, error)
        if refusal is None:
            raise
        return refusal
    return None


async def _taken(
    ctx: Context, owner: builders.Owner, rest: list[tuple[dict[str, Any], dict[str, Any] | None]]
) -> list[str]:
    """The other taken names among children not written yet, read (not written) to name them all at once."""
    taken = []
    for manifest, known in rest:
        found = known if known is not None else await ctx.kube.run(ctx.kube.read, manifest)
        if found is not None and not owned_by(found, owner.uid):
            kind, name = manifest["kind"], manifest["metadata"]["name"]
            taken.append(str(NotOwnedError(kind, owner.namespace, name, describe_owner(found))))
    return taken


def _evidence(decision: Decision, event: Event) -> dict[str, Any] | None:
    fallback = decision.status.fallback
    if event.reason == "FallbackActivated" and fallback is not None:
        return fallback.model_dump(mode="json", by_alias=True, exclude_none=True)
    rejected = decision.status.rejected
    if event.reason == "RolledBack" and rejected is not None:
        return rejected.model_dump(mode="json", by_alias=True, exclude_none=True)
    rollout = decision.status.rollout
    if event.type == "Warning" and rollout is not None and rollout.cause is not None:
        # A hold's evidence: its cause and each check's canary and stable values this round.
        checks = [
            {"check": c.name, "phase": c.phase, "value": c.value, "stableValue": c.stable_value, "limit": c.limit}
            for c in rollout.checks
        ]
        return {"cause": rollout.cause, "checks": checks}
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
