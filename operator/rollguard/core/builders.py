"""Pure builders of the child manifests a ModelDeployment owns.

Each returns a complete object for server-side apply under one field manager; nothing here talks
to the API server. Golden files in tests/golden/ pin their output.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from rollguard.api.spec import ModelDeploymentSpec, ModelRef, Runtime
from rollguard.api.status import RevisionRef
from rollguard.core import naming, policy

Manifest = dict[str, Any]
CONTAINER_NAME = "model-server"
PORT_NAME = "http"


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment the children belong to."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{naming.GROUP}/{naming.VERSION}",
            "kind": naming.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": {**self.common_labels(), **(labels or {})},
            "ownerReferences": [self.reference()],
        }

    def common_labels(self) -> dict[str, str]:
        return {
            naming.LABEL_NAME: self.name,
            naming.LABEL_INSTANCE: self.name,
            naming.LABEL_MANAGED_BY: "rollguard",
            naming.LABEL_MD: self.name,
        }


def _container(model: ModelRef, runtime: Runtime, rollout_id: str) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "MODEL_NAME", "value": model.name},
        {"name": "MODEL_VERSION", "value": model.version},
        {"name": "MODEL_URI", "value": model.uri},
        {"name": "ROLLGUARD_ROLLOUT_ID", "value": rollout_id},
    ]
    if model.format:
        env.append({"name": "MODEL_FORMAT", "value": model.format})
    env += [var.model_dump(mode="json", by_alias=True, exclude_none=True) for var in runtime.env]
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": runtime.image,
        "ports": [{"name": PORT_NAME, "containerPort": runtime.port, "protocol": "TCP"}],
        "env": env,
        "readinessProbe": runtime.readiness_probe
        or {"tcpSocket": {"port": PORT_NAME}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": runtime.liveness_probe
        or {"tcpSocket": {"port": PORT_NAME}, "initialDelaySeconds": 30, "periodSeconds": 10},
    }
    if runtime.command:
        container["command"] = list(runtime.command)
    if runtime.args:
        container["args"] = list(runtime.args)
    resources = {key: value for key, value in runtime.resources.model_dump().items() if value}
    if resources:
        container["resources"] = resources
    return container


def revision_ref(template: dict[str, Any], revision: str) -> RevisionRef:
    model = ModelRef.model_validate(template["model"])
    runtime = Runtime.model_validate(template["runtime"])
    return RevisionRef(revision=revision, version=model.version, image=runtime.image, uri=model.uri, template=template)


def pod_labels(owner: Owner, target: RevisionRef) -> dict[str, str]:
    model = ModelRef.model_validate(target.template["model"])
    return {
        **owner.common_labels(),
        naming.LABEL_MODEL: model.name,
        naming.LABEL_VERSION: model.version,
        naming.LABEL_ROLLOUT_ID: target.revision,
    }


def deployment(
    owner: Owner,
    spec: ModelDeploymentSpec,
    target: RevisionRef,
    replicas: int | None,
    role: str,
    pod_policy: policy.PodPolicy = policy.LOCKED_DOWN,
) -> Manifest:
    """One Deployment per revision. `replicas=None` leaves the count to the autoscaler.

    The ServiceAccount, token mount and securityContext are the platform's (`pod_policy`).

    The role (stable/canary) is a label on the Deployment, never on its pods, so promotion
    changes no pod template and restarts nothing.
    """
    model = ModelRef.model_validate(target.template["model"])
    runtime = Runtime.model_validate(target.template["runtime"])
    labels = pod_labels(owner, target)
    container = _container(model, runtime, target.revision)
    if pod_policy.restricted_security_context:
        container["securityContext"] = copy.deepcopy(policy.CONTAINER_SECURITY_CONTEXT)
    pod_spec: dict[str, Any] = {"containers": [container]}
    if runtime.node_selector:
        pod_spec["nodeSelector"] = dict(runtime.node_selector)
    if runtime.tolerations:
        pod_spec["tolerations"] = list(runtime.tolerations)
    pod_spec.update(copy.deepcopy(policy.pod_identity(target.template["runtime"], pod_policy)))
    if spec.spread is not None:
        pod_spec["topologySpreadConstraints"] = [
            {
                "maxSkew": spec.spread.max_skew,
                "topologyKey": spec.spread.topology_key,
                "whenUnsatisfiable": spec.spread.when_unsatisfiable,
                "labelSelector": {"matchLabels": {naming.LABEL_ROLLOUT_ID: target.revision}},
            }
        ]
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": {naming.LABEL_MD: owner.name, naming.LABEL_ROLLOUT_ID: target.revision}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
        "progressDeadlineSeconds": spec.progress_deadline_seconds,
        "revisionHistoryLimit": 1,
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    metadata = owner.metadata(naming.deployment_name(owner.name, target.revision), {**labels, naming.LABEL_ROLE: role})
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": deployment_spec}


def service(
    owner: Owner, port: int, name: str | None = None, rollout_id: str | None = None, fallback: bool = False
) -> Manifest:
    """The model's Service; with rollout_id, a role Service (stable/canary) for a traffic router; with
    fallback, it selects the fallback's pods instead (a selector change: no pod restarts)."""
    selector = {naming.LABEL_MD: owner.name}
    if rollout_id is not None:
        selector[naming.LABEL_ROLLOUT_ID] = rollout_id
    if fallback:
        selector = {naming.LABEL_FALLBACK: owner.name}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owner.metadata(name or owner.name),
        "spec": {
            "selector": selector,
            "ports": [{"name": PORT_NAME, "port": port, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def fallback_deployment(
    owner: Owner,
    spec: ModelDeploymentSpec,
    target: RevisionRef,
    replicas: int,
    pod_policy: policy.PodPolicy = policy.LOCKED_DOWN,
) -> Manifest:
    """The warm fallback (spec.fallback), built like a revision under the same pod policy.

    Its pods carry rollguard.io/fallback-for instead of rollguard.io/model-deployment, so the model's
    Services, its PodDisruptionBudget and its metrics never select them until the Services are switched.
    The Deployment has no rollout-id label: it is not a revision, and is never retired as one.
    """
    manifest = deployment(owner, spec, target, replicas, "fallback", pod_policy)
    pod_labels = manifest["spec"]["template"]["metadata"]["labels"]
    del pod_labels[naming.LABEL_MD]
    pod_labels[naming.LABEL_FALLBACK] = owner.name
    # One Deployment across fallback versions: its selector (immutable) must not name a revision.
    manifest["spec"]["selector"] = {"matchLabels": {naming.LABEL_FALLBACK: owner.name}}
    metadata = manifest["metadata"]
    metadata["name"] = naming.fallback_name(owner.name)
    del metadata["labels"][naming.LABEL_ROLLOUT_ID]
    metadata["labels"][naming.LABEL_FALLBACK] = owner.name
    return manifest


def disruption_budget(owner: Owner, min_available: int) -> Manifest:
    """An integer minAvailable: with maxUnavailable (or a percent) kcm's disruption controller looks up every
    selected pod's controller and its scale, and fails (CalculateExpectedPodCountFailed) while a retired
    revision's pods outlive their ReplicaSet; an integer minAvailable counts pods only (kubernetes
    pkg/controller/disruption/disruption.go, getExpectedPodCount and getExpectedScale)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": owner.metadata(owner.name),
        "spec": {
            "minAvailable": min_available,
            "selector": {"matchLabels": {naming.LABEL_MD: owner.name}},
        },
    }


def autoscaler(owner: Owner, spec: ModelDeploymentSpec, stable_revision: str) -> Manifest:
    assert spec.autoscaling is not None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": owner.metadata(owner.name),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": naming.deployment_name(owner.name, stable_revision),
            },
            "minReplicas": spec.autoscaling.min_replicas,
            "maxReplicas": spec.autoscaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": spec.autoscaling.target_cpu_utilization_percent,
                        },
                    },
                }
            ],
        },
    }
