"""GitOps health, computed by the tools' own code on live ModelDeployments in every state.

One namespace holds one ModelDeployment per state, driven there by the real operator; each test
reads them back from the API server and asks the tool: Argo CD's Lua check (the chart's
``files/argocd-health.lua`` in Lua 5.1, as gopher-lua runs it) and Flux's kstatus
(sigs.k8s.io/cli-utils, built from its Go module). What a user of each tool would see is asserted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from e2e import gitops, md
from e2e.rollguard_process import RollguardProcess
from e2e.test_canary import ERROR_RATE, canary, start_stable
from e2e.waiting import wait_for

LONG_PAUSE = [{"weight": 50, "pause": {"duration": "30m"}}]  # holds the canary at step 1 for the test
MANUAL_STEP = [{"weight": 50, "pause": {}}]  # no duration: waits for `kubectl rollguard promote`
INVALID_QUERY = {"name": "broken", "query": "sum(rate(model_requests_total[1m]", "thresholdRange": {"max": 1}}

# state -> (expected Argo CD health, expected kstatus status)
EXPECTED = {
    "ready": ("Healthy", "Current"),
    "canary": ("Progressing", "InProgress"),
    "awaiting-promotion": ("Suspended", "InProgress"),
    "paused": ("Suspended", "InProgress"),
    "rolled-back": ("Degraded", "Failed"),
    "invalid-query": ("Degraded", "Failed"),
}


def _phase(api: client.ApiClient, ns: str, name: str, phase: str, check: Callable[[dict[str, Any]], bool]) -> None:
    md.wait_status(
        api,
        ns,
        name,
        lambda s: s.get("phase") == phase and check(s),
        90,
        f"{ns}/{name} phase {phase}",
    )


@pytest.fixture
def live_objects(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> Iterator[dict[str, dict[str, Any]]]:
    """Each state's ModelDeployment, reached through the operator; yields a reader of live objects."""
    cp, ns = control_plane, namespace
    for name in EXPECTED:
        start_stable(cp, kube_api, ns, canary(name, "1.0.0"))

    md.apply(cp, ns, canary("canary", "1.1.0", steps=LONG_PAUSE))
    md.apply(cp, ns, canary("awaiting-promotion", "1.1.0", steps=MANUAL_STEP))
    paused = canary("paused", "1.1.0")
    paused["spec"]["paused"] = True
    md.apply(cp, ns, paused)
    md.apply(cp, ns, canary("rolled-back", "2.0.0", env={"SIMULATED_ERROR_RATE": "0.3"}))
    md.apply(cp, ns, canary("invalid-query", "1.1.0", metrics=[ERROR_RATE, INVALID_QUERY]))

    _phase(kube_api, ns, "ready", "Ready", lambda s: md.has_condition(s, "Ready"))
    _phase(kube_api, ns, "canary", "Progressing", lambda s: (s.get("rollout") or {}).get("weightReachedAt"))
    _phase(kube_api, ns, "awaiting-promotion", "Holding", lambda s: md.has_condition(s, "Reconciling"))
    _phase(kube_api, ns, "paused", "Paused", lambda s: s.get("servingVersion") == "1.0.0")
    _phase(kube_api, ns, "rolled-back", "RolledBack", lambda s: md.has_condition(s, "Stalled"))
    _phase(kube_api, ns, "invalid-query", "Holding", lambda s: md.has_condition(s, "Stalled"))

    def read() -> dict[str, dict[str, Any]]:
        return {name: md.get(kube_api, ns, name) or {} for name in EXPECTED}

    yield read()


def _summary(objects: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: f"{obj['status']['phase']}: {obj['status'].get('message', '')[:80]}" for name, obj in objects.items()}


def test_argocd_lua_health_and_kstatus_of_live_model_deployments(live_objects: dict[str, dict[str, Any]]) -> None:
    argocd = {name: gitops.argocd_health(obj) for name, obj in live_objects.items()}
    assert {name: h["status"] for name, h in argocd.items()} == {n: e[0] for n, e in EXPECTED.items()}, (
        f"Argo CD health per state: {argocd}; objects: {_summary(live_objects)}"
    )
    assert "1.0.0" in argocd["rolled-back"]["message"] and "RolledBack" in argocd["rolled-back"]["message"], (
        "Argo CD's message says why it is Degraded and what serves"
    )
    assert "InvalidQuery" in argocd["invalid-query"]["message"], argocd["invalid-query"]
    assert "promote" in argocd["awaiting-promotion"]["message"], "a Suspended canary says how to go on"

    flux = gitops.kstatus(list(live_objects.values()))
    assert {name: s["status"] for name, s in flux.items()} == {n: e[1] for n, e in EXPECTED.items()}, (
        f"kstatus per state: {flux}; objects: {_summary(live_objects)}"
    )
    assert "rolled back" in flux["rolled-back"]["message"], f"kstatus carries the Stalled message: {flux}"


def test_a_spec_change_not_yet_observed_is_progressing_for_both_tools(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, start_rollguard: Callable[..., RollguardProcess]
) -> None:
    operator = start_rollguard()
    start_stable(control_plane, kube_api, namespace, canary("lagging", "1.0.0"))
    operator.stop()  # nobody observes the next generation
    md.apply(control_plane, namespace, canary("lagging", "1.1.0"))
    live = wait_for(
        lambda: md.get(kube_api, namespace, "lagging"),
        10,
        message="generation bumped past status.observedGeneration",
        until=lambda o: o is not None and o["metadata"]["generation"] > o["status"]["observedGeneration"],
    )
    assert md.has_condition(live["status"], "Ready"), "the old status still says Ready, for the old generation"
    assert gitops.argocd_health(live)["status"] == "Progressing"
    assert gitops.kstatus([live])["lagging"]["status"] == "InProgress"
