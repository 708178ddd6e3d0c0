"""Multi-tenant safety on the real control plane: an author who may write only ModelDeployments
gets nothing through rollguard that she could not do herself, and nothing of another team's is
touched.

The author is a real restricted identity: a ServiceAccount token whose Role grants only
modeldeployments in her namespace; every manifest here is applied with her token. The operator
runs with the token of the chart's own ServiceAccount and the chart's rendered RBAC (as in
e2e/test_chart.py), under the default pod policy (nothing allowed beyond the pod itself).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e import manifests, md
from e2e.cluster import ControlPlane
from e2e.operator_fixtures import operators
from e2e.rollguard_process import RollguardProcess
from e2e.waiting import wait_for

CHART = md.REPO / "charts" / "rollguard"
ROLLING = {"strategy": {"type": "Rolling"}}
TIMEOUT = 60


# ---- the author: may write ModelDeployments in her namespace, nothing else ------------------------


class Author:
    def __init__(self, cp: ControlPlane, namespace: str, kubeconfig: Path) -> None:
        self.cp, self.namespace, self.kubeconfig = cp, namespace, kubeconfig

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [str(self.cp.kubectl_bin), f"--kubeconfig={self.kubeconfig}", "-n", self.namespace, *args]
        return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=60, check=False)

    def apply(self, body: dict[str, Any]) -> None:
        result = self.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
        assert result.returncode == 0, f"the author's kubectl apply failed: {result.stderr}"

    def can_i(self, verb: str, resource: str) -> str:
        return self.kubectl("auth", "can-i", verb, resource).stdout.strip()


def _admin(cp: ControlPlane, *args: str, input: str | None = None) -> str:
    result = cp.kubectl(*args, input=input)
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def _apply_admin(cp: ControlPlane, namespace: str, *docs: dict[str, Any]) -> None:
    _admin(cp, "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))


@pytest.fixture
def author(control_plane: ControlPlane, namespace: str, crd: None, tmp_path: Path) -> Author:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "model-author"},
        "rules": [{"apiGroups": ["rollguard.io"], "resources": ["modeldeployments"], "verbs": ["*"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "model-author"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "model-author"},
        "subjects": [{"kind": "ServiceAccount", "name": "alice", "namespace": namespace}],
    }
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "alice"}}
    _apply_admin(control_plane, namespace, account, role, binding)
    token = _admin(control_plane, "create", "token", "alice", "-n", namespace, "--duration=1h").strip()
    user = f"system:serviceaccount:{namespace}:alice"
    kubeconfig = manifests.write_yaml(
        tmp_path / "alice.kubeconfig", manifests.kubeconfig(control_plane.api_url, token, user)
    )
    return Author(control_plane, namespace, kubeconfig)


@pytest.fixture
def operator_as_chart(
    control_plane: ControlPlane, namespace: str, crd: None, tmp_path: Path
) -> Iterator[Callable[..., RollguardProcess]]:
    """Factory: rollguard for the test's namespace with the chart ServiceAccount's token and RBAC."""
    release = f"rg-{secrets.token_hex(3)}"
    release_ns = f"{namespace}-op"
    _admin(control_plane, "create", "namespace", release_ns)
    rendered = subprocess.run(
        [
            str(control_plane.helm_bin),
            "template",
            release,
            str(CHART),
            f"--namespace={release_ns}",
            f"--set=watchNamespaces={{{namespace}}}",
            "--show-only=templates/serviceaccount.yaml",
            "--show-only=templates/rbac.yaml",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, f"helm template failed: {rendered.stderr}"
    docs = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    _admin(control_plane, "apply", "-f", "-", input=yaml.safe_dump_all(docs))
    account = next(d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount")
    token = _admin(control_plane, "create", "token", account, "-n", release_ns, "--duration=1h").strip()
    kubeconfig = manifests.write_yaml(
        tmp_path / "chart-sa.kubeconfig",
        manifests.kubeconfig(control_plane.api_url, token, user=f"system:serviceaccount:{release_ns}:{account}"),
    )
    with operators(control_plane, namespace, "-chart-sa", kubeconfig, prometheus=False) as start:
        yield start
    for doc in docs:
        if doc["kind"].startswith("Cluster"):
            control_plane.kubectl("delete", doc["kind"], doc["metadata"]["name"], "--wait=false")
    control_plane.kubectl("delete", "namespace", release_ns, "--wait=false")


def _stalled(api: client.ApiClient, namespace: str, name: str, reason: str) -> dict[str, Any]:
    def check(status: dict[str, Any]) -> bool:
        return any(
            c["type"] == "Stalled" and c["status"] == "True" and c["reason"] == reason
            for c in status.get("conditions", [])
        )

    status = md.wait_status(api, namespace, name, check, TIMEOUT, f"{namespace}/{name} Stalled={reason}")
    return next(c for c in status["conditions"] if c["type"] == "Stalled")


def _warning_event(api: client.ApiClient, namespace: str, name: str, reason: str) -> client.CoreV1Event:
    found: client.CoreV1Event = wait_for(
        lambda: next((e for e in md.events(api, namespace, name) if e.reason == reason), None),
        TIMEOUT,
        message=f"a {reason} Event on {namespace}/{name}",
    )
    assert found.type == "Warning", f"{reason} should be a Warning Event, got {found.type}"
    return found


def _ready(api: client.ApiClient, namespace: str, name: str, version: str) -> dict[str, Any]:
    return md.wait_status(
        api,
        namespace,
        name,
        lambda s: s.get("servingVersion") == version and md.has_condition(s, "Ready"),
        TIMEOUT,
        f"{namespace}/{name} serving {version}, Ready=True",
    )


# ---- the tests ------------------------------------------------------------------------------------


def test_the_author_may_write_only_model_deployments(author: Author) -> None:
    assert author.can_i("create", "modeldeployments.rollguard.io") == "yes"
    for verb, resource in [
        ("create", "pods"),
        ("create", "deployments.apps"),
        ("get", "secrets"),
        ("create", "services"),
        ("patch", "services"),
        ("delete", "horizontalpodautoscalers.autoscaling"),
        ("delete", "poddisruptionbudgets.policy"),
        ("get", "configmaps"),
        ("create", "rolebindings.rbac.authorization.k8s.io"),
    ]:
        assert author.can_i(verb, resource) == "no", f"the author must not be allowed to {verb} {resource}"


def test_another_service_account_is_refused_and_the_running_version_keeps_serving(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    namespace: str,
    author: Author,
    operator_as_chart: Callable[..., RollguardProcess],
) -> None:
    # A ServiceAccount of the namespace bound to cluster-admin: what the author must not get.
    powerful = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ops-admin"}}
    _apply_admin(control_plane, namespace, powerful)
    operator_as_chart()
    author.apply(md.manifest("fraud", "1.0.0", replicas=2, **ROLLING))
    _ready(kube_api, namespace, "fraud", "1.0.0")

    escalating = md.manifest("fraud", "1.1.0", replicas=2, **ROLLING)
    escalating["spec"]["runtime"]["serviceAccountName"] = "ops-admin"
    author.apply(escalating)
    stalled = _stalled(kube_api, namespace, "fraud", "PolicyViolation")
    assert stalled["message"].startswith("spec.runtime.serviceAccountName: 'ops-admin' is not allowed"), stalled
    assert "ROLLGUARD_POD_ALLOWED_SERVICE_ACCOUNTS" in stalled["message"], stalled["message"]
    event = _warning_event(kube_api, namespace, "fraud", "PolicyViolation")
    assert "ops-admin" in (event.message or ""), event.message
    status = md.status(kube_api, namespace, "fraud")
    assert status["servingVersion"] == "1.0.0", f"the running version keeps serving: {status}"
    versions = {d.metadata.labels["rollguard.io/version"] for d in md.deployments(kube_api, namespace, "fraud")}
    assert versions == {"1.0.0"}, f"nothing is written for the refused revision, got Deployments of {versions}"
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(
        namespace, label_selector="rollguard.io/model-deployment=fraud"
    )
    accounts = {(p.spec.service_account_name or "default", p.spec.automount_service_account_token) for p in pods.items}
    # No serviceAccountName means the namespace's `default` (this apiserver runs no ServiceAccount admission).
    assert accounts == {("default", False)}, f"model pods run as the namespace default, no token: {accounts}"


@pytest.mark.parametrize(
    ("runtime", "field", "value"),
    [
        (
            {
                "env": [
                    {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "payments-db", "key": "password"}}}
                ]
            },
            "spec.runtime.env[0].valueFrom.secretKeyRef.name",
            "payments-db",
        ),
        (
            {"readinessProbe": {"httpGet": {"host": "169.254.169.254", "path": "/latest/meta-data/", "port": 80}}},
            "spec.runtime.readinessProbe.httpGet.host",
            "169.254.169.254",
        ),
        (
            {"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]},
            "spec.runtime.tolerations[0].key",
            "node-role.kubernetes.io/control-plane",
        ),
    ],
    ids=["secret-key-ref", "probe-host", "toleration"],
)
def test_references_beyond_the_pod_are_refused(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    namespace: str,
    author: Author,
    operator_as_chart: Callable[..., RollguardProcess],
    runtime: dict[str, Any],
    field: str,
    value: str,
) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "payments-db"},
        "stringData": {"password": "s3cr3t"},
    }
    _apply_admin(control_plane, namespace, secret)
    operator_as_chart()
    body = md.manifest("leaky", "1.0.0", replicas=1, **ROLLING)
    body["spec"]["runtime"].update(runtime)
    author.apply(body)
    stalled = _stalled(kube_api, namespace, "leaky", "PolicyViolation")
    assert stalled["message"].startswith(f"{field}: {value!r} is not allowed"), stalled["message"]
    _warning_event(kube_api, namespace, "leaky", "PolicyViolation")
    assert md.deployments(kube_api, namespace, "leaky") == [], "no Deployment is written for a refused revision"
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(namespace).items
    assert pods == [], f"no pod exists that could read the Secret or probe the host: {[p.metadata.name for p in pods]}"


def _foreign(kind: str, api_version: str, spec: dict[str, Any]) -> dict[str, Any]:
    labels = {"team": "payments"}
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": "payments", "labels": labels}, "spec": spec}


def test_a_foreign_service_is_never_taken_over_nor_collected(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    namespace: str,
    author: Author,
    operator_as_chart: Callable[..., RollguardProcess],
) -> None:
    theirs = _foreign("Service", "v1", {"selector": {"app": "payments"}, "ports": [{"port": 443, "targetPort": 8443}]})
    _apply_admin(control_plane, namespace, theirs)
    core = client.CoreV1Api(kube_api)
    before = core.read_namespaced_service("payments", namespace)
    operator_as_chart()
    author.apply(md.manifest("payments", "1.0.0", replicas=1, **ROLLING))

    stalled = _stalled(kube_api, namespace, "payments", "NameConflict")
    assert f"Service {namespace}/payments already exists and is not owned by this ModelDeployment" in stalled["message"]
    assert "owner: no owner; written by kubectl" in stalled["message"], stalled["message"]
    _warning_event(kube_api, namespace, "payments", "NameConflict")
    after = core.read_namespaced_service("payments", namespace)
    assert after.spec.selector == {"app": "payments"}, f"their selector is untouched: {after.spec.selector}"
    assert not after.metadata.owner_references, f"no owner added: {after.metadata.owner_references}"
    assert after.metadata.resource_version == before.metadata.resource_version, "their Service was not written at all"
    managers = {f.manager for f in after.metadata.managed_fields or []}
    assert "rollguard" not in managers, f"rollguard owns no field of it: {managers}"
    assert md.deployments(kube_api, namespace, "payments") == [], "nothing is written while a name is taken"

    # Deleting her ModelDeployment garbage-collects what it owns and leaves their Service.
    model = md.get(kube_api, namespace, "payments")
    assert model is not None
    marker = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "gc-marker",
            "ownerReferences": [
                {
                    "apiVersion": "rollguard.io/v1alpha1",
                    "kind": "ModelDeployment",
                    "name": "payments",
                    "uid": model["metadata"]["uid"],
                }
            ],
        },
    }
    _apply_admin(control_plane, namespace, marker)
    result = author.kubectl("delete", "modeldeployment", "payments", "--wait=true", "--timeout=60s")
    assert result.returncode == 0, f"the author could not delete her ModelDeployment: {result.stderr}"

    def marker_collected() -> bool:
        try:
            core.read_namespaced_config_map("gc-marker", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(
        marker_collected, TIMEOUT, message="the garbage collector handled the deleted ModelDeployment's dependents"
    )
    survivor = core.read_namespaced_service("payments", namespace)
    assert survivor.metadata.uid == before.metadata.uid, "their Service survives her ModelDeployment's deletion"


def test_foreign_hpa_pdb_and_labelled_deployment_are_not_deleted(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    namespace: str,
    author: Author,
    operator_as_chart: Callable[..., RollguardProcess],
) -> None:
    pdb = _foreign("PodDisruptionBudget", "policy/v1", {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "p"}}})
    hpa = _foreign(
        "HorizontalPodAutoscaler",
        "autoscaling/v2",
        {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "payments-api"},
            "minReplicas": 1,
            "maxReplicas": 3,
        },
    )
    # Labelled like one of her revisions: a label is not ownership.
    labels = {"rollguard.io/model-deployment": "payments", "rollguard.io/rollout-id": "abc0123456", "app": "p"}
    lookalike = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "payments-legacy", "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "p"}},
            "template": {"metadata": {"labels": {"app": "p"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        },
    }
    _apply_admin(control_plane, namespace, pdb, hpa, lookalike)
    policy, autoscaling, apps = (
        client.PolicyV1Api(kube_api),
        client.AutoscalingV2Api(kube_api),
        client.AppsV1Api(kube_api),
    )

    def foreign_uids() -> dict[str, str]:
        return {
            "pdb": policy.read_namespaced_pod_disruption_budget("payments", namespace).metadata.uid,
            "hpa": autoscaling.read_namespaced_horizontal_pod_autoscaler("payments", namespace).metadata.uid,
            "deployment": apps.read_namespaced_deployment("payments-legacy", namespace).metadata.uid,
        }

    theirs = foreign_uids()
    operator_as_chart()
    # No PDB and no autoscaling: rollguard deletes its own PDB and HPA named "payments", if any.
    canary = {
        "type": "Canary",
        "canary": {"steps": [{"weight": 50, "pause": {"duration": "1s"}}], "scaleDownDelay": "1s"},
    }
    no_budget = {"enabled": False}
    author.apply(md.manifest("payments", "1.0.0", replicas=1, disruptionBudget=no_budget, strategy=canary))
    author.apply(md.manifest("mine", "1.0.0", replicas=1, **ROLLING))  # with its own PDB "mine"
    _ready(kube_api, namespace, "payments", "1.0.0")  # the pass that wrote Ready ran its deletes first
    _ready(kube_api, namespace, "mine", "1.0.0")
    assert foreign_uids() == theirs, "their HPA, PDB and look-alike Deployment are the same objects, untouched"
    assert md.status(kube_api, namespace, "payments")["replicas"] == 1, "the look-alike is not counted as hers"

    # Her own retired objects still go: the 1.0.0 Deployment after promotion, PDB "mine" once disabled.
    author.apply(md.manifest("payments", "1.1.0", replicas=1, disruptionBudget=no_budget, strategy=canary))
    author.apply(md.manifest("mine", "1.0.0", replicas=1, disruptionBudget=no_budget, **ROLLING))

    def own_versions() -> set[str]:
        listed = md.deployments(kube_api, namespace, "payments")
        return {d.metadata.labels["rollguard.io/version"] for d in listed if d.metadata.owner_references}

    wait_for(own_versions, TIMEOUT, message="only her 1.1.0 Deployment left", until=lambda found: found == {"1.1.0"})

    def pdb_gone() -> bool:
        try:
            policy.read_namespaced_pod_disruption_budget("mine", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(pdb_gone, TIMEOUT, message="her own PDB 'mine' deleted once disruptionBudget.enabled is false")
    assert foreign_uids() == theirs, "after her retirements, their objects are still the same, untouched"


def test_a_model_runs_in_a_namespace_enforcing_pod_security_restricted(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    namespace: str,
    author: Author,
    operator_as_chart: Callable[..., RollguardProcess],
) -> None:
    _admin(control_plane, "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    bare = control_plane.kubectl("run", "bare", "-n", namespace, "--image=x", "--dry-run=server")
    assert bare.returncode != 0 and "violates PodSecurity" in bare.stderr, (
        f"the namespace enforces restricted: a pod without a securityContext is refused; got {bare.stderr}"
    )
    operator_as_chart()
    author.apply(md.manifest("restricted", "1.0.0", replicas=2, **ROLLING))
    _ready(kube_api, namespace, "restricted", "1.0.0")
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(
        namespace, label_selector="rollguard.io/model-deployment=restricted"
    )
    assert len(pods.items) == 2, "Pod Security admission accepted both model pods"
    for pod in pods.items:
        container = pod.spec.containers[0].security_context
        assert pod.spec.security_context.run_as_non_root is True
        assert pod.spec.security_context.seccomp_profile.type == "RuntimeDefault"
        assert container.allow_privilege_escalation is False and container.capabilities.drop == ["ALL"]
    refused = [
        e.message
        for e in client.CoreV1Api(kube_api).list_namespaced_event(namespace).items
        if e.reason == "FailedCreate"
    ]
    assert refused == [], f"no ReplicaSet was refused a pod: {refused}"


def test_a_child_the_api_server_refuses_is_stalled_with_its_message_and_retried_with_back_off(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    namespace: str,
    author: Author,
    operator_as_chart: Callable[..., RollguardProcess],
) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-services"},
        "spec": {"hard": {"services": "0"}},
    }
    _apply_admin(control_plane, namespace, quota)
    # The harness runs no resourcequota controller: set the usage it would compute (none used yet).
    usage = {"status": {"hard": {"services": "0"}, "used": {"services": "0"}}}
    _admin(
        control_plane,
        "patch",
        "resourcequota",
        "no-services",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        f"--patch={json.dumps(usage)}",
    )
    process = operator_as_chart()
    author.apply(md.manifest("quota", "1.0.0", replicas=1, **ROLLING))
    stalled = _stalled(kube_api, namespace, "quota", "ChildRejected")
    assert stalled["message"].startswith(f"Service {namespace}/quota refused by the API server (403 Forbidden)"), (
        stalled
    )
    assert "exceeded quota" in stalled["message"], stalled["message"]
    _warning_event(kube_api, namespace, "quota", "ChildRejected")
    _admin(control_plane, "delete", "resourcequota", "no-services", "-n", namespace)
    _ready(kube_api, namespace, "quota", "1.0.0")
    errors = [
        r for r in process.logs() if "exception" in r or (r.get("logger") == "rollguard" and r["level"] == "error")
    ]
    assert errors == [], f"a refusal is status, not an exception record: {errors[:3]}"
