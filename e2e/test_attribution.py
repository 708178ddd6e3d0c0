"""Issue 11 against the real control plane, Prometheus and the simulator: each failure carries its
cause, and a shared outage (stable and canary degrading together) holds the canary instead of
rolling it back."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubernetes import client

from e2e import md
from e2e.rollguard_process import RollguardProcess
from e2e.test_canary import ERROR_RATE, canary, rolled_back, start_drifting_canary, start_stable
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
    # The canary's window may still hold a few seconds from before its pods erred: above the limit is what counts.
    canary_value = re.search(r"canary (0\.\d+)", warning.message)
    assert warning.type == "Warning" and canary_value and float(canary_value[1]) > 0.05, warning.message
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


def _logged_cause(rollguard: RollguardProcess, name: str, reason: str) -> str | None:
    """The cause in the evidence of the operator's first log line for `reason` on `name`."""
    logged = [r for r in rollguard.logs() if r.get("reason") == reason and r.get("name") == name]
    assert logged, f"a {reason} log line for {name}"
    cause: str | None = logged[0].get("evidence", {}).get("cause")
    return cause


def test_a_drift_regression_is_rolled_back_with_cause_data(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    start_drifting_canary(control_plane, kube_api, namespace)
    status = rolled_back(kube_api, namespace, "drifty")
    rejected = status["rejected"]
    assert (rejected["reason"], rejected["cause"], rejected["check"]) == ("AnalysisFailed", "Data", "feature-drift")
    assert status["history"][-1]["cause"] == "Data", status["history"][-1]
    assert "cause Data" in status["message"], status["message"]
    assert "(AnalysisFailed, cause Data)" in _warning(kube_api, namespace, "drifty", "RolledBack").message
    assert _logged_cause(rollguard, "drifty", "RolledBack") == "Data"
    assert rollguard.metric("rollguard_rollbacks_total", name="drifty", cause="Data", check="feature-drift") == 1
    assert rollguard.metric("rollguard_rollbacks_total", name="drifty", cause="Model") == 0, "not the model's fault"


def test_an_invalid_query_holds_the_canary_with_cause_configuration(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    # A missing parenthesis, as a user types it: Prometheus refuses the query.
    typo = {
        "name": "typo",
        "query": 'sum(rate(model_requests_total{version="{{ version }}"}[1m])',
        "thresholdRange": {"max": 1},
    }
    start_stable(control_plane, kube_api, namespace, canary("typo", "1.0.0"))
    md.apply(control_plane, namespace, canary("typo", "1.1.0", metrics=[ERROR_RATE, typo]))
    held = md.wait_status(
        kube_api,
        namespace,
        "typo",
        lambda s: (s.get("rollout") or {}).get("cause") == "Configuration",
        45,
        "the canary held with cause Configuration",
    )
    assert held["phase"] == "Holding" and held["message"].startswith("held (cause Configuration)"), held["message"]
    assert "spec.analysis.metrics[1] (check typo)" in held["message"], f"the field is named: {held['message']}"
    warning = _warning(kube_api, namespace, "typo", "InvalidQuery")
    assert warning.type == "Warning" and "cause Configuration" in warning.message, warning.message
    assert _logged_cause(rollguard, "typo", "InvalidQuery") == "Configuration"
    # The spec's fault, never the canary's: held on every later round, nothing rolled back or counted.
    seen: set[str] = set()

    def rounds_while_held(status: dict[str, Any]) -> bool:
        rollout = status.get("rollout") or {}
        assert status.get("phase") == "Holding" and not status.get("rejected"), f"still held: {status['message']}"
        assert rollout.get("cause") == "Configuration" and rollout.get("failures", 0) == 0, rollout
        seen.add(rollout.get("lastAnalysisAt", ""))
        return len(seen) >= 3

    md.wait_status(kube_api, namespace, "typo", rounds_while_held, 30, "two more analysis rounds while held")
    assert md.status(kube_api, namespace, "typo").get("servingVersion") == "1.0.0"
    assert rollguard.metric("rollguard_rollbacks_total", name="typo") == 0, "no rollback was counted"


def test_a_prometheus_outage_holds_with_cause_observability_then_each_deadline_action_applies(
    own_prometheus: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    control_plane = own_prometheus
    # A pause no outage test outlasts: only the metricsUnavailable deadline can end these canaries.
    steps = [{"weight": 50, "pause": {"duration": "5m"}}]
    actions = {"outage-hold": "Hold", "outage-rollback": "Rollback"}
    for name, action in actions.items():
        body = canary(name, "1.0.0", steps=steps, metricsUnavailable={"deadline": "8s", "action": action})
        start_stable(control_plane, kube_api, namespace, body)
    for name, action in actions.items():
        body = canary(name, "1.1.0", steps=steps, metricsUnavailable={"deadline": "8s", "action": action})
        md.apply(control_plane, namespace, body)
    for name in actions:
        md.wait_status(
            kube_api,
            namespace,
            name,
            lambda s: (s.get("rollout") or {}).get("lastVerdict") == "Passed",
            60,
            f"{name}: a first passing analysis round",
        )
    control_plane.stop_prometheus()
    try:
        for name in actions:
            waiting = md.wait_status(
                kube_api,
                namespace,
                name,
                lambda s: (s.get("rollout") or {}).get("cause") == "Observability",
                30,
                f"{name}: held with cause Observability while Prometheus is down",
            )
            assert waiting["phase"] == "Holding" and waiting["rollout"]["failures"] == 0, waiting["rollout"]
            assert waiting["message"].startswith("held (cause Observability)"), waiting["message"]

        # After the deadline, Hold: a human must act; the hold names the cause.
        held = md.wait_status(
            kube_api,
            namespace,
            "outage-hold",
            lambda s: md.has_condition(s, "Stalled") and (s.get("rollout") or {}).get("pausedReason"),
            45,
            "outage-hold stalled after metricsUnavailable.deadline",
        )
        assert held["phase"] == "Holding" and held["rollout"]["cause"] == "Observability", held["rollout"]
        assert held.get("servingVersion") == "1.0.0" and not held.get("rejected"), held["message"]
        warnings = wait_for(
            lambda: [e for e in md.events(kube_api, namespace, "outage-hold") if e.reason == "MetricsUnavailable"],
            15,
            message="MetricsUnavailable Warnings: when metrics went, and at the deadline",
            until=lambda found: any("resume, promote or abort by hand" in e.message for e in found),
        )
        for warning in warnings:
            assert warning.type == "Warning" and "(cause Observability)" in warning.message, warning.message

        # After the deadline, Rollback: the rollback carries the cause, with no check to blame.
        status = rolled_back(kube_api, namespace, "outage-rollback", timeout=45)
        rejected = status["rejected"]
        assert (rejected["reason"], rejected["cause"]) == ("MetricsUnavailable", "Observability"), rejected
        assert rejected.get("check") is None and "no usable metrics" in rejected["message"], rejected
        assert status["history"][-1]["cause"] == "Observability", status["history"][-1]
        rolled = _warning(kube_api, namespace, "outage-rollback", "RolledBack")
        assert "(MetricsUnavailable, cause Observability)" in rolled.message, rolled.message
        assert _logged_cause(rollguard, "outage-rollback", "RolledBack") == "Observability"
        counted = rollguard.metric(
            "rollguard_rollbacks_total", name="outage-rollback", reason="MetricsUnavailable", cause="Observability"
        )
        assert counted == 1, "the rollback is counted under its cause"
        assert rollguard.metric("rollguard_rollbacks_total", name="outage-hold") == 0, "the held one was not"
    finally:
        control_plane.start_prometheus()


@contextmanager
def _shared_outage(api: client.ApiClient, namespace: str, name: str, rate: str) -> Iterator[None]:
    """Every pod of the model, those created meanwhile too, serves `rate` errors (an upstream is down)."""
    stop = threading.Event()

    def annotate() -> None:
        while not stop.wait(0.3):
            try:
                _set_error_rate(api, namespace, name, rate)
            except client.ApiException:
                continue  # a pod deleted between the list and the patch

    thread = threading.Thread(target=annotate, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        _set_error_rate(api, namespace, name, None)


def test_a_shared_outage_after_promotion_is_found_on_the_known_good_and_the_version_comes_back(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    watch = {"postPromotion": {"duration": "10m"}}
    start_stable(control_plane, kube_api, namespace, canary("after", "1.0.0", **watch))
    md.apply(control_plane, namespace, canary("after", "2.0.0", **watch))
    md.wait_status(
        kube_api,
        namespace,
        "after",
        lambda s: s.get("servingVersion") == "2.0.0" and (s.get("watch") or {}).get("lastVerdict") == "Passed",
        90,
        "2.0.0 promoted and watched",
    )
    with _shared_outage(kube_api, namespace, "after", "0.4"):
        # One version serves: nothing tells the outage from a regression yet, so 2.0.0 is rolled back.
        md.wait_status(
            kube_api,
            namespace,
            "after",
            lambda s: (s.get("rejected") or {}).get("reason") == "PostPromotionAnalysisFailed",
            60,
            "2.0.0 rolled back after promotion",
        )
        # 1.0.0 then serves the same traffic and breaks the same check: the outage was shared.
        again = md.wait_status(
            kube_api,
            namespace,
            "after",
            lambda s: s.get("phase") == "Holding" and (s.get("rollout") or {}).get("cause") == "Dependency",
            90,
            "2.0.0 out again as a canary, held by the shared outage",
        )
        assert again["servingVersion"] == "1.0.0" and again["rollout"]["target"]["version"] == "2.0.0", again
        rolled_back = [(h["version"], h.get("cause")) for h in again["history"] if h["outcome"] == "RolledBack"]
        assert rolled_back == [("2.0.0", "Dependency")], f"the record names the shared outage: {rolled_back}"
        found = _warning(kube_api, namespace, "after", "SharedOutageAfterPromotion")
        assert found.type == "Warning" and "known-good version 1.0.0 breaks check error-rate too" in found.message
        assert "(cause Dependency)" in found.message, found.message
    # The upstream recovers: 2.0.0 is judged beside stable again, and promoted.
    done = md.wait_status(
        kube_api,
        namespace,
        "after",
        lambda s: md.has_condition(s, "Ready") and s.get("servingVersion") == "2.0.0",
        90,
        "2.0.0 serving again after the outage",
    )
    assert not done.get("rejected") and done["history"][-1]["version"] == "2.0.0", done["history"][-1]
