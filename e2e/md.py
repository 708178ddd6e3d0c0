"""Helpers to write and read ModelDeployments in e2e tests, the way a user would see them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e.waiting import wait_for

GROUP, VERSION, PLURAL = "rollguard.io", "v1alpha1", "modeldeployments"
REPO = Path(__file__).resolve().parents[1]


def manifest(
    name: str,
    version: str = "1.0.0",
    replicas: int = 3,
    env: dict[str, str] | None = None,
    **spec_overrides: Any,
) -> dict[str, Any]:
    """A ModelDeployment whose pods carry simulator env (error rate, latency, drift) for scenarios."""
    spec: dict[str, Any] = {
        "model": {"name": name, "version": version, "uri": f"s3://models/{name}/{version}", "format": "sklearn"},
        "runtime": {
            "image": "docker.io/seldonio/mlserver:1.6.1",
            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        },
        "replicas": replicas,
    }
    spec.update(copy.deepcopy(spec_overrides))
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": name}, "spec": spec}


def apply(cp: Any, namespace: str, body: dict[str, Any]) -> None:
    """kubectl apply, as a user (or a GitOps tool) would."""
    result = cp.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
    assert result.returncode == 0, f"kubectl apply failed: {result.stderr}"


def get(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
        return found
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def status(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    body = get(api, namespace, name) or {}
    return dict(body.get("status") or {})


def condition(api: client.ApiClient, namespace: str, name: str, type_: str) -> dict[str, Any] | None:
    return next((c for c in status(api, namespace, name).get("conditions", []) if c["type"] == type_), None)


def has_condition(status: dict[str, Any], type_: str, value: str = "True") -> bool:
    """True when status.conditions holds `type_` with status `value`."""
    return any(c["type"] == type_ and c["status"] == value for c in status.get("conditions", []))


def serving(api: client.ApiClient, namespace: str, name: str, version: str) -> bool:
    """`version` serves and Ready=True (what `kubectl wait --for=condition=Ready` sees)."""
    current = status(api, namespace, name)
    return current.get("servingVersion") == version and has_condition(current, "Ready")


def wait_status(
    api: client.ApiClient, namespace: str, name: str, predicate: Any, timeout: float, message: str
) -> dict[str, Any]:
    """Wait until predicate(status) holds; returns that status."""
    result: dict[str, Any] = wait_for(
        lambda: status(api, namespace, name), timeout, interval=0.5, message=message, until=predicate
    )
    return result


def wait_phase(api: client.ApiClient, namespace: str, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
    return wait_status(
        api, namespace, name, lambda s: s.get("phase") == phase, timeout, f"{namespace}/{name} phase {phase}"
    )


def deployments(api: client.ApiClient, namespace: str, name: str) -> list[client.V1Deployment]:
    found = client.AppsV1Api(api).list_namespaced_deployment(
        namespace, label_selector=f"rollguard.io/model-deployment={name}"
    )
    return list(found.items)


def ready_pods_by_version(api: client.ApiClient, namespace: str, name: str) -> dict[str, int]:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"rollguard.io/model-deployment={name}")
    counts: dict[str, int] = {}
    for pod in pods.items:
        if pod.metadata.deletion_timestamp:
            continue
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        if ready:
            version = pod.metadata.labels.get("rollguard.io/version", "?")
            counts[version] = counts.get(version, 0) + 1
    return counts


def events(api: client.ApiClient, namespace: str, name: str) -> list[client.CoreV1Event]:
    found = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=ModelDeployment"
    )
    return list(found.items)


def install_crd(cp: Any) -> None:
    """Server-side apply of the committed CRD, then wait until it is Established."""
    crd = REPO / "crds" / "modeldeployments.rollguard.io.yaml"
    result = cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    assert result.returncode == 0, f"CRD apply failed: {result.stderr}"
    cp.wait_for_crds_established(["modeldeployments.rollguard.io"], timeout=60)
