"""kopf wiring, and the only module that imports kopf. Every pass goes through reconciler.

Level-triggered from a watch-fed cache (kopf indexes), woken when something is due: the watches
only fill the cache and mark objects changed; one scheduler task runs the passes. No kopf timers,
so kopf keeps no finalizer and no state on the objects. Events are posted by adapters/events.py,
not kopf.event, so nothing here needs kopf's handler context.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from rollguard import metrics
from rollguard.adapters.events import EventPoster
from rollguard.adapters.gateway import GROUP as ROUTE_GROUP
from rollguard.adapters.gateway import PLURAL as ROUTE_PLURAL
from rollguard.adapters.gateway import VERSION as ROUTE_VERSION
from rollguard.adapters.kube import Kube, load_config
from rollguard.adapters.notify import Notifier
from rollguard.adapters.prometheus import Prometheus
from rollguard.cache import Cache
from rollguard.core import naming
from rollguard.reconciler import Context, reconcile
from rollguard.scheduler import Key, Scheduler
from rollguard.settings import Settings

SETTINGS = Settings()
MANAGED = {naming.LABEL_MANAGED_BY: "rollguard"}


class _NoDiffBase(kopf.DiffBaseStorage):
    """No on.create/on.update handlers, so nothing to diff: kopf's default deep-copies every watched body
    to build its "essence" (kopf/_cogs/configs/diffbase.py, build), at every event of every object."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    settings.posting.level = 100  # kopf's own per-handler events are noise next to ours
    # Objects from older versions carry this finalizer; with no handler needing one, kopf removes it once.
    settings.persistence.finalizer = f"{naming.GROUP}/finalizer"
    settings.watching.server_timeout = 300
    settings.persistence.diffbase_storage = _NoDiffBase()
    prometheus = Prometheus(SETTINGS) if SETTINGS.prometheus_url else None
    kube = Kube(threads=SETTINGS.max_concurrent_reconciles)  # a worker thread per pass that may run at once
    # Its own connections: posting Events never waits for, nor crowds out, a pass's requests.
    memo.events = EventPoster.for_api(load_config(EventPoster.WORKERS))
    memo.ctx = Context(kube=kube, prometheus=prometheus, post_event=memo.events.post, pod_policy=SETTINGS.pod_policy())
    memo.ctx.notifier = Notifier.from_settings(SETTINGS) if SETTINGS.notifications_endpoints else None
    memo.ctx.cache = Cache()
    # kopf hands every handler its indexes (empty until listed, then updated in place); passes are only
    # asked for by the watch handlers below, which kopf holds until every index was listed once.
    memo.ctx.cache.bind(kwargs)

    async def run_pass(key: Key) -> float | None:
        return await reconcile(memo.ctx, key[0], key[1])

    memo.scheduler = Scheduler(run_pass, SETTINGS.max_concurrent_reconciles, SETTINGS.resync_seconds)
    memo.scheduler_task = asyncio.create_task(memo.scheduler.run(), name="rollguard scheduler")
    metrics.LEADER.set(1)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    metrics.LEADER.set(0)
    task = getattr(memo, "scheduler_task", None)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    events = getattr(memo, "events", None)
    if events is not None:
        await events.close()
    notifier = getattr(getattr(memo, "ctx", None), "notifier", None)
    if notifier is not None:
        await notifier.close()


# -- the cache: raw JSON as the watches deliver it, keyed by the ModelDeployment it belongs to ------
@kopf.index(naming.GROUP, naming.VERSION, naming.PLURAL)
def model_deployment_index(body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
    return {(body.metadata["namespace"], body.metadata["name"]): dict(body)}


def _child(body: kopf.Body) -> dict[Key, dict[str, Any]] | None:
    parent = body.metadata.labels.get(naming.LABEL_MD)
    return {(body.metadata["namespace"], parent): dict(body)} if parent else None


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
def deployment_index(body: kopf.Body, **_: Any) -> Any:
    return _child(body)


@kopf.index("", "v1", "services", labels=MANAGED)
def service_index(body: kopf.Body, **_: Any) -> Any:
    return _child(body)


@kopf.index("policy", "v1", "poddisruptionbudgets", labels=MANAGED)
def disruption_budget_index(body: kopf.Body, **_: Any) -> Any:
    return _child(body)


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED)
def autoscaler_index(body: kopf.Body, **_: Any) -> Any:
    return _child(body)


# The user's HTTPRoutes; without the Gateway API CRDs kopf watches nothing here (and logs one warning).
@kopf.index(ROUTE_GROUP, ROUTE_VERSION, ROUTE_PLURAL)
def route_index(body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
    return {(body.metadata["namespace"], body.metadata["name"]): dict(body)}


# -- the triggers: a change marks the owning ModelDeployment; the scheduler runs its pass -----------
@kopf.on.event(naming.GROUP, naming.VERSION, naming.PLURAL)
async def on_model_deployment(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    meta = event["object"]["metadata"]
    key = (meta["namespace"], meta["name"])
    if event["type"] == "DELETED":
        memo.scheduler.forget(key)
        memo.ctx.cache.forget(*key)
    elif memo.ctx.cache.echo(event["object"]):
        metrics.WATCH_ECHOES.inc()  # our own status patch coming back: the pass that wrote it decided on it
    else:
        memo.scheduler.changed(key)


def _on_child(event: kopf.RawEvent, memo: kopf.Memo) -> None:
    meta = event["object"]["metadata"]
    parent = (meta.get("labels") or {}).get(naming.LABEL_MD)
    if parent and memo.ctx.cache.model_deployment(meta["namespace"], parent) is not None:
        memo.scheduler.changed((meta["namespace"], parent))


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
async def on_deployment(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _on_child(event, memo)


@kopf.on.event("", "v1", "services", labels=MANAGED)
async def on_service(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _on_child(event, memo)


@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=MANAGED)
async def on_disruption_budget(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _on_child(event, memo)


@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED)
async def on_autoscaler(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _on_child(event, memo)


@kopf.on.event(ROUTE_GROUP, ROUTE_VERSION, ROUTE_PLURAL)
async def on_route(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    meta = event["object"]["metadata"]
    for body in memo.ctx.cache.model_deployments(meta["namespace"]):
        routing = ((body.get("spec") or {}).get("strategy") or {}).get("canary") or {}
        if ((routing.get("trafficRouting") or {}).get("httpRoute") or {}).get("name") == meta["name"]:
            memo.scheduler.changed((meta["namespace"], body["metadata"]["name"]))
