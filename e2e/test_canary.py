"""Issue 4 against the real control plane, Prometheus and the simulated data plane.

Each scenario is a manifest: the simulator turns each pod's SIMULATED_* env into its metrics.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from e2e import md
from e2e.rollguard_process import RollguardProcess
from e2e.waiting import prom_scalar, wait_for

ERROR_RATE = {"name": "error-rate", "template": "error-rate", "thresholdRange": {"max": 0.05}, "minSampleCount": 5}


def canary(
    name: str,
    version: str,
    env: dict[str, str] | None = None,
    steps: list[dict[str, Any]] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    drift: list[dict[str, Any]] | None = None,
    replicas: int = 2,
    **analysis: Any,
) -> dict[str, Any]:
    return md.manifest(
        name,
        version=version,
        replicas=replicas,
        env=env,
        strategy={
            "type": "Canary",
            "canary": {
                "steps": steps or [{"weight": 50, "pause": {"duration": "4s"}}],
                "scaleDownDelay": "2s",
            },
        },
        analysis={
            "interval": "3s",
            "failureLimit": 0,
            "consecutiveErrorLimit": 0,
            "metrics": [ERROR_RATE] if metrics is None else metrics,
            "drift": drift or [],
            **analysis,
        },
    )


def start_stable(cp: Any, api: client.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    md.apply(cp, namespace, body)
    version = body["spec"]["model"]["version"]
    wait_for(lambda: md.serving(api, namespace, body["metadata"]["name"], version), 60, message=f"{version} serving")


def rolled_back(api: client.ApiClient, namespace: str, name: str, timeout: float = 90) -> dict[str, Any]:
    return md.wait_phase(api, namespace, name, "RolledBack", timeout=timeout)


def test_healthy_canary_walks_every_step_and_is_promoted_without_restarts(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    start_stable(control_plane, kube_api, namespace, canary("healthy", "1.0.0"))
    steps = [{"weight": 25, "pause": {"duration": "3s"}}, {"weight": 50, "pause": {"duration": "3s"}}]
    body = canary(
        "healthy",
        "1.1.0",
        steps=steps,
        metrics=[ERROR_RATE, {"name": "p99", "template": "latency", "thresholdRange": {"max": 0.5}}],
        drift=[{"name": "drift", "maxScore": 0.3, "window": "10s", "minSamples": 5}],
    )
    md.apply(control_plane, namespace, body)
    seen_steps: set[int] = set()
    canary_pods: dict[str, str] = {}

    def promoted() -> bool:
        status = md.status(kube_api, namespace, "healthy")
        rollout = status.get("rollout") or {}
        if rollout.get("weightReachedAt"):
            seen_steps.add(rollout["stepIndex"])
        pods = client.CoreV1Api(kube_api).list_namespaced_pod(
            namespace, label_selector="rollguard.io/model-deployment=healthy,rollguard.io/version=1.1.0"
        )
        canary_pods.update({p.metadata.name: p.metadata.uid for p in pods.items if not p.metadata.deletion_timestamp})
        return md.serving(kube_api, namespace, "healthy", "1.1.0")

    wait_for(promoted, 120, interval=0.3, message="1.1.0 promoted after every step")
    assert seen_steps == {0, 1}, f"the canary should hold at every step, saw steps {sorted(seen_steps)}"
    status = md.status(kube_api, namespace, "healthy")
    promotion = status["history"][-1]
    assert promotion["version"] == "1.1.0" and promotion["outcome"] == "Promoted", promotion
    assert set(promotion["metrics"]) == {"error-rate", "p99", "drift"}, "metric values at promotion are kept"
    assert promotion["uri"] == "s3://models/healthy/1.1.0" and promotion["image"], "known-good keeps URI and image"

    pods = client.CoreV1Api(kube_api).list_namespaced_pod(
        namespace, label_selector="rollguard.io/model-deployment=healthy,rollguard.io/version=1.1.0"
    )
    first_pods = {name: uid for name, uid in canary_pods.items() if name in {p.metadata.name for p in pods.items}}
    assert first_pods, "pods that served as canary are still serving after promotion (not restarted)"
    wait_for(
        lambda: md.ready_pods_by_version(kube_api, namespace, "healthy") == {"1.1.0": 2},
        30,
        message="the old version scaled away after scaleDownDelay",
    )


def _assert_rolled_back_with_evidence(
    api: client.ApiClient, namespace: str, name: str, check: str, version: str, rollguard: RollguardProcess
) -> dict[str, Any]:
    status = rolled_back(api, namespace, name)
    rejected = status["rejected"]
    assert rejected["version"] == version and rejected["reason"] == "AnalysisFailed", rejected
    assert rejected["check"] == check, f"the failed check is named: {rejected}"
    canary_pods = f'pod=~"{name}-{rejected["revision"]}-'  # the canary's own pods, not a server-reported label
    assert rejected["value"] is not None and rejected["limit"] and canary_pods in rejected["query"], rejected
    warning = wait_for(
        lambda: [e for e in md.events(api, namespace, name) if e.reason == "RolledBack"],
        15,
        message="a RolledBack Event (kopf posts Events in the background)",
    )
    assert check in warning[0].message and warning[0].type == "Warning", "a Warning Event names the check"
    logged = [r for r in rollguard.logs() if r.get("reason") == "RolledBack" and r.get("name") == name]
    assert logged and logged[0]["evidence"]["check"] == check, "a log line carries the evidence"
    assert logged[0]["namespace"] == namespace and logged[0].get("rollout_id"), "logs carry the object and rollout id"
    assert rollguard.metric("rollguard_rollbacks_total", name=name, reason="AnalysisFailed", check=check) == 1
    wait_for(
        lambda: set(md.ready_pods_by_version(api, namespace, name)) == {"1.0.0"},
        30,
        message="only the known-good version serves after the rollback",
    )
    return status


def test_error_rate_regression_is_rolled_back_and_time_to_stable_is_measured(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess, record_property: Any
) -> None:
    start_stable(control_plane, kube_api, namespace, canary("errors", "1.0.0"))
    md.apply(control_plane, namespace, canary("errors", "1.1.0", env={"SIMULATED_ERROR_RATE": "0.3"}))
    # The metric crosses its limit as soon as the canary's pods take traffic.
    crossed = wait_for(
        lambda: md.ready_pods_by_version(kube_api, namespace, "errors").get("1.1.0") and time.monotonic(),
        60,
        interval=0.2,
        message="canary pods ready (error rate above the limit from then on)",
    )
    wait_for(
        lambda: set(md.ready_pods_by_version(kube_api, namespace, "errors")) == {"1.0.0"},
        60,
        interval=0.2,
        message="stable takes all traffic again",
    )
    seconds = time.monotonic() - crossed
    record_property("rollback_seconds_from_crossing_to_stable_only", round(seconds, 2))
    print(f"\nrollback: {seconds:.1f}s from the canary's error rate crossing its limit to stable taking all traffic")
    status = _assert_rolled_back_with_evidence(kube_api, namespace, "errors", "error-rate", "1.1.0", rollguard)
    assert abs(status["rejected"]["value"] - 0.3) < 0.05, f"the measured error rate is reported: {status['rejected']}"


def test_latency_regression_is_rolled_back(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    latency = {"name": "p99", "template": "latency", "quantile": 0.99, "thresholdRange": {"max": 0.5}}
    start_stable(control_plane, kube_api, namespace, canary("slow", "1.0.0", metrics=[latency]))
    md.apply(
        control_plane,
        namespace,
        canary("slow", "1.1.0", env={"SIMULATED_LATENCY_SECONDS": "2"}, metrics=[latency]),
    )
    _assert_rolled_back_with_evidence(kube_api, namespace, "slow", "p99", "1.1.0", rollguard)


def start_drifting_canary(cp: Any, api: client.ApiClient, namespace: str) -> None:
    """ "drifty" 1.0.0 stable, then 1.1.0 out as a canary whose inputs drift past its feature-drift check."""
    drift = [{"name": "feature-drift", "kind": "feature", "maxScore": 0.3, "window": "10s", "minSamples": 5}]
    start_stable(cp, api, namespace, canary("drifty", "1.0.0", metrics=[], drift=drift))
    md.apply(cp, namespace, canary("drifty", "1.1.0", env={"SIMULATED_DRIFT_SCORE": "0.7"}, metrics=[], drift=drift))


def test_drift_regression_is_rolled_back(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    start_drifting_canary(control_plane, kube_api, namespace)
    status = _assert_rolled_back_with_evidence(kube_api, namespace, "drifty", "feature-drift", "1.1.0", rollguard)
    assert "drift" in status["rejected"]["message"]


def test_canary_worse_than_stable_by_the_relative_rule_is_rolled_back(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    # Low error rates need traffic and a window long enough to see them.
    window = {"interval": "15s", "minSampleCount": 100}
    relative = [
        {"name": "absolute", "template": "error-rate", "thresholdRange": {"max": 0.1}, **window},
        {
            "name": "vs-stable",
            "template": "error-rate",
            "relativeToStable": {"maxRatio": 1.5, "minAbsolute": 0.005},
            **window,
        },
    ]
    busy = {"SIMULATED_TOTAL_RPS": "300"}
    stable_env = {**busy, "SIMULATED_ERROR_RATE": "0.01"}
    start_stable(control_plane, kube_api, namespace, canary("relative", "1.0.0", env=stable_env, metrics=relative))
    canary_env = {**busy, "SIMULATED_ERROR_RATE": "0.04"}
    md.apply(control_plane, namespace, canary("relative", "1.1.0", env=canary_env, metrics=relative))
    status = _assert_rolled_back_with_evidence(kube_api, namespace, "relative", "vs-stable", "1.1.0", rollguard)
    assert status["rejected"]["value"] < 0.1, "the canary was under the absolute limit"
    assert "stable" in status["rejected"]["limit"], f"the limit is expressed against stable: {status['rejected']}"


def test_prometheus_outage_holds_the_canary_then_it_resumes(
    own_prometheus: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    control_plane = own_prometheus
    start_stable(control_plane, kube_api, namespace, canary("outage", "1.0.0"))
    # The pause leaves time to stop Prometheus before the step could complete.
    body = canary("outage", "1.1.0", steps=[{"weight": 50, "pause": {"duration": "15s"}}])
    md.apply(control_plane, namespace, body)
    md.wait_status(
        kube_api,
        namespace,
        "outage",
        lambda s: (s.get("rollout") or {}).get("lastVerdict") == "Passed",
        60,
        "a first passing analysis round",
    )
    control_plane.stop_prometheus()
    try:
        held = md.wait_status(
            kube_api,
            namespace,
            "outage",
            lambda s: md.has_condition(s, "MetricsAvailable", "False"),
            30,
            "MetricsAvailable=False while Prometheus is down",
        )
        assert held["phase"] == "Holding" and held["rollout"]["failures"] == 0, "cannot-measure holds, not a failure"
        step = held["rollout"]["stepIndex"]
        # Six rounds of 3s without Prometheus outlast the 15s pause: no promotion without measurements.
        wait_for(
            lambda: md.status(kube_api, namespace, "outage")["rollout"]["consecutiveErrors"] >= 6,
            90,
            message="six analysis rounds without Prometheus",
        )
        during = md.status(kube_api, namespace, "outage")
        assert during["rollout"]["stepIndex"] == step and during["rollout"]["failures"] == 0, during["rollout"]
        assert during.get("servingVersion") == "1.0.0" and not during["rollout"].get("promoting")
    finally:
        control_plane.start_prometheus()
    wait_for(lambda: md.serving(kube_api, namespace, "outage", "1.1.0"), 90, message="promoted once metrics returned")
    assert any(e.reason == "MetricsUnavailable" for e in md.events(kube_api, namespace, "outage"))


def test_new_version_pushed_mid_canary_starts_over(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    start_stable(control_plane, kube_api, namespace, canary("pushed", "1.0.0"))
    waiting = [{"weight": 50, "pause": {}}]  # held until promoted: the next push lands mid-canary
    md.apply(control_plane, namespace, canary("pushed", "1.1.0", steps=waiting))
    md.wait_status(
        kube_api,
        namespace,
        "pushed",
        lambda s: (s.get("rollout") or {}).get("weightReachedAt") is not None,
        60,
        "1.1.0 canary at its step",
    )
    md.apply(control_plane, namespace, canary("pushed", "1.2.0", steps=[{"weight": 50, "pause": {"duration": "3s"}}]))
    wait_for(lambda: md.serving(kube_api, namespace, "pushed", "1.2.0"), 90, message="1.2.0 promoted")
    outcomes = [(h["version"], h["outcome"]) for h in md.status(kube_api, namespace, "pushed")["history"]]
    assert ("1.1.0", "Superseded") in outcomes and outcomes[-1] == ("1.2.0", "Promoted"), outcomes
    assert "1.1.0" not in md.ready_pods_by_version(kube_api, namespace, "pushed"), "the abandoned canary is gone"


def test_operator_killed_mid_canary_resumes_where_it_was(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, start_rollguard: Any
) -> None:
    first = start_rollguard()
    start_stable(control_plane, kube_api, namespace, canary("restart", "1.0.0"))
    steps = [{"weight": 25, "pause": {"duration": "3s"}}, {"weight": 50, "pause": {}}]
    md.apply(control_plane, namespace, canary("restart", "1.1.0", steps=steps))
    before = md.wait_status(
        kube_api,
        namespace,
        "restart",
        lambda s: (s.get("rollout") or {}).get("stepIndex") == 1 and s["rollout"].get("weightReachedAt"),
        60,
        "canary held at step 2",
    )
    first.kill()
    second = start_rollguard()
    passes = second.metric("rollguard_reconcile_duration_seconds_count")
    wait_for(
        lambda: second.metric("rollguard_reconcile_duration_seconds_count") >= passes + 3,
        30,
        message="the new operator reconciles",
    )
    after = md.status(kube_api, namespace, "restart")
    assert after["rollout"]["stepIndex"] == 1, "resumed at step 2, not from the start"
    assert after["rollout"]["startedAt"] == before["rollout"]["startedAt"], "the same rollout continues"
    assert after.get("servingVersion") == "1.0.0"


def test_apiserver_restart_mid_canary_is_survived(
    own_control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    control_plane = own_control_plane
    start_stable(control_plane, kube_api, namespace, canary("apirestart", "1.0.0"))
    md.apply(
        control_plane, namespace, canary("apirestart", "1.1.0", steps=[{"weight": 50, "pause": {"duration": "8s"}}])
    )
    md.wait_status(
        kube_api,
        namespace,
        "apirestart",
        lambda s: (s.get("rollout") or {}).get("weightReachedAt") is not None,
        60,
        "canary at its step",
    )
    control_plane.stop_apiserver()
    control_plane.start_apiserver()
    wait_for(lambda: md.serving(kube_api, namespace, "apirestart", "1.1.0"), 120, message="promoted after the restart")


def test_stable_version_degrading_after_promotion_is_rolled_back_to_known_good(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    watch = {"postPromotion": {"duration": "10m"}}
    start_stable(control_plane, kube_api, namespace, canary("decay", "1.0.0", **watch))
    md.apply(control_plane, namespace, canary("decay", "2.0.0", **watch))
    wait_for(lambda: md.serving(kube_api, namespace, "decay", "2.0.0"), 90, message="2.0.0 promoted")
    md.wait_status(
        kube_api, namespace, "decay", lambda s: (s.get("watch") or {}).get("lastVerdict") == "Passed", 30, "watching"
    )
    # Days later, in production terms: the promoted model starts failing on live traffic.
    core = client.CoreV1Api(kube_api)
    pods = core.list_namespaced_pod(namespace, label_selector="rollguard.io/model-deployment=decay")
    for pod in pods.items:
        core.patch_namespaced_pod(
            pod.metadata.name,
            namespace,
            {"metadata": {"annotations": {"simulator.rollguard.io/SIMULATED_ERROR_RATE": "0.4"}}},
        )
    # The spec still asks for 2.0.0, now rejected: phase RolledBack (Ready=False), 1.0.0 serving.
    status = md.wait_status(
        kube_api,
        namespace,
        "decay",
        lambda s: s.get("phase") == "RolledBack" and s.get("servingVersion") == "1.0.0",
        120,
        "rolled back to the previous known-good 1.0.0",
    )
    assert status["rejected"]["version"] == "2.0.0", status["rejected"]
    assert status["rejected"]["reason"] == "PostPromotionAnalysisFailed", status["rejected"]
    outcomes = [(h["version"], h["outcome"]) for h in status["history"]]
    assert outcomes[-2:] == [("2.0.0", "RolledBack"), ("1.0.0", "Promoted")], outcomes
    assert md.get(kube_api, namespace, "decay")["spec"]["model"]["version"] == "2.0.0", "the spec is never rewritten"
    wait_for(
        lambda: set(md.ready_pods_by_version(kube_api, namespace, "decay")) == {"1.0.0"},
        60,
        message="only 1.0.0 pods serve",
    )


def test_gateway_api_route_weights_follow_the_steps(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess, prometheus_url: str
) -> None:
    control_plane.install_gateway_api_crds()
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "routed"},
        "spec": {
            "parentRefs": [{"name": "public-gateway"}],
            "rules": [
                {"backendRefs": [{"name": "routed-stable", "port": 8080}, {"name": "routed-canary", "port": 8080}]}
            ],
        },
    }
    md.apply(control_plane, namespace, route)
    routing = {"type": "GatewayAPI", "httpRoute": {"name": "routed"}}

    def routed(version: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
        body = canary("routed", version, steps=steps, env={"SIMULATED_TOTAL_RPS": "200"})
        body["spec"]["strategy"]["canary"]["trafficRouting"] = routing
        return body

    start_stable(control_plane, kube_api, namespace, routed("1.0.0", [{"weight": 20, "pause": {}}]))
    md.apply(control_plane, namespace, routed("1.1.0", [{"weight": 20, "pause": {}}, {"weight": 60, "pause": {}}]))
    custom = client.CustomObjectsApi(kube_api)

    def weights() -> dict[str, int]:
        live = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", "routed")
        return {ref["name"]: ref.get("weight", 1) for ref in live["spec"]["rules"][0]["backendRefs"]}

    wait_for(weights, 60, message="route at 80/20", until=lambda w: w == {"routed-stable": 80, "routed-canary": 20})
    # Traffic follows the route: the canary's share of requests is ~20%.
    share_query = (
        f'sum(rate(model_requests_total{{namespace="{namespace}",version="1.1.0"}}[10s]))'
        f' / sum(rate(model_requests_total{{namespace="{namespace}"}}[10s]))'
    )
    wait_for(
        lambda: prom_scalar(prometheus_url, share_query),
        60,
        message="canary gets ~20% of requests",
        until=lambda share: share is not None and abs(share - 0.2) < 0.05,
    )
    control_plane.kubectl("annotate", "-n", namespace, "md/routed", "rollguard.io/promote=step-2", check=True)
    wait_for(weights, 60, message="route at 40/60", until=lambda w: w == {"routed-stable": 40, "routed-canary": 60})
    control_plane.kubectl(
        "annotate", "-n", namespace, "md/routed", "--overwrite", "rollguard.io/promote=done", check=True
    )
    wait_for(lambda: md.serving(kube_api, namespace, "routed", "1.1.0"), 60, message="1.1.0 promoted")
    wait_for(weights, 30, message="route at 100/0 after promotion", until=lambda w: w["routed-stable"] == 100)
    stable_service = client.CoreV1Api(kube_api).read_namespaced_service("routed-stable", namespace)
    promoted = md.status(kube_api, namespace, "routed")["stable"]["revision"]
    assert stable_service.spec.selector["rollguard.io/rollout-id"] == promoted, "stable Service follows the promotion"
