"""Decisions survive a kill: a pass's Event, log line and counter come after its status patch, so
the first pass after a start re-announces the newest recent decision in status, and the fallback's last
switch, if no Event shows it."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from rollguard import metrics
from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import ModelDeploymentStatus
from rollguard.core import clock
from rollguard.core.facts import Event
from rollguard.core.rollout.announce import decided, fallback_switch

# Older decisions were surely announced, or are stale news; one Events list per object per start.
REANNOUNCE_WITHIN_SECONDS = 15 * 60
# Test-only: exit right after the status patch of a pass that decided this Event reason (e2e/test_kill_safe.py).
_CRASH_AFTER_STATUS_PATCH = os.environ.get("ROLLGUARD_TEST_CRASH_AFTER_STATUS_PATCH")


def crash_for_test(events: list[Event]) -> None:
    if _CRASH_AFTER_STATUS_PATCH and any(event.reason == _CRASH_AFTER_STATUS_PATCH for event in events):
        os._exit(137)  # as SIGKILL would: no cleanup, kopf's queued Events never posted


def count(namespace: str, name: str, status: ModelDeploymentStatus, events: list[Event]) -> None:
    """rollguard_promotions_total and rollguard_rollbacks_total for the decisions announced."""
    for event in events:
        if event.reason == "Promoted":
            metrics.PROMOTIONS.labels(namespace, name).inc()
        elif event.reason == "RolledBack":
            rejected = status.rejected
            reason = rejected.reason if rejected else "Unknown"
            failed, cause = (rejected.check or "", rejected.cause or "") if rejected else ("", "")
            metrics.ROLLBACKS.labels(namespace, name, reason, failed, cause).inc()


async def reannounce(ctx: Any, body: dict[str, Any], status: ModelDeploymentStatus, now: datetime, bound: Any) -> None:
    """Once per object per operator start: announce the newest recent decision, and the fallback's last
    switch, if no Event shows it."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    if key in ctx.announced:
        return
    ctx.announced.add(key)
    for found in (
        decided(status, now, REANNOUNCE_WITHIN_SECONDS),
        fallback_switch(status, now, REANNOUNCE_WITHIN_SECONDS),
    ):
        if found is None:
            continue
        at, event = found
        if await ctx.kube.run(ctx.kube.event_since, meta["namespace"], meta["uid"], event.reason, clock.parse(at)):
            continue
        (bound.warning if event.type == "Warning" else bound.info)(
            event.message,
            reason=event.reason,
            phase=status.phase,
            evidence=_evidence(status, event),
            reannounced=f"decided at {at}; its Event was lost (operator stopped after the status write)",
        )
        ctx.post_event(body, event)
        count(meta["namespace"], meta["name"], status, [event])
        if getattr(ctx, "notifier", None) is not None:  # its webhooks were lost with the Event
            spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})  # already validated by this pass
            ctx.notifier.announce(meta["namespace"], meta["name"], spec, status, [event], now)


def _evidence(status: ModelDeploymentStatus, event: Event) -> dict[str, Any] | None:
    """What the pass's log line carried (reconciler._evidence): the rejection, or the fallback's state."""
    if event.reason == "RolledBack" and status.rejected is not None:
        return status.rejected.model_dump(mode="json", by_alias=True, exclude_none=True)
    if event.reason.startswith("Fallback") and status.fallback is not None:
        return status.fallback.model_dump(mode="json", by_alias=True, exclude_none=True)
    return None
