"""spec.fallback on the real control plane: a warm fallback with no traffic, that takes the model's traffic
when every serving pod loses readiness (no known-good version can help: they are all the serving version's),
and gives it back when the pods are ready again. Traffic is what the model's Service selects: its
EndpointSlices, maintained by kube-controller-manager from the selector rollguard writes.

kwok marks a pod Ready once (its pod-ready stage matches Pending pods only), so the test fails and restores
the pods' readiness by writing their status as a kubelet would after a failing readiness probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from e2e import md
from e2e.rollguard_process import RollguardProcess
from e2e.waiting import wait_for

NAME = "scorer"
ERROR_RATE = {"name": "error-rate", "template": "error-rate", "thresholdRange": {"max": 0.05}, "minSampleCount": 5}
FALLBACK = {
    "model": {"name": "scorer-rules", "version": "0.9.0", "uri": "s3://models/scorer-rules/0.9.0", "format": "custom"},
    "activateAfter": "3s",
}
SELECTS_MODEL = {"rollguard.io/model-deployment": NAME}
SELECTS_FALLBACK = {"rollguard.io/fallback-for": NAME}


def set_ready(api: client.ApiClient, namespace: str, pod: str, ready: bool) -> None:
    """What the kubelet writes when a readiness probe fails (or passes again): the pod keeps running."""
    value = "True" if ready else "False"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    conditions = [{"type": kind, "status": value, "lastTransitionTime": now} for kind in ("Ready", "ContainersReady")]
    client.CoreV1Api(api).patch_namespaced_pod_status(pod, namespace, {"status": {"conditions": conditions}})


def degrading(name: str, version: str) -> dict[str, Any]:
    """A canary-rolled model with a warm fallback, watched after promotion (where its degradation is caught)."""
    return md.manifest(
        name,
        version=version,
        replicas=2,
        fallback=FALLBACK,
        strategy={"type": "Canary", "canary": {"steps": [{"weight": 50, "pause": {"duration": "3s"}}]}},
        analysis={"interval": "3s", "failureLimit": 0, "metrics": [ERROR_RATE], "postPromotion": {"duration": "10m"}},
    )


def fail_live_traffic(api: client.ApiClient, namespace: str, name: str) -> None:
    """The simulator serves 40% errors from every running pod of the model (the only version there is)."""
    override = {"simulator.rollguard.io/SIMULATED_ERROR_RATE": "0.4"}
    for pod in model_pods(api, namespace, name):
        client.CoreV1Api(api).patch_namespaced_pod(pod, namespace, {"metadata": {"annotations": override}})


def fallback_is(active: bool) -> Callable[[dict[str, Any]], bool]:
    return lambda status: (status.get("fallback") or {}).get("active") is active


def switched_by_unready_pods(api: client.ApiClient, namespace: str, name: str, pods: dict[str, str]) -> dict[str, Any]:
    """Every pod in `pods` fails its readiness probe: the status once the fallback serves (past activateAfter)."""
    for pod in pods:
        set_ready(api, namespace, pod, ready=False)
    return md.wait_status(
        api,
        namespace,
        name,
        fallback_is(True),
        60,
        f"status.fallback.active once no pod of {name} is ready for activateAfter (3s)",
    )


def model_pods(api: client.ApiClient, namespace: str, name: str = NAME) -> dict[str, str]:
    """The model's running pods (name -> uid), selected as its Service does when the model serves."""
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"rollguard.io/model-deployment={name}")
    return {p.metadata.name: p.metadata.uid for p in pods.items if not p.metadata.deletion_timestamp}


def fallback_pods(api: client.ApiClient, namespace: str) -> dict[str, str]:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"rollguard.io/fallback-for={NAME}")
    return {p.metadata.name: p.metadata.uid for p in pods.items if not p.metadata.deletion_timestamp}


def ready_endpoints(api: client.ApiClient, namespace: str) -> set[str]:
    """Pods the model's Service sends traffic to: ready endpoints of its EndpointSlices."""
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={NAME}"
    )
    return {
        endpoint.target_ref.name
        for found in slices.items
        for endpoint in found.endpoints or []
        if endpoint.target_ref is not None and endpoint.conditions is not None and endpoint.conditions.ready
    }


def service_selector(api: client.ApiClient, namespace: str) -> dict[str, str]:
    selector: dict[str, str] = client.CoreV1Api(api).read_namespaced_service(NAME, namespace).spec.selector
    return selector


def traffic_goes_to(
    api: client.ApiClient, namespace: str, selector: dict[str, str], pods: dict[str, str], what: str
) -> None:
    """The Service selects `selector` and its ready endpoints (kcm's EndpointSlices) become exactly `pods`."""
    assert service_selector(api, namespace) == selector, f"the Service selects {what}"
    wait_for(
        lambda: ready_endpoints(api, namespace),
        30,
        message=f"the Service's ready endpoints are {what}",
        until=lambda found: found == set(pods),
    )


def events_of(api: client.ApiClient, namespace: str, reason: str) -> list[Any]:
    return [e for e in md.events(api, namespace, NAME) if e.reason == reason]


def test_the_fallback_takes_the_traffic_when_no_serving_pod_is_ready_and_gives_it_back(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    body = md.manifest(NAME, version="1.0.0", replicas=2, fallback=FALLBACK)
    md.apply(control_plane, namespace, body)
    wait_for(lambda: md.serving(kube_api, namespace, NAME, "1.0.0"), 60, message="1.0.0 serving")

    # Warm: <name>-fallback at 1 ready replica, owned like every child, and no traffic.
    owner_uid = md.get(kube_api, namespace, NAME)["metadata"]["uid"]  # type: ignore[index]
    apps = client.AppsV1Api(kube_api)
    warm = wait_for(
        lambda: apps.read_namespaced_deployment(f"{NAME}-fallback", namespace),
        60,
        message="Deployment scorer-fallback with 1 ready replica",
        until=lambda d: (d.status.ready_replicas or 0) == 1,
    )
    assert warm.spec.replicas == 1, f"kept warm at fallback.replicas (default 1), got {warm.spec.replicas}"
    owners = [(r.kind, r.uid, r.controller) for r in warm.metadata.owner_references or []]
    assert owners == [("ModelDeployment", owner_uid, True)], f"owned by the ModelDeployment: {owners}"
    pod_spec = warm.spec.template.spec
    assert pod_spec.security_context.run_as_non_root and pod_spec.containers[0].security_context.capabilities.drop == [
        "ALL"
    ], "the platform's pod policy applies to the fallback's pods too"
    serving_pods, fallback = model_pods(kube_api, namespace), fallback_pods(kube_api, namespace)
    assert len(serving_pods) == 2 and len(fallback) == 1, f"2 model pods and 1 fallback pod: {serving_pods} {fallback}"
    traffic_goes_to(kube_api, namespace, SELECTS_MODEL, serving_pods, "the model's two pods, not the fallback's")
    status = md.status(kube_api, namespace, NAME)
    assert status["fallback"]["active"] is False and status["fallback"]["version"] == "0.9.0", status.get("fallback")
    assert rollguard.metric("rollguard_fallback_active", name=NAME) == 0, "the gauge says the model serves"

    # Every serving pod fails its readiness probe; 1.0.0 is the only version there is (no known-good to go to).
    lost_at = time.monotonic()
    switched = switched_by_unready_pods(kube_api, namespace, NAME, serving_pods)
    switch_seconds = time.monotonic() - lost_at
    fallback_state = switched["fallback"]
    assert (fallback_state["reason"], fallback_state["cause"]) == ("ServingNotReady", "Infrastructure"), fallback_state
    ready = next(c for c in switched["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "FallbackActive"), f"Ready says why: {ready}"
    traffic_goes_to(kube_api, namespace, SELECTS_FALLBACK, fallback, "the fallback's pod")
    activated = wait_for(
        lambda: events_of(kube_api, namespace, "FallbackActivated"), 15, message="a FallbackActivated Event"
    )
    assert activated[0].type == "Warning" and "no pod of version 1.0.0 ready" in activated[0].message, activated[0]
    assert rollguard.metric("rollguard_fallback_active", name=NAME) == 1, "the gauge says the fallback serves"
    assert (model_pods(kube_api, namespace), fallback_pods(kube_api, namespace)) == (serving_pods, fallback), (
        "switching restarted no pod"
    )

    # The pods pass their probes again: the traffic goes back to the model.
    recovered_at = time.monotonic()
    for pod in serving_pods:
        set_ready(kube_api, namespace, pod, ready=True)
    md.wait_status(
        kube_api,
        namespace,
        NAME,
        lambda s: fallback_is(False)(s) and md.has_condition(s, "Ready"),
        60,
        "status.fallback.active false and Ready=True once 1.0.0's pods are ready again",
    )
    release_seconds = time.monotonic() - recovered_at
    traffic_goes_to(kube_api, namespace, SELECTS_MODEL, serving_pods, "the model's pods again")
    released = wait_for(
        lambda: events_of(kube_api, namespace, "FallbackReleased"), 15, message="a FallbackReleased Event"
    )
    assert released[0].type == "Normal" and "traffic back from fallback 0.9.0" in released[0].message, released[0]
    assert rollguard.metric("rollguard_fallback_active", name=NAME) == 0, "the gauge is back to 0"
    assert len(events_of(kube_api, namespace, "FallbackActivated")) == 1, "one activation, announced once"
    assert (model_pods(kube_api, namespace), fallback_pods(kube_api, namespace)) == (serving_pods, fallback), (
        "giving it back restarted no pod"
    )
    print(
        f"switch to fallback {switch_seconds:.1f}s after readiness lost (activateAfter 3s); back {release_seconds:.1f}s"
    )


def test_a_degraded_version_with_no_known_good_hands_the_traffic_to_the_fallback_until_a_new_version(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    md.apply(control_plane, namespace, degrading(NAME, "1.0.0"))
    wait_for(lambda: md.serving(kube_api, namespace, NAME, "1.0.0"), 60, message="1.0.0 serving")
    md.wait_status(
        kube_api, namespace, NAME, lambda s: (s.get("watch") or {}).get("lastVerdict") == "Passed", 60, "watched"
    )
    fallback = wait_for(lambda: fallback_pods(kube_api, namespace), 60, message="the warm fallback pod")
    # The only version there is starts failing on live traffic: nothing known-good to roll back to.
    fail_live_traffic(kube_api, namespace, NAME)
    degraded = md.wait_status(
        kube_api,
        namespace,
        NAME,
        fallback_is(True),
        90,
        "the fallback serves once 1.0.0 fails its post-promotion checks",
    )
    state = degraded["fallback"]
    assert (state["reason"], state["cause"]) == ("PostPromotionAnalysisFailed", "Model"), state
    assert degraded["rejected"]["version"] == "1.0.0", "1.0.0 is rejected, with nothing earlier to go back to"
    traffic_goes_to(
        kube_api, namespace, SELECTS_FALLBACK, fallback, "the fallback's pod, not 1.0.0's ready but failing pods"
    )
    reasons = [e.reason for e in md.events(kube_api, namespace, NAME)]
    assert "DegradedNoKnownGood" in reasons and "FallbackActivated" in reasons, reasons
    assert rollguard.metric("rollguard_fallback_active", name=NAME) == 1

    # A new version needs real traffic to be judged: the model gets it back as 1.1.0 rolls out.
    md.apply(control_plane, namespace, degrading(NAME, "1.1.0"))
    md.wait_status(
        kube_api,
        namespace,
        NAME,
        fallback_is(False),
        30,
        "the fallback gives the traffic back once 1.1.0 starts rolling out",
    )
    assert service_selector(kube_api, namespace) == SELECTS_MODEL, "the model's again"
    wait_for(lambda: md.serving(kube_api, namespace, NAME, "1.1.0"), 90, message="1.1.0 promoted")
    released = events_of(kube_api, namespace, "FallbackReleased")
    assert released and "1.1.0 rolling out" in released[0].message, [e.message for e in released]
    assert rollguard.metric("rollguard_fallback_active", name=NAME) == 0
