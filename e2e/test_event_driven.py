"""Issue 10, the operator side: event-driven passes from a watch-fed cache, on the real control plane.

What the API server saw is counted by a proxy the operator is pointed at (e2e/api_proxy.py), not by
the operator's own counters.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from e2e import md
from e2e.api_proxy import CountingProxy
from e2e.operator_fixtures import operators
from e2e.rollguard_process import RollguardProcess
from e2e.test_canary import canary
from e2e.waiting import wait_for

LEGACY_FINALIZER = "rollguard.io/finalizer"
IDLE_SECONDS = 20


@pytest.fixture
def proxy(control_plane: Any) -> Iterator[CountingProxy]:
    with CountingProxy(control_plane.api_url) as counting:
        yield counting


@pytest.fixture
def start_proxied(
    control_plane: Any, namespace: str, crd: None, proxy: CountingProxy
) -> Iterator[Callable[..., RollguardProcess]]:
    """Factory: the operator for the test's namespace, talking to the API server through the proxy."""
    kubeconfig = proxy.kubeconfig(control_plane.log_dir / f"kubeconfig-proxied-{namespace}", control_plane.admin_token)
    with operators(control_plane, namespace, "-proxied", kubeconfig) as start:
        yield start


def _rolling(name: str, version: str = "1.0.0") -> dict[str, Any]:
    return md.manifest(name, version=version, replicas=1)


def _serving(api: client.ApiClient, namespace: str, name: str) -> Callable[[], bool]:
    return lambda: md.serving(api, namespace, name, "1.0.0")


def _apply_settled(cp: Any, api: client.ApiClient, namespace: str, name: str) -> None:
    """Applies a one-replica model and waits until it is Ready with nothing in progress."""

    def settled() -> bool:
        status = md.status(api, namespace, name)
        return status.get("phase") == "Ready" and not status.get("rollout") and not status.get("retired")

    md.apply(cp, namespace, _rolling(name))
    wait_for(settled, 60, message=f"{name}: Ready with nothing in progress")


def test_idle_object_costs_no_requests_and_carries_nothing_of_kopf(
    control_plane: Any,
    kube_api: client.ApiClient,
    namespace: str,
    proxy: CountingProxy,
    start_proxied: Callable[..., RollguardProcess],
) -> None:
    operator = start_proxied(ROLLGUARD_RESYNC_SECONDS="1")  # a 1 s safety resync: even then idle costs nothing
    _apply_settled(control_plane, kube_api, namespace, "idle")
    time.sleep(2)  # let the last watch events (our own status patch) arrive before counting starts
    mark = proxy.mark()
    passes_before = operator.metric("rollguard_reconcile_duration_seconds_count")
    time.sleep(IDLE_SECONDS)  # the measurement window itself
    seen = proxy.since(mark)
    writes = [f"{r.method} {r.path}" for r in seen if r.write]
    reads = [f"{r.method} {r.path}" for r in seen if not r.write and not r.watch]
    passes = operator.metric("rollguard_reconcile_duration_seconds_count") - passes_before
    print(f"idle {IDLE_SECONDS}s: {len(seen)} requests at the API server ({len(writes)} writes), {passes:.0f} passes")
    assert not writes, f"an idle ModelDeployment costs no writes at the API server over {IDLE_SECONDS}s: {writes}"
    assert not reads, f"nor reads (passes read the watch cache): {reads}"
    assert passes >= IDLE_SECONDS / 2, f"the 1 s safety resync still ran passes ({passes}), from the cache alone"
    meta = (md.get(kube_api, namespace, "idle") or {})["metadata"]
    assert not meta.get("finalizers"), f"no finalizer on the object: {meta.get('finalizers')}"
    kopf_marks = [key for key in meta.get("annotations") or {} if "kopf" in key]
    assert not kopf_marks, f"kopf keeps no state on the object: {kopf_marks}"


def test_the_operators_own_status_patch_wakes_no_second_pass(
    control_plane: Any,
    kube_api: client.ApiClient,
    namespace: str,
    proxy: CountingProxy,
    start_proxied: Callable[..., RollguardProcess],
) -> None:
    operator = start_proxied(ROLLGUARD_RESYNC_SECONDS="600")  # nothing due: only changes wake a pass
    _apply_settled(control_plane, kube_api, namespace, "echo")
    passes_before = operator.metric("rollguard_reconcile_duration_seconds_count")
    echoes_before = operator.metric("rollguard_watch_echoes_total")
    mark = proxy.mark()
    # A spec change that touches no child: one pass, whose only write is status.observedGeneration.
    generation = md.get(kube_api, namespace, "echo")["metadata"]["generation"] + 1  # type: ignore[index]
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        md.GROUP, md.VERSION, namespace, md.PLURAL, "echo", {"spec": {"analysis": {"interval": "45s"}}}
    )
    wait_for(
        lambda: md.status(kube_api, namespace, "echo").get("observedGeneration") == generation,
        30,
        message=f"the pass for generation {generation} wrote status",
    )
    wait_for(
        lambda: operator.metric("rollguard_watch_echoes_total") > echoes_before,
        30,
        message="the watch delivered the operator's own status patch, and it was recognised as its echo",
    )
    time.sleep(2)  # the measurement window: a pass woken by the echo would run within it
    status_writes = [r for r in proxy.since(mark) if r.write and r.method == "PATCH" and "/status" in r.path]
    passes = operator.metric("rollguard_reconcile_duration_seconds_count") - passes_before
    assert len(status_writes) == 1, f"one status write for the change: {[r.path for r in status_writes]}"
    assert passes == 1, f"one pass for one change; its own status patch coming back woke none ({passes:.0f} ran)"


def test_model_deployment_deletes_with_the_operator_stopped_and_a_legacy_finalizer_is_dropped(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, start_rollguard: Callable[..., RollguardProcess]
) -> None:
    legacy = _rolling("legacy")
    legacy["metadata"]["finalizers"] = [LEGACY_FINALIZER]  # as rollguard <= 0.x left it on every object
    md.apply(control_plane, namespace, legacy)
    operator = start_rollguard()
    md.apply(control_plane, namespace, _rolling("fresh"))
    for name in ("legacy", "fresh"):
        wait_for(_serving(kube_api, namespace, name), 60, message=f"{name} serving 1.0.0")
    wait_for(
        lambda: not (md.get(kube_api, namespace, "legacy") or {})["metadata"].get("finalizers"),
        30,
        message=f"the operator removes the legacy finalizer {LEGACY_FINALIZER} once",
    )
    operator.stop()
    apps = client.AppsV1Api(kube_api)
    for name in ("legacy", "fresh"):
        client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(
            md.GROUP, md.VERSION, namespace, md.PLURAL, name
        )
    wait_for(
        lambda: md.get(kube_api, namespace, "legacy") is None and md.get(kube_api, namespace, "fresh") is None,
        30,
        message="both ModelDeployments gone with the operator stopped (no finalizer holds them)",
    )
    wait_for(
        lambda: not apps.list_namespaced_deployment(namespace).items,
        60,
        message="their Deployments garbage-collected through ownerReferences",
    )


def test_analysis_runs_on_its_own_interval_whatever_the_resync(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, start_rollguard: Callable[..., RollguardProcess]
) -> None:
    start_rollguard(ROLLGUARD_RESYNC_SECONDS="600")
    md.apply(control_plane, namespace, canary("clock", "1.0.0"))
    wait_for(lambda: md.serving(kube_api, namespace, "clock", "1.0.0"), 60, message="1.0.0 serving")
    body = canary("clock", "1.1.0", steps=[{"weight": 50, "pause": {"duration": "5m"}}])
    md.apply(control_plane, namespace, body)
    seen: list[str] = []

    def rounds() -> list[str]:
        rollout = md.status(kube_api, namespace, "clock").get("rollout") or {}
        at = rollout.get("lastAnalysisAt")
        if at and (not seen or seen[-1] != at):
            seen.append(at)
        return seen

    wait_for(rounds, 90, interval=0.2, message="analysis rounds of 1.1.0", until=lambda found: len(found) >= 7)
    moments = [time.mktime(time.strptime(at, "%Y-%m-%dT%H:%M:%SZ")) for at in seen]
    gaps = [later - earlier for earlier, later in itertools.pairwise(moments)]
    assert all(2 <= gap <= 4 for gap in gaps), (
        f"rounds every 3 s (timestamps to the second) with a 600 s resync: {seen}"
    )
    assert sum(gaps) / len(gaps) == pytest.approx(3.0, abs=0.5), f"3 s apart on average: {gaps}"


def test_deleting_a_namespace_of_model_deployments_is_quick_and_quiet(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, start_rollguard: Callable[..., RollguardProcess]
) -> None:
    operator = start_rollguard()
    names = [f"model-{index}" for index in range(10)]
    for name in names:
        md.apply(control_plane, namespace, _rolling(name))
    for name in names:
        wait_for(_serving(kube_api, namespace, name), 60, message=f"{name} serving 1.0.0")
    core = client.CoreV1Api(kube_api)
    started = time.monotonic()
    core.delete_namespace(namespace)

    def gone() -> bool:
        return not any(item.metadata and item.metadata.name == namespace for item in core.list_namespace().items)

    wait_for(gone, 30, message=f"namespace {namespace} and its {len(names)} ModelDeployments gone within 30 s")
    elapsed = time.monotonic() - started
    print(f"namespace with {len(names)} ModelDeployments gone in {elapsed:.1f}s")
    noisy = [
        f"{record.get('level')}: {record.get('event')}"[:300]
        for record in operator.logs()
        if record.get("level") in ("error", "warning", "critical")
        and record.get("logger") != "py.warnings"  # urllib3's unverified-TLS notice (self-signed e2e apiserver)
        and "Unresolved resources" not in str(record.get("event"))  # no Gateway API CRDs in this cluster
    ]
    assert not noisy, f"nothing posted into the terminating namespace, no errors ({elapsed:.1f}s): {noisy}"


def test_a_rollout_moves_on_by_itself_when_only_its_own_status_changed(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, start_rollguard: Callable[..., RollguardProcess]
) -> None:
    """One replica at 50%: the canary already has its full size when the last step passes, so no child changes
    and no clock is due when the rollout turns to Promoting; only the pass's own status change says so."""
    start_rollguard(ROLLGUARD_RESYNC_SECONDS="600")
    md.apply(control_plane, namespace, canary("single", "1.0.0", replicas=1))
    wait_for(lambda: md.serving(kube_api, namespace, "single", "1.0.0"), 60, message="1.0.0 serving")
    md.apply(control_plane, namespace, canary("single", "1.1.0", replicas=1))
    wait_for(
        lambda: md.serving(kube_api, namespace, "single", "1.1.0"),
        60,
        message="1.1.0 promoted with a 600 s resync: the pass that turned it to Promoting is followed by another",
    )
