"""Issue 11 against the real control plane, Prometheus and the simulator: each failure carries its
cause, and a shared outage (stable and canary degrading together) holds the canary instead of
rolling it back."""

from __future__ import annotations

import re
from typing import Any

from kubernetes import client

from e2e import md
from e2e.rollguard_process import RollguardProcess
from e2e.test_canary import canary, rolled_back, start_stable
from e2e.waiting import wait_for

ERROR_OVERRIDE = "simulator.rollguard.io/SIMULATED_ERROR_RATE"


def _set_error_rate(api: client.ApiClient, namespace: str, name: str, rate: str | None, version: str = "") -> int:
    """Annotates the model's pods (of one version, or all) so the simulator serves `rate` errors; None removes it."""
    core = client.CoreV1Api(api)
    selector = f"rollguard.io/model-deployment={name}" + (f",rollguard.io/version={version}" if version else "")
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    for pod in pods:
        core.patch_namespaced_pod(pod.metadata.name, namespace, {"metadata": {"annotations": {ERROR_OVERRIDE: rate}}})
    return len(pods)


def _warning(api: client.ApiClient, namespace: str, name: str, reason: str) -> client.CoreV1Event:
    found: list[client.CoreV1Event] = wait_for(
        lambda: [e for e in md.events(api, namespace, name) if e.reason == reason],
        15,
        message=f"a {reason} Event (kopf posts Events in the background)",
    )
    return found[0]


def test_stable_and_canary_degrading_together_hold_the_canary_then_it_is_promoted(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    # A long step pause: the canary cannot pass its step before its own pods are annotated.
    steps = [{"weight": 50, "pause": {"duration": "20s"}}]
    start_stable(control_plane, kube_api, namespace, canary("shared", "1.0.0", steps=steps))
    # A shared upstream (a feature store) fails: every pod of the model starts returning errors.
    assert _set_error_rate(kube_api, namespace, "shared", "0.4") == 2
    md.apply(control_plane, namespace, canary("shared", "2.0.0", steps=steps))
    wait_for(
        lambda: _set_error_rate(kube_api, namespace, "shared", "0.4", version="2.0.0"),
        30,
        interval=0.2,
        message="canary pods created (and annotated as soon as they exist)",
    )
    held = md.wait_status(
        kube_api,
        namespace,
        "shared",
        lambda s: s.get("phase") == "Holding" and (s.get("rollout") or {}).get("cause") == "Dependency",
        60,
        "the canary held with cause Dependency",
    )
    assert held["message"].startswith("held (cause Dependency)"), held["message"]
    warning = _warning(kube_api, namespace, "shared", "DependencyHold")
    assert warning.type == "Warning" and re.search(r"canary 0\.[3-5]\d*", warning.message), warning.message
    assert re.search(r"stable 0\.[3-5]\d* is above the maximum 0\.05", warning.message), (
        f"both values are named: {warning.message}"
    )
    logged = [r for r in rollguard.logs() if r.get("reason") == "DependencyHold" and r.get("name") == "shared"]
    assert logged and logged[0]["evidence"]["cause"] == "Dependency", logged

    # Two more rounds of the outage: still held, nothing counted, nothing rolled back.
    seen: set[str] = set()

    def rounds_while_held(status: dict[str, Any]) -> bool:
        rollout = status.get("rollout") or {}
        assert status.get("phase") == "Holding" and not status.get("rejected"), f"still held: {status['message']}"
        assert rollout.get("failures", 0) == 0, f"a shared outage counts no failure: {rollout}"
        seen.add(rollout.get("lastAnalysisAt", ""))
        return len(seen) >= 3

    md.wait_status(kube_api, namespace, "shared", rounds_while_held, 30, "two more analysis rounds while held")

    # The upstream recovers: the canary is judged again, passes and is promoted, never rolled back.
    # Within the surge budget (maxSurge 25% of 2 = 1 pod) the 50% step runs 1 canary and 1 stable pod.
    assert _set_error_rate(kube_api, namespace, "shared", None) >= 2, "the stable and the canary pods"

    def promoted_without_rollback(status: dict[str, Any]) -> bool:
        assert not status.get("rejected"), f"not rolled back after the recovery: {status['rejected']}"
        return bool(status.get("servingVersion") == "2.0.0" and md.has_condition(status, "Ready"))

    md.wait_status(kube_api, namespace, "shared", promoted_without_rollback, 60, "2.0.0 promoted after recovery")
    assert _warning(kube_api, namespace, "shared", "DependencyRecovered").type == "Normal"
    history = md.status(kube_api, namespace, "shared")["history"]
    assert [(h["version"], h["outcome"]) for h in history] == [("1.0.0", "Promoted"), ("2.0.0", "Promoted")], history
    assert rollguard.metric("rollguard_rollbacks_total", name="shared") == 0, "no rollback was counted"


def test_a_model_regression_is_rolled_back_with_cause_model(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    start_stable(control_plane, kube_api, namespace, canary("regress", "1.0.0"))
    md.apply(control_plane, namespace, canary("regress", "1.1.0", env={"SIMULATED_ERROR_RATE": "0.3"}))
    status = rolled_back(kube_api, namespace, "regress")
    rejected = status["rejected"]
    assert (rejected["reason"], rejected["cause"], rejected["check"]) == ("AnalysisFailed", "Model", "error-rate")
    assert status["history"][-1]["cause"] == "Model", status["history"][-1]
    assert "(AnalysisFailed, cause Model)" in _warning(kube_api, namespace, "regress", "RolledBack").message
    logged = [r for r in rollguard.logs() if r.get("reason") == "RolledBack" and r.get("name") == "regress"]
    assert logged and logged[0]["evidence"]["cause"] == "Model", logged
    assert rollguard.metric("rollguard_rollbacks_total", name="regress", cause="Model") == 1


def test_an_unschedulable_version_is_rolled_back_with_cause_infrastructure(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    good, bad = canary("nowhere", "1.0.0"), canary("nowhere", "2.0.0")
    for body in (good, bad):
        body["spec"]["progressDeadlineSeconds"] = 10
    start_stable(control_plane, kube_api, namespace, good)
    bad["spec"]["runtime"]["nodeSelector"] = {"gpu": "h100"}  # no such node pool: pods never schedule
    md.apply(control_plane, namespace, bad)
    status = rolled_back(kube_api, namespace, "nowhere", timeout=60)
    rejected = status["rejected"]
    assert (rejected["reason"], rejected["cause"]) == ("ProgressDeadlineExceeded", "Infrastructure"), rejected
    assert "unschedulable" in rejected["message"], f"the evidence names the pods' failure: {rejected['message']}"
    assert "cause Infrastructure" in _warning(kube_api, namespace, "nowhere", "RolledBack").message
    assert rollguard.metric("rollguard_rollbacks_total", name="nowhere", cause="Infrastructure") == 1
