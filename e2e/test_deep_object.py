"""A ModelDeployment nested ~1,000 deep can never be stored in its spec, and never stops the operator.

The runtime's Kubernetes types have their real structure (no x-kubernetes-preserve-unknown-fields),
so the API server refuses the deep part (strict field validation, kubectl's default) or prunes it
(fieldValidation=Ignore). One deep structure remains in any author's reach: metadata.managedFields
(free-form fieldsV1, up to the API server's 10,000 levels), which every LIST and watch returns; the
operator raises Python's recursion limit so kopf decodes it (rollguard/__main__.py). Meanwhile an
operator watching both namespaces promotes a healthy canary in the other one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e import md
from e2e.rollguard_process import RollguardProcess
from e2e.test_canary import canary, start_stable
from e2e.waiting import wait_for
from rollguard.__main__ import JSON_DEPTH_LIMIT

DEPTH = 1_000
MANAGED_FIELDS_DEPTH = 9_000  # the API server refuses JSON nested 10,000 deep


def deep_manifest(name: str, where: str) -> str:
    """JSON text (json.dumps and yaml recurse, so it is built as text) with DEPTH levels at `where`."""
    body = md.manifest(name, replicas=1)
    body["spec"]["runtime"]["readinessProbe"] = {"tcpSocket": {"port": 8080}}
    marker = '"__deep__"'
    if where == "unknown field":
        body["spec"]["runtime"]["readinessProbe"]["x"] = "__deep__"
        nested = '{"x":' * DEPTH + "{}" + "}" * DEPTH
    else:  # a typed field: exec.command is a list of strings
        body["spec"]["runtime"]["readinessProbe"] = {"exec": {"command": "__deep__"}}
        nested = "[" * DEPTH + "]" * DEPTH
    return json.dumps(body).replace(marker, nested)


def deepen_managed_fields(control_plane: Any, namespace: str, name: str, depth: int) -> None:
    """What any author can do to their own object: metadata.managedFields[].fieldsV1 is free-form JSON."""
    fields = '{"f:x":' * depth + "{}" + "}" * depth
    entry = {"manager": "tenant", "operation": "Update", "apiVersion": f"{md.GROUP}/{md.VERSION}"}
    entry |= {"time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": "__deep__"}}
    patch = json.dumps({"metadata": {"managedFields": [entry]}}).replace('"__deep__"', fields)
    patched = control_plane.kubectl("patch", "-n", namespace, "modeldeployment", name, "--type=merge", "-p", patch)
    assert patched.returncode == 0, f"the API server stores a {depth}-deep managedFields: {patched.stderr}"
    path = f"/apis/{md.GROUP}/{md.VERSION}/namespaces/{namespace}/{md.PLURAL}/{name}"
    stored = control_plane.kubectl("get", "--raw", path).stdout
    assert stored.count('"f:x"') == depth, f"expected {depth} levels in managedFields, got {stored.count('f:x')}"


def depth_of(value: Any) -> int:
    """Nesting depth, iteratively (the point is that nothing recursed on the way here)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
        stack.extend((child, level + 1) for child in children)
    return deepest


@pytest.fixture(autouse=True, scope="module")
def decode_what_the_api_server_serves() -> Iterator[None]:
    """This test process reads the deep objects too (kubernetes client, teardown): same limit as the operator."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, JSON_DEPTH_LIMIT * 5))
    yield
    sys.setrecursionlimit(previous)


def test_a_deep_probe_is_refused_with_the_field_named(control_plane: Any, namespace: str, crd: None) -> None:
    refused = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=deep_manifest("deep", "unknown field"))
    assert refused.returncode != 0, "a 1,000-deep unknown field should be refused under strict field validation"
    assert 'unknown field "spec.runtime.readinessProbe.x"' in refused.stderr, refused.stderr
    typed = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=deep_manifest("deep", "typed field"))
    assert typed.returncode != 0, "a 1,000-deep list where strings belong should be refused"
    assert "spec.runtime.readinessProbe.exec.command" in typed.stderr, typed.stderr
    assert md.get(control_plane.api_client(), namespace, "deep") is None, "nothing is stored"


def test_a_pruned_deep_object_runs_and_another_namespace_is_promoted(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, second_namespace: str, crd: None
) -> None:
    lenient = control_plane.kubectl(
        "apply", "--validate=false", "-n", second_namespace, "-f", "-", input=deep_manifest("deep", "unknown field")
    )
    assert lenient.returncode == 0, f"without strict validation the deep field is pruned, not refused: {lenient.stderr}"
    stored = md.get(kube_api, second_namespace, "deep")
    assert stored is not None and stored["spec"]["runtime"]["readinessProbe"] == {"tcpSocket": {"port": 8080}}, (
        f"the API server should have pruned the deep field: {stored and stored['spec']['runtime']}"
    )
    assert depth_of(stored) < 20, f"the stored object is {depth_of(stored)} levels deep"
    # The one deep structure an author can still store: their object's managedFields, read by every LIST.
    deepen_managed_fields(control_plane, second_namespace, "deep", MANAGED_FIELDS_DEPTH)

    operator = RollguardProcess(
        kubeconfig=control_plane.kubeconfig,
        log_file=control_plane.log_dir / f"rollguard-{namespace}-two-namespaces.log",
        namespaces=[namespace, second_namespace],
        prometheus_url=control_plane.prometheus_url,
    ).start()
    try:
        start_stable(control_plane, kube_api, namespace, canary("healthy", "1.0.0"))
        md.apply(control_plane, second_namespace, md.manifest("deep-later", replicas=1))
        deepen_managed_fields(control_plane, second_namespace, "deep-later", MANAGED_FIELDS_DEPTH)  # via the watch
        md.apply(control_plane, namespace, canary("healthy", "1.1.0"))
        wait_for(lambda: md.serving(kube_api, namespace, "healthy", "1.1.0"), 90, message="1.1.0 promoted")
        for name in ("deep", "deep-later"):
            wait_for(lambda n=name: md.serving(kube_api, second_namespace, n, "1.0.0"), 60, message=f"{name} runs")
        assert operator.proc is not None and operator.proc.poll() is None, "the operator is still running"
        failures = [r for r in operator.logs() if r.get("exception") or r.get("exc_info")]
        assert not failures, f"no exception records while the deep object exists: {failures[:3]}"
    finally:
        operator.stop()


def test_a_deep_object_stored_under_a_free_form_crd_is_pruned_on_read(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, start_rollguard: Callable[..., RollguardProcess]
) -> None:
    """Upgrading from a CRD whose probes were free-form: what etcd holds is pruned when read, so
    neither the watcher nor the models ever see the deep part. (The operator starts after the upgrade.)"""
    loose = yaml.safe_load((md.REPO / "crds" / "modeldeployments.rollguard.io.yaml").read_text())
    runtime = loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["runtime"]
    runtime["properties"]["readinessProbe"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    try:
        installed = control_plane.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump(loose)
        )
        assert installed.returncode == 0, installed.stderr
        wait_for(
            lambda: (
                control_plane.kubectl(
                    "apply", "-n", namespace, "-f", "-", input=deep_manifest("stored", "unknown field")
                ).returncode
                == 0
            ),
            30,
            message="the free-form CRD stores a 1,000-deep probe",
        )
    finally:
        md.install_crd(control_plane)

    def pruned() -> bool:
        text = control_plane.kubectl("get", "-n", namespace, "modeldeployment", "stored", "-o", "json").stdout
        return len(text) < 50_000 and json.loads(text)["spec"]["runtime"]["readinessProbe"] == {
            "tcpSocket": {"port": 8080}
        }

    wait_for(pruned, 30, message="the stored deep field pruned on read under the committed CRD")
    rollguard = start_rollguard()
    wait_for(lambda: md.serving(kube_api, namespace, "stored", "1.0.0"), 60, message="the object runs")
    assert rollguard.proc is not None and rollguard.proc.poll() is None, "the operator is still running"
    exceptions = [r for r in rollguard.logs() if r.get("exception") or r.get("exc_info")]
    assert not exceptions, f"no exception records: {exceptions[:3]}"
