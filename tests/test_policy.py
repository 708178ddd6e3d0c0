"""The platform's pod policy: what a ModelDeployment author can and cannot make the operator's pods use."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import ModelDeploymentStatus
from rollguard.core import builders, naming
from rollguard.core.policy import PodPolicy, violations
from rollguard.core.rollout import Inputs, decide
from rollguard.settings import Settings

GOLDEN_INPUT = Path(__file__).parent / "golden" / "input-modeldeployment.yaml"
LOCKED = PodPolicy()


def runtime(**fields: Any) -> dict[str, Any]:
    return {"image": "docker.io/seldonio/mlserver:1.6.1", **fields}


def test_plain_runtime_needs_nothing_from_the_platform() -> None:
    assert violations(runtime(env=[{"name": "A", "value": "1"}]), LOCKED) == []


def test_other_service_account_is_refused_naming_field_value_and_setting() -> None:
    found = violations(runtime(serviceAccountName="cluster-admin-sa"), LOCKED)
    assert len(found) == 1, found
    assert found[0].startswith("spec.runtime.serviceAccountName: 'cluster-admin-sa' is not allowed"), found[0]
    assert "ROLLGUARD_POD_ALLOWED_SERVICE_ACCOUNTS" in found[0] and "podPolicy.serviceAccounts" in found[0], found[0]


def test_service_account_allowed_by_pattern_or_as_the_platform_default() -> None:
    policy = PodPolicy(default_service_account="models", service_accounts=("fraud-*",))
    assert violations(runtime(serviceAccountName="fraud-detector"), policy) == []
    assert violations(runtime(serviceAccountName="models"), policy) == [], "the platform's own default is allowed"
    assert violations(runtime(serviceAccountName="payments"), policy), "a name outside the patterns is refused"


@pytest.mark.parametrize(
    ("fields", "path", "setting"),
    [
        (
            {"env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]},
            "env[0].valueFrom.secretKeyRef.name: 'db'",
            "ROLLGUARD_POD_ALLOWED_SECRETS",
        ),
        (
            {"env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]},
            "env[0].valueFrom.configMapKeyRef.name: 'cfg'",
            "ROLLGUARD_POD_ALLOWED_CONFIG_MAPS",
        ),
        ({"envFrom": [{"secretRef": {"name": "db"}}]}, "envFrom[0].secretRef.name: 'db'", "ALLOWED_SECRETS"),
        ({"volumes": [{"name": "v", "secret": {"secretName": "tls"}}]}, "volumes[0].secret.secretName", "SECRETS"),
        (
            {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "weights"}}]},
            "volumes[0].persistentVolumeClaim.claimName: 'weights'",
            "ROLLGUARD_POD_ALLOWED_PERSISTENT_VOLUME_CLAIMS",
        ),
        (
            {"volumes": [{"name": "v", "projected": {"sources": [{"configMap": {"name": "c"}}]}}]},
            "volumes[0].projected.sources[0].configMap.name: 'c'",
            "CONFIG_MAPS",
        ),
        ({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}, "tolerations[0].key: 'dedicated'", "TOLERA"),
        ({"tolerations": [{"operator": "Exists"}]}, "tolerations[0].key: ''", "tolerates every taint"),
    ],
)
def test_references_to_other_objects_are_refused_by_default(fields: dict[str, Any], path: str, setting: str) -> None:
    found = violations(runtime(**fields), LOCKED)
    assert len(found) == 1, f"one violation expected for {fields}, got {found}"
    assert found[0].startswith(f"spec.runtime.{path}"), found[0]
    assert setting in found[0], f"the message should name how to allow it ({setting}): {found[0]}"


def test_allow_lists_let_the_named_objects_through() -> None:
    policy = PodPolicy(secrets=("model-store-*",), config_maps=("*",), toleration_keys=("nvidia.com/gpu",))
    allowed = runtime(
        env=[{"name": "K", "valueFrom": {"secretKeyRef": {"name": "model-store-credentials", "key": "k"}}}],
        envFrom=[{"configMapRef": {"name": "anything"}}],
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    assert violations(allowed, policy) == []


def test_node_selector_keys_are_open_by_default_and_can_be_narrowed() -> None:
    pinned = runtime(nodeSelector={"kubernetes.io/hostname": "node-1"})
    assert violations(pinned, LOCKED) == [], "tolerations, not selectors, guard dedicated nodes by default"
    found = violations(pinned, PodPolicy(node_selector_keys=("gpu",)))
    assert found and "nodeSelector.kubernetes.io/hostname" in found[0], found


@pytest.mark.parametrize("probe_field", ["readinessProbe", "livenessProbe", "startupProbe"])
@pytest.mark.parametrize("handler", ["httpGet", "tcpSocket"])
def test_probe_host_is_always_refused(probe_field: str, handler: str) -> None:
    probe = {handler: {"host": "169.254.169.254", "port": 80}}
    found = violations(runtime(**{probe_field: probe}), PodPolicy(secrets=("*",), service_accounts=("*",)))
    assert found == [
        f"spec.runtime.{probe_field}.{handler}.host: '169.254.169.254' is not allowed "
        "(probes always target the pod itself and no setting allows a host; remove `host`)"
    ]


def test_host_path_volume_is_refused() -> None:
    found = violations(runtime(volumes=[{"name": "v", "hostPath": {"path": "/"}}]), LOCKED)
    assert found and found[0].startswith("spec.runtime.volumes[0].hostPath"), found


def test_settings_build_the_policy_from_rollguard_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLGUARD_POD_DEFAULT_SERVICE_ACCOUNT", "models")
    monkeypatch.setenv("ROLLGUARD_POD_ALLOWED_SECRETS", "model-store-*, tls ,")
    monkeypatch.setenv("ROLLGUARD_POD_ALLOWED_TOLERATION_KEYS", "nvidia.com/gpu")
    policy = Settings().pod_policy()
    assert policy.default_service_account == "models"
    assert policy.secrets == ("model-store-*", "tls")
    assert policy.toleration_keys == ("nvidia.com/gpu",)
    assert policy.node_selector_keys == ("*",) and policy.automount_service_account_token is False


# -- what the pods get --------------------------------------------------------------------------------
def _golden_spec() -> tuple[builders.Owner, ModelDeploymentSpec]:
    body = yaml.safe_load(GOLDEN_INPUT.read_text())
    meta = body["metadata"]
    return builders.Owner(meta["name"], meta["namespace"], meta["uid"]), ModelDeploymentSpec.model_validate(
        body["spec"]
    )


def _pod_spec(policy: PodPolicy, **runtime_changes: Any) -> dict[str, Any]:
    owner, spec = _golden_spec()
    spec = spec.model_copy(update={"runtime": spec.runtime.model_copy(update=runtime_changes)})
    template = naming.template_of(spec)
    ref = builders.revision_ref(template, naming.revision_of(template))
    pod: dict[str, Any] = builders.deployment(owner, spec, ref, 2, "stable", policy)["spec"]["template"]["spec"]
    return pod


def test_pods_are_restricted_by_default() -> None:
    pod = _pod_spec(LOCKED, service_account_name=None)
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False, "no API token in model pods unless the platform allows it"
    assert "serviceAccountName" not in pod, "without a platform default the namespace's `default` SA is used"


def test_platform_default_service_account_and_token_mount() -> None:
    pod = _pod_spec(
        PodPolicy(default_service_account="models", automount_service_account_token=True), service_account_name=None
    )
    assert pod["serviceAccountName"] == "models" and pod["automountServiceAccountToken"] is True, pod


def test_restricted_security_context_can_be_turned_off_by_the_platform() -> None:
    pod = _pod_spec(PodPolicy(restricted_security_context=False))
    assert "securityContext" not in pod and "securityContext" not in pod["containers"][0], pod


# -- decide(): a refused revision is never written ---------------------------------------------------
def _decide(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, policy: PodPolicy) -> Any:
    return decide(
        Inputs(
            name="fraud",
            namespace="team-a",
            generation=2,
            spec=spec,
            status=status,
            annotations={},
            revisions={},
            now=datetime(2026, 11, 29, tzinfo=UTC),
            pod_policy=policy,
            metrics_configured=True,
        )
    )


def test_decide_refuses_the_revision_with_policy_violation_and_keeps_the_stable() -> None:
    base = {
        "model": {"name": "fraud", "version": "1.0.0", "uri": "s3://m/fraud/1.0.0"},
        "runtime": {"image": "docker.io/seldonio/mlserver:1.6.1"},
        "replicas": 2,
        "strategy": {"type": "Rolling"},
    }
    first = _decide(ModelDeploymentSpec.model_validate(base), ModelDeploymentStatus(), LOCKED)
    stable = first.status.model_copy(deep=True)
    assert first.workloads and not first.invalid
    stable.stable = first.workloads[0].ref
    stable.rollout = None
    bad = {**base, "model": {**base["model"], "version": "1.1.0"}}
    bad["runtime"] = {**base["runtime"], "serviceAccountName": "cluster-admin-sa"}
    decision = _decide(ModelDeploymentSpec.model_validate(bad), stable, LOCKED)
    stalled = next(c for c in decision.status.conditions if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "PolicyViolation"), stalled
    assert "spec.runtime.serviceAccountName: 'cluster-admin-sa'" in stalled.message, stalled.message
    assert decision.invalid, "the reconciler writes no child for a refused revision"
    assert [w.ref.version for w in decision.workloads] == ["1.0.0"], "the running version keeps serving"
    assert [e.reason for e in decision.events] == ["PolicyViolation"], decision.events
    allowed = _decide(ModelDeploymentSpec.model_validate(bad), stable, PodPolicy(service_accounts=("cluster-*",)))
    assert not allowed.invalid and {w.ref.version for w in allowed.workloads} == {"1.0.0", "1.1.0"}
