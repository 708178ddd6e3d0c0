"""Small builders for the Kubernetes objects e2e tests create (plain dicts, as kubectl would send)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from kubernetes import client

from e2e.traffic import MODEL_DEPLOYMENT_LABEL

T = TypeVar("T")

GATEWAY_API = ("gateway.networking.k8s.io", "v1", "httproutes")


def required(value: T | None, what: str) -> T:
    """``value``, which the API always sets but the client types as optional."""
    if value is None:
        raise AssertionError(f"{what} is missing")
    return value


def name_of(obj: Any) -> str:
    """``obj.metadata.name`` of any typed Kubernetes object."""
    return str(required(obj.metadata, "metadata").name)


def names(objs: Iterable[Any]) -> set[str]:
    return {name_of(o) for o in objs}


def deployment(
    name: str,
    *,
    replicas: int = 1,
    labels: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> client.V1Deployment:
    """A Deployment whose pods carry ``labels`` (plus ``app=<name>``) and whose container has ``env``.

    The image is never pulled: kwok only pretends to run pods.
    """
    pod_labels = {"app": name, **(labels or {})}
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "containers": [
                        {
                            "name": "model",
                            "image": "registry.invalid/model-server:fake",
                            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                        }
                    ]
                },
            },
        },
    }
    return required(client.V1Deployment.from_dict(body), "Deployment")


def model_deployment_pods(
    name: str,
    *,
    model_deployment: str,
    model: str,
    version: str,
    replicas: int = 1,
    labels: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> client.V1Deployment:
    """A Deployment of simulated model servers: the simulator serves metrics for its ready pods."""
    return deployment(
        name,
        replicas=replicas,
        labels={MODEL_DEPLOYMENT_LABEL: model_deployment, **(labels or {})},
        env={"MODEL_NAME": model, "MODEL_VERSION": version, **(env or {})},
    )


def service(name: str, selector: Mapping[str, str], port: int = 80) -> client.V1Service:
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ServiceSpec(selector=dict(selector), ports=[client.V1ServicePort(port=port, target_port=8080)]),
    )


def http_route(name: str, backends: Mapping[str, int], gateway: str = "e2e-gateway", port: int = 80) -> dict[str, Any]:
    """An HTTPRoute sending traffic to Services ``{service name: weight}``."""
    group, version, _ = GATEWAY_API
    return {
        "apiVersion": f"{group}/{version}",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": gateway}],
            "rules": [{"backendRefs": [{"name": svc, "port": port, "weight": w} for svc, w in backends.items()]}],
        },
    }
