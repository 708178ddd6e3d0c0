"""The harness itself works: a real apiserver, controllers, kwok nodes, RBAC, Prometheus, simulator."""

from __future__ import annotations

import copy
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e import objects
from e2e.cluster import ControlPlane
from e2e.objects import names, required
from e2e.processes import pid_matches
from e2e.waiting import http_get, prom_query, prom_scalar, wait_for

# ---- controllers and kwok ----------------------------------------------------------------------


def _ready_replicas(apps: client.AppsV1Api, namespace: str, name: str) -> int:
    status = apps.read_namespaced_deployment_status(name, namespace).status
    return (status.ready_replicas if status else None) or 0


def _wait_ready_replicas(apps: client.AppsV1Api, namespace: str, name: str, replicas: int) -> None:
    wait_for(
        lambda: _ready_replicas(apps, namespace, name),
        60,
        message=f"Deployment {name} has {replicas} ready replicas",
        until=lambda n: n == replicas,
    )


def test_deployment_reaches_ready_replicas(namespace: str, kube_api: client.ApiClient) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, objects.deployment("web", replicas=3))

    _wait_ready_replicas(apps, namespace, "web", 3)
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 3, f"expected 3 pods of web, got {names(pods)}"
    nodes = {required(p.spec, "pod spec").node_name for p in pods}
    assert nodes <= {"kwok-node-0", "kwok-node-1"}, f"pods should run on the kwok nodes, ran on {nodes}"


def test_deleting_a_deployment_garbage_collects_replicasets_and_pods(
    namespace: str, kube_api: client.ApiClient
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, objects.deployment("gc", replicas=2))
    _wait_ready_replicas(apps, namespace, "gc", 2)

    apps.delete_namespaced_deployment("gc", namespace)

    wait_for(
        lambda: names(apps.list_namespaced_replica_set(namespace).items),
        60,
        message="the garbage collector deletes gc's ReplicaSet",
        until=lambda left: left == set(),
    )
    wait_for(
        lambda: names(core.list_namespaced_pod(namespace).items),
        60,
        message="gc's pods are deleted (garbage collector, then kwok's pod-delete stage)",
        until=lambda left: left == set(),
    )


# ---- API server: schema validation and authorisation --------------------------------------------

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.harness.test"},
    "spec": {
        "group": "harness.test",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "colour": {"type": "string", "enum": ["red", "green"]},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def _widget(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "harness.test/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


def _established(ext: client.ApiextensionsV1Api, name: str) -> bool:
    status = ext.read_custom_resource_definition(name).status
    return any(c.type == "Established" and c.status == "True" for c in (status.conditions if status else None) or [])


def test_structural_crd_schema_is_enforced_by_the_api_server(namespace: str, kube_api: client.ApiClient) -> None:
    ext, custom = client.ApiextensionsV1Api(kube_api), client.CustomObjectsApi(kube_api)
    ext.create_custom_resource_definition(required(client.V1CustomResourceDefinition.from_dict(WIDGET_CRD), "CRD"))
    try:
        wait_for(
            lambda: _established(ext, "widgets.harness.test"), 30, message="CRD widgets.harness.test is Established"
        )
        created = wait_for(  # discovery of a new CRD can lag its Established condition by a moment
            lambda: custom.create_namespaced_custom_object(
                "harness.test", "v1", namespace, "widgets", _widget("ok", {"size": 3, "colour": "red"})
            ),
            30,
            message="a valid Widget is accepted",
        )
        assert cast(dict[str, Any], created)["spec"] == {"size": 3, "colour": "red"}

        with pytest.raises(ApiException) as rejected:
            custom.create_namespaced_custom_object(
                "harness.test", "v1", namespace, "widgets", _widget("bad", {"size": 0, "colour": "purple"})
            )
        assert rejected.value.status == 422, f"expected 422 Invalid, got {rejected.value.status}"
        message = json.loads(rejected.value.body or "{}")["message"]
        assert "spec.size in body should be greater than or equal to 1" in message, f"minimum not enforced: {message}"
        assert 'spec.colour: Unsupported value: "purple"' in message, f"enum not enforced: {message}"
    finally:
        ext.delete_custom_resource_definition("widgets.harness.test")


def _service_account(core: client.CoreV1Api, namespace: str, name: str) -> None:
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name)))


def _unprivileged_token(control_plane: ControlPlane, namespace: str) -> str:
    """The static `nobody` user's token; on "any cluster", that of a ServiceAccount with no bindings."""
    if control_plane.nobody_token is not None:
        return control_plane.nobody_token
    _service_account(client.CoreV1Api(control_plane.api), namespace, "nobody")
    return control_plane.kubectl("create", "token", "nobody", "-n", namespace, check=True).stdout.strip()


def test_rbac_refuses_a_user_without_grants_and_allows_admin(
    namespace: str, control_plane: ControlPlane, kube_api: client.ApiClient
) -> None:
    client.CoreV1Api(kube_api).list_namespaced_pod(namespace)  # admin (system:masters) may

    nobody = control_plane.api_client(_unprivileged_token(control_plane, namespace))
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(nobody).list_namespaced_pod(namespace)
    assert refused.value.status == 403, f"expected 403 Forbidden for nobody, got {refused.value.status}"
    assert "cannot list resource" in str(refused.value.body), refused.value.body


def test_service_account_token_works_only_within_its_role(
    namespace: str, control_plane: ControlPlane, kube_api: client.ApiClient
) -> None:
    core, rbac = client.CoreV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    _service_account(core, namespace, "pod-reader")
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="pod-reader", namespace=namespace)],
        ),
    )

    token = control_plane.kubectl("create", "token", "pod-reader", "-n", namespace, "--duration=10m", check=True)
    sa_core = client.CoreV1Api(control_plane.api_client(token.stdout.strip()))

    sa_core.list_namespaced_pod(namespace)  # granted
    forbidden: list[tuple[str, Callable[[], object]]] = [
        (
            "create a ConfigMap in its namespace",
            lambda: sa_core.create_namespaced_config_map(
                namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="nope"))
            ),
        ),
        ("delete pods in its namespace", lambda: sa_core.delete_collection_namespaced_pod(namespace)),
        ("list pods in kube-system", lambda: sa_core.list_namespaced_pod("kube-system")),
    ]
    for what, call in forbidden:
        with pytest.raises(ApiException) as refused:
            call()
        assert refused.value.status == 403, f"the ServiceAccount must not {what}; got {refused.value.status}"


# ---- simulated data plane, Prometheus, Gateway API ------------------------------------------------


def _ratio(prometheus_url: str, numerator: str, denominator: str) -> float | None:
    value = prom_scalar(prometheus_url, f"sum(rate({numerator}[20s])) / sum(rate({denominator}[20s]))")
    return None if value is None or math.isnan(value) else value  # NaN until there are two samples


def test_simulator_series_reach_prometheus_with_the_configured_error_rate(
    namespace: str, control_plane: ControlPlane, kube_api: client.ApiClient, prometheus_url: str
) -> None:
    apps = client.AppsV1Api(kube_api)
    pods_of = objects.model_deployment_pods(
        "demo-v1", model_deployment="demo", model="iris", version="v1", replicas=2, env={"SIMULATED_ERROR_RATE": "0.2"}
    )
    apps.create_namespaced_deployment(namespace, pods_of)
    _wait_ready_replicas(apps, namespace, "demo-v1", 2)

    selector = f'model_requests_total{{namespace="{namespace}",model="iris",version="v1"}}'
    seen = wait_for(
        lambda: {s["metric"]["pod"] for s in prom_query(prometheus_url, selector)},
        30,
        message=f"Prometheus has {selector} for both pods",
        until=lambda pods: len(pods) == 2,
    )
    expected = names(client.CoreV1Api(kube_api).list_namespaced_pod(namespace).items)
    assert seen == expected, f"series should be per pod: expected {expected}, got {seen}"
    for family in (
        "model_request_duration_seconds_bucket",
        "model_feature_drift_score",
        "model_prediction_drift_score",
        "model_drift_samples_total",
    ):
        assert prom_query(prometheus_url, f'{family}{{namespace="{namespace}"}}'), f"{family} missing"

    ns = f'namespace="{namespace}"'
    wait_for(
        lambda: _ratio(prometheus_url, f'model_requests_total{{code="500",{ns}}}', f"model_requests_total{{{ns}}}"),
        60,
        message="Prometheus error ratio over 20s is 0.2 +- 10%",
        until=lambda r: r is not None and abs(r - 0.2) <= 0.02,
    )

    apps.patch_namespaced_deployment_scale("demo-v1", namespace, {"spec": {"replicas": 0}})
    metrics_url = f"{required(control_plane.simulator_url, 'simulator')}/metrics"
    wait_for(
        lambda: http_get(metrics_url)[1],
        30,
        message=f"the simulator drops the series of {namespace} once its pods are gone",
        until=lambda text: f'namespace="{namespace}"' not in text,
    )


def test_httproute_weights_shift_the_simulated_traffic(
    namespace: str, control_plane: ControlPlane, kube_api: client.ApiClient, prometheus_url: str
) -> None:
    control_plane.install_gateway_api_crds()
    custom, core, apps = client.CustomObjectsApi(kube_api), client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    group, version, plural = objects.GATEWAY_API
    route = wait_for(
        lambda: custom.create_namespaced_custom_object(
            group, version, namespace, plural, objects.http_route("demo", {"demo-stable": 80, "demo-canary": 20})
        ),
        30,
        message="an HTTPRoute (gateway.networking.k8s.io/v1) can be created",
    )
    backend_refs = cast(dict[str, Any], route)["spec"]["rules"][0]["backendRefs"]
    assert [b["weight"] for b in backend_refs] == [80, 20], f"the route keeps its weights: {backend_refs}"

    for track in ("stable", "canary"):
        core.create_namespaced_service(namespace, objects.service(f"demo-{track}", {"track": track}))
    # By replicas the canary would get 3/4 of the traffic; the route's weights must win (80/20).
    for track, model_version, replicas in (("stable", "v1", 1), ("canary", "v2", 3)):
        pods_of = objects.model_deployment_pods(
            f"demo-{track}",
            model_deployment="demo",
            model="iris",
            version=model_version,
            replicas=replicas,
            labels={"track": track},
            env={"SIMULATED_TOTAL_RPS": "40"},
        )
        apps.create_namespaced_deployment(namespace, pods_of)
    _wait_ready_replicas(apps, namespace, "demo-stable", 1)
    _wait_ready_replicas(apps, namespace, "demo-canary", 3)

    ns = f'namespace="{namespace}"'

    def share_and_total() -> tuple[float | None, float | None]:
        share = _ratio(prometheus_url, f'model_requests_total{{version="v1",{ns}}}', f"model_requests_total{{{ns}}}")
        return share, prom_scalar(prometheus_url, f"sum(rate(model_requests_total{{{ns}}}[20s]))")

    def as_weighted(observed: tuple[float | None, float | None]) -> bool:
        share, total = observed
        return share is not None and total is not None and abs(share - 0.8) <= 0.08 and abs(total - 40) <= 4

    # rate() under-reads while a series is younger than its window, so also wait for the full 40 rps.
    wait_for(
        share_and_total,
        90,
        until=as_weighted,
        message="stable (v1) gets 80% +- 10% of SIMULATED_TOTAL_RPS=40 (+- 10%), as the HTTPRoute weights say",
    )


# ---- chaos handles ---------------------------------------------------------------------------------


def test_prometheus_can_be_restarted_and_keeps_its_data(own_prometheus: ControlPlane, prometheus_url: str) -> None:
    control_plane = own_prometheus

    # The same fixed window before and after (`@`), so samples ageing out of a sliding window cannot count.
    def window_with_samples() -> str | None:
        query = f'count_over_time(up{{job="simulator"}}[10m] @ {time.time():.3f})'
        return query if prom_scalar(prometheus_url, query) else None

    query = required(
        wait_for(window_with_samples, 30, message="Prometheus has scraped the simulator"), "a window with samples"
    )
    before = required(prom_scalar(prometheus_url, query), "sample count")

    control_plane.stop_prometheus()
    with pytest.raises(OSError):
        http_get(f"{prometheus_url}/-/ready", timeout=2)
    control_plane.start_prometheus()

    after = prom_scalar(prometheus_url, query)
    assert after is not None and after >= before, f"samples from before the restart are kept: {before} -> {after}"


def test_a_process_under_test_can_be_killed_and_restarted(control_plane: ControlPlane) -> None:
    proc = control_plane.start_process("sleeper", ["sleep", "300"])
    first_pid = proc.pid
    assert proc.is_alive()

    control_plane.kill_process("sleeper")
    assert not proc.is_alive() and proc.exit_code() == -9, f"SIGKILL ends it: exit code {proc.exit_code()}"

    control_plane.restart_process("sleeper")
    assert proc.is_alive() and proc.pid != first_pid, "restart runs the same command as a new process"
    proc.stop()
    assert not proc.is_alive()


def test_apiserver_can_be_stopped_and_started_with_its_data_kept(
    namespace: str, own_control_plane: ControlPlane, kube_api: client.ApiClient
) -> None:
    control_plane = own_control_plane
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="survivor"), data={"k": "v"})
    )

    control_plane.stop_apiserver()
    with pytest.raises(OSError):
        http_get(f"{control_plane.api_url}/readyz", timeout=2)
    down_since = time.monotonic()
    control_plane.start_apiserver()
    print(f"apiserver was down {time.monotonic() - down_since:.1f}s")

    kept = wait_for(
        lambda: core.read_namespaced_config_map("survivor", namespace),
        30,
        message="the ConfigMap written before the restart can be read",
    )
    assert kept.data == {"k": "v"}, f"data kept in etcd: {kept.data}"
    control_plane.wait_for_nodes_ready(timeout=60)


# ---- the harness survives its own chaos --------------------------------------------------------


APISERVER_OUTAGE_SECONDS = 25


def _replica_set_of(apps: client.AppsV1Api, namespace: str, name: str) -> client.V1ReplicaSet:
    (replica_set,) = apps.list_namespaced_replica_set(namespace, label_selector=f"app={name}").items
    return replica_set


def test_replicaset_status_keeps_updating_after_an_apiserver_restart(
    namespace: str, own_control_plane: ControlPlane, kube_api: client.ApiClient
) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, objects.deployment("web", replicas=2))
    _wait_ready_replicas(apps, namespace, "web", 2)
    # The ReplicaSet controller is mid-write (pods and status) when the apiserver goes away, for
    # long enough that client-go's watch backoff grows past what a test waits for.
    apps.patch_namespaced_deployment_scale(namespace=namespace, name="web", body={"spec": {"replicas": 4}})
    own_control_plane.stop_apiserver()
    time.sleep(APISERVER_OUTAGE_SECONDS)  # the outage itself is the scenario, nothing is awaited
    own_control_plane.start_apiserver()

    apps.patch_namespaced_deployment_scale(namespace=namespace, name="web", body={"spec": {"replicas": 3}})
    replica_set = wait_for(
        lambda: _replica_set_of(apps, namespace, "web"),
        20,
        message="the ReplicaSet's status reports 3 ready replicas for its current generation after the restart",
        until=lambda rs: rs.status.ready_replicas == 3 and rs.status.observed_generation == rs.metadata.generation,
    )
    assert replica_set.status.replicas == 3
    _wait_ready_replicas(apps, namespace, "web", 3)
    apps.create_namespaced_deployment(namespace, objects.deployment("fresh", replicas=2))
    _wait_ready_replicas(apps, namespace, "fresh", 2)


def test_down_stops_a_process_restarted_through_a_loaded_control_plane(tmp_path: Path) -> None:
    started = ControlPlane(tmp_path, detached=True)
    first = started.start_process("sleeper", ["sleep", "300"])
    first_pid = first.pid
    restarted_pid = None
    try:
        loaded = ControlPlane.load(tmp_path)  # as `python -m e2e.cluster status` or a chaos script would
        restarted_pid = loaded.restart_process("sleeper").pid
        assert restarted_pid != first_pid and ControlPlane.load(tmp_path).processes["sleeper"].pid == restarted_pid, (
            "state.json names the restarted pid"
        )
        down = subprocess.run(
            [sys.executable, "-m", "e2e.cluster", "down", "--state-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert down.returncode == 0, down.stderr
        wait_for(
            lambda: not pid_matches(restarted_pid or 0, "sleep"),
            15,
            message=f"`cluster down` stopped the restarted sleeper (pid {restarted_pid})",
        )
    finally:
        for pid in (first_pid, restarted_pid):
            if pid is not None and pid_matches(pid, "sleep"):
                os.kill(pid, signal.SIGKILL)


def test_a_crd_waited_for_right_after_it_is_applied_is_established(
    namespace: str, control_plane: ControlPlane, kube_api: client.ApiClient
) -> None:
    suffix = secrets.token_hex(3)
    plural = f"gadgets{suffix}"
    crd = copy.deepcopy(WIDGET_CRD)
    crd["metadata"]["name"] = f"{plural}.harness.test"
    crd["spec"]["names"] = {"plural": plural, "singular": f"gadget{suffix}", "kind": f"Gadget{suffix}"}
    applied = control_plane.kubectl("apply", "-f", "-", input=json.dumps(crd))
    assert applied.returncode == 0, applied.stderr
    try:
        control_plane.wait_for_crds_established([f"{plural}.harness.test"], timeout=30)  # no sleep before it
        assert _established(client.ApiextensionsV1Api(kube_api), f"{plural}.harness.test")
        custom = client.CustomObjectsApi(kube_api)
        body = {**_widget("ok", {"size": 3, "colour": "red"}), "kind": crd["spec"]["names"]["kind"]}
        created = wait_for(  # discovery may lag Established by a moment; admission is what is asserted
            lambda: custom.create_namespaced_custom_object("harness.test", "v1", namespace, plural, body),
            15,
            message=f"a {crd['spec']['names']['kind']} is accepted once its CRD is Established",
        )
        assert cast(dict[str, Any], created)["spec"]["size"] == 3
    finally:
        control_plane.kubectl("delete", "crd", f"{plural}.harness.test", "--wait=false")
