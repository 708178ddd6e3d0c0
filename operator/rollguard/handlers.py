"""kopf wiring, and the only module that imports kopf. Every handler delegates to reconciler."""

from __future__ import annotations

from typing import Any, cast

import kopf

from rollguard import metrics
from rollguard.adapters.kube import Kube
from rollguard.adapters.prometheus import Prometheus
from rollguard.core import naming
from rollguard.core.facts import Event
from rollguard.reconciler import Context, reconcile
from rollguard.settings import Settings

SETTINGS = Settings()


def _post_event(body: dict[str, Any], event: Event) -> None:
    kopf.event(kopf.Body(cast(kopf.RawBody, body)), type=event.type, reason=event.reason, message=event.message[:1000])


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.level = 100  # kopf's own per-handler events are noise next to ours
    settings.persistence.finalizer = f"{naming.GROUP}/finalizer"
    settings.watching.server_timeout = 300
    prometheus = Prometheus(SETTINGS) if SETTINGS.prometheus_url else None
    memo.ctx = Context(kube=Kube(), prometheus=prometheus, post_event=_post_event)
    metrics.LEADER.set(1)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    metrics.LEADER.set(0)


@kopf.on.event(naming.GROUP, naming.VERSION, naming.PLURAL)
async def on_model_deployment(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    obj = event["object"]
    if event["type"] != "DELETED":
        await reconcile(memo.ctx, obj["metadata"]["namespace"], obj["metadata"]["name"])


@kopf.timer(naming.GROUP, naming.VERSION, naming.PLURAL, interval=SETTINGS.resync_seconds, sharp=True, backoff=5)
async def resync(**kwargs: Any) -> None:
    await reconcile(kwargs["memo"].ctx, kwargs["namespace"], kwargs["name"])


@kopf.on.event("apps", "v1", "deployments", labels={naming.LABEL_MANAGED_BY: "rollguard"})
async def on_child(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    meta = event["object"]["metadata"]
    parent = (meta.get("labels") or {}).get(naming.LABEL_MD)
    if parent:
        await reconcile(memo.ctx, meta["namespace"], parent)
