"""An object that cannot be reconciled is quarantined, visibly and with back-off; every other object goes on."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kubernetes import client

from e2e import md
from e2e.rollguard_process import RollguardProcess
from e2e.waiting import wait_for

ROLLING = {"strategy": {"type": "Rolling"}}
QUARANTINED = "reconcile failed, object quarantined"


def _serving(api: client.ApiClient, namespace: str, name: str, version: str) -> None:
    md.wait_status(
        api,
        namespace,
        name,
        lambda s: s.get("servingVersion") == version and md.has_condition(s, "Ready"),
        60,
        f"{namespace}/{name} serving {version}, Ready=True",
    )


def test_a_pass_that_raises_is_quarantined_with_status_event_trace_metric_and_back_off(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, start_rollguard: Callable[..., RollguardProcess]
) -> None:
    process = start_rollguard(prometheus=False)  # resync every 1 s: without back-off it would fail every second
    for name in ("broken", "healthy"):
        md.apply(control_plane, namespace, md.manifest(name, "1.0.0", replicas=1, **ROLLING))
    for name in ("broken", "healthy"):
        _serving(kube_api, namespace, name, "1.0.0")

    # A stable revision whose stored template no longer builds a pod: every pass over it raises.
    no_model = {"name": None, "version": None, "uri": None}  # merge patch: null removes the key
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object_status(
        md.GROUP, md.VERSION, namespace, md.PLURAL, "broken", {"status": {"stable": {"template": {"model": no_model}}}}
    )
    status = md.wait_status(
        kube_api,
        namespace,
        "broken",
        lambda s: any(c["type"] == "Stalled" and c["reason"] == "ReconcileError" for c in s.get("conditions", [])),
        30,
        "broken: Stalled=True, reason ReconcileError",
    )
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and "ValidationError" in stalled["message"], stalled
    assert "retrying in" in stalled["message"], f"the message says when it is tried again: {stalled['message']}"
    event = wait_for(
        lambda: next((e for e in md.events(kube_api, namespace, "broken") if e.reason == "ReconcileError"), None),
        30,
        message="a ReconcileError Event on broken",
    )
    assert event.type == "Warning"
    assert process.metric("rollguard_quarantined", namespace=namespace, name="broken") == 1

    records = wait_for(
        lambda: [r for r in process.logs() if r.get("event") == QUARANTINED and r.get("name") == "broken"],
        60,
        message="three quarantine log records for broken (5 s, then 10 s of back-off)",
        until=lambda found: len(found) >= 3,
    )
    for record in records:
        trace = record.get("exception", "")
        assert trace.startswith("Traceback (most recent call last)") and "ValidationError" in trace, record
    times = [datetime.fromisoformat(r["timestamp"]) for r in records[:3]]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
    assert gaps[0] >= 4.5 and gaps[1] >= 9.5, f"retries back off (5 s, 10 s) instead of every 1 s resync: {gaps}"

    # Every other object goes on: a new version of its neighbour rolls out.
    md.apply(control_plane, namespace, md.manifest("healthy", "1.1.0", replicas=1, **ROLLING))
    _serving(kube_api, namespace, "healthy", "1.1.0")
    kopf_failures = [r for r in process.logs() if "failed with an exception" in str(r.get("event", ""))]
    assert kopf_failures == [], f"no handler failures reach kopf's retry loop: {kopf_failures[:2]}"
