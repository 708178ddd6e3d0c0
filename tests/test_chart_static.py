"""The Helm chart without a cluster: lint, render, schema, RBAC shape, Pod Security, docs.

Needs the helm binary that e2e/build-control-plane.sh builds into ~/.cache/rollguard/bin.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.binaries import cache_dir
from e2e.chart_values import ALL_OPTIONAL_FEATURES, WATCHING
from rollguard.api import crdgen

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "rollguard"
Doc = dict[str, Any]

ALL_FEATURES = [*WATCHING, *ALL_OPTIONAL_FEATURES]
VARIANTS = {"defaults": [], "watch-namespaces": WATCHING, "all-features": ALL_FEATURES}


@pytest.fixture(scope="module")
def helm_bin() -> Path:
    path = cache_dir() / "bin" / "helm"
    if not os.access(path, os.X_OK):
        pytest.fail(f"helm is missing at {path}: run `bash e2e/build-control-plane.sh` (or `make control-plane`)")
    return path


def helm(helm_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_bin), *args], capture_output=True, text=True, timeout=60, check=False)


def render(helm_bin: Path, *values: str) -> list[Doc]:
    result = helm(helm_bin, "template", "rollguard", str(CHART), "--namespace=rollguard-system", *values)
    assert result.returncode == 0, f"helm template {' '.join(values)} failed: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(docs: list[Doc], kind: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def env_of(docs: list[Doc]) -> dict[str, Any]:
    container = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_passes(helm_bin: Path, variant: str) -> None:
    result = helm(helm_bin, "lint", str(CHART), *VARIANTS[variant])
    assert result.returncode == 0, f"helm lint ({variant}) failed:\n{result.stdout}{result.stderr}"


def test_defaults_are_one_cluster_wide_replica(helm_bin: Path) -> None:
    docs = render(helm_bin)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"], kinds
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}, "one replica: never two operators in an upgrade"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/rollguard/rollguard:0.1.0"
    env = env_of(docs)
    assert env["ROLLGUARD_NAMESPACES"] == "" and "ROLLGUARD_LEADER_ELECTION" not in env
    assert "ROLLGUARD_PROMETHEUS_URL" not in env, "no Prometheus unless prometheus.url is set"
    binding = only(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rollguard", "namespace": "rollguard-system"}]


def _rules(doc: Doc) -> list[Doc]:
    return [{k: sorted(v) if isinstance(v, list) else v for k, v in rule.items()} for rule in doc["rules"]]


def test_watch_namespaces_grants_a_role_in_each_and_nothing_writable_cluster_wide(helm_bin: Path) -> None:
    docs = render(helm_bin, *WATCHING)
    roles = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "Role"}
    bindings = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "RoleBinding"}
    assert set(roles) == set(bindings) == {"team-a", "team-b"}
    assert env_of(docs)["ROLLGUARD_NAMESPACES"] == "team-a,team-b"
    [cluster_role] = [d for d in docs if d["kind"] == "ClusterRole"]
    assert cluster_role["metadata"]["name"] == "rollguard-observer"
    for rule in cluster_role["rules"]:
        assert set(rule["verbs"]) <= {"list", "watch"}, f"cluster-wide rules are read-only: {rule}"
        assert set(rule["resources"]) <= {"namespaces", "customresourcedefinitions"}, rule
    cluster_wide = only(render(helm_bin), "ClusterRole")
    observer_rules = [r for r in _rules(cluster_wide) if r["resources"] == ["customresourcedefinitions"]]
    assert _rules(roles["team-a"]) == [r for r in _rules(cluster_wide) if r not in observer_rules]


def test_two_replicas_elect_a_leader_and_keep_one_running(helm_bin: Path) -> None:
    docs = render(helm_bin, "--set=replicas=2")
    assert only(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    env = env_of(docs)
    assert env["ROLLGUARD_LEADER_ELECTION"] == "true"
    assert env["ROLLGUARD_LEADER_ELECTION_NAMESPACE"] == "rollguard-system"
    assert env["ROLLGUARD_LEADER_ELECTION_LEASE"] == "rollguard-leader"
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}, "the Lease identity is the pod's name"
    assert "strategy" not in only(docs, "Deployment")["spec"], "rolling updates are safe with a Lease"
    [lease_role] = [d for d in docs if d["kind"] == "Role"]
    assert lease_role["metadata"]["namespace"] == "rollguard-system", "Lease rights in the release namespace only"
    assert _rules(lease_role) == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["rollguard-leader"],
            "verbs": ["get", "update"],
        },
    ]


def test_all_features_render_monitoring_objects_and_mount_the_prometheus_secrets(helm_bin: Path) -> None:
    docs = render(helm_bin, *ALL_FEATURES)
    monitor = only(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True, "keep the ModelDeployment's namespace label"
    rule = only(docs, "PrometheusRule")
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert {"RollguardRollback", "RollguardRolloutStalled", "RollguardOperatorDown", "RollguardNoLeader"} <= set(alerts)
    assert {"RollguardPrometheusUnreachable", "RollguardMetricsUnavailable"} <= set(alerts)
    for name, alert in alerts.items():
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
    dashboard = only(docs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["rollguard.json"])["uid"] == "rollguard-overview"

    env = env_of(docs)
    assert env["ROLLGUARD_PROMETHEUS_CA_FILE"] == "/etc/rollguard/prometheus-ca/ca.crt"
    assert env["ROLLGUARD_PROMETHEUS_PASSWORD_FILE"] == "/etc/rollguard/prometheus-auth/password"
    assert env["ROLLGUARD_PROMETHEUS_USERNAME"] == {"secretKeyRef": {"name": "prometheus-auth", "key": "username"}}
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    mounted = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert mounted == {"prometheus-ca": "prometheus-ca", "prometheus-auth": "prometheus-auth"}


def test_bearer_token_is_read_from_a_mounted_file(helm_bin: Path) -> None:
    docs = render(
        helm_bin,
        "--set=prometheus.url=http://prometheus:9090",
        "--set=prometheus.auth.existingSecret=prom",
        "--set=prometheus.auth.bearerTokenKey=jwt",
    )
    env = env_of(docs)
    assert env["ROLLGUARD_PROMETHEUS_BEARER_TOKEN_FILE"] == "/etc/rollguard/prometheus-auth/jwt"
    assert "ROLLGUARD_PROMETHEUS_USERNAME" not in env


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("--set=replicas=-1", "/replicas"),
        ("--set=replicas=two", "/replicas"),
        ("--set=logFormat=xml", "/logFormat"),
        ("--set=prometheus.url=ftp://prometheus", "/prometheus/url"),
        ("--set=prometheus.url=prometheus:9090", "/prometheus/url"),
        ("--set=resyncSeconds=0", "/resyncSeconds"),
        ("--set=maxConcurrentReconciles=0", "/maxConcurrentReconciles"),
        ("--set=prometheus.queryAttempts=0", "/prometheus/queryAttempts"),
        ("--set=watchNamespaces=team-a", "/watchNamespaces"),
        ("--set=prometheus.auth.type=digest", "/prometheus/auth/type"),
        ("--set=serviceMonitor.interval=soon", "/serviceMonitor/interval"),
        ("--set=replica=2", "additional properties 'replica' not allowed"),
    ],
)
def test_schema_rejects_bad_values_and_names_the_field(helm_bin: Path, value: str, field: str) -> None:
    for command in ("lint", "template"):
        result = helm(helm_bin, command, str(CHART), value)
        output = result.stdout + result.stderr
        assert result.returncode != 0, f"helm {command} {value} should fail"
        assert field in output, f"helm {command} {value} should name {field!r}; said:\n{output}"


def test_prometheus_credentials_without_a_url_are_refused(helm_bin: Path) -> None:
    result = helm(helm_bin, "template", str(CHART), "--set=prometheus.auth.existingSecret=prom")
    assert result.returncode != 0 and "set prometheus.url" in result.stderr, result.stderr


def test_the_chart_crd_is_the_generated_one() -> None:
    chart_copy = CHART / "crds" / crdgen.CRD_PATH.name
    generated = crdgen.render()
    assert crdgen.CRD_PATH.read_text() == generated, "crds/ is stale: run `make crds`"
    assert chart_copy.read_text() == generated, "charts/rollguard/crds/ differs from crds/: run `make crds`"


@pytest.mark.parametrize("variant", VARIANTS)
def test_pod_is_pod_security_restricted(helm_bin: Path, variant: str) -> None:
    pod = only(render(helm_bin, *VARIANTS[variant]), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"requests", "limits"} <= set(container["resources"]), "resources have requests and limits"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "readinessProbe" in container
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 8081}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], "a writable /tmp on a read-only root"


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_role_grants_secrets_or_wildcards(helm_bin: Path, variant: str) -> None:
    for doc in render(helm_bin, *VARIANTS[variant]):
        if doc["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in doc["rules"]:
            where = f"{doc['kind']} {doc['metadata']['name']}: {rule}"
            assert "secrets" not in rule["resources"], f"the operator never reads Secrets; {where}"
            assert "*" not in rule["resources"] + rule["verbs"] + rule["apiGroups"], f"no wildcards; {where}"


def _leaf_keys(values: Any, prefix: str = "") -> list[str]:
    if isinstance(values, dict) and values and prefix not in ("resources", "resources.requests", "resources.limits"):
        return [key for k, v in values.items() for key in _leaf_keys(v, f"{prefix}.{k}" if prefix else k)]
    return [prefix]


def test_readme_documents_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    table = readme.split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([^`]+)` \|", table, flags=re.MULTILINE))
    keys = set(_leaf_keys(yaml.safe_load((CHART / "values.yaml").read_text())))
    assert keys - documented == set(), "values missing from the README table"
    assert documented - keys == set(), "README documents values that do not exist"


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(REPO / ".venv" / "bin" / "hadolint")
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_tuning_values_reach_the_operators_settings(helm_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rollguard.settings import Settings  # noqa: PLC0415

    docs = render(
        helm_bin,
        "--set=maxConcurrentReconciles=32",
        "--set-json=prometheus.timeoutSeconds=2.5",  # --set turns a float into a string
        "--set=prometheus.queryAttempts=5",
        "--set=prometheus.retryMaxSeconds=4",
        "--set=prometheus.maxConcurrentQueries=24",
        "--set=prometheus.breakerFailures=7",
        "--set=prometheus.breakerResetSeconds=45",
    )
    for name, value in env_of(docs).items():
        if name.startswith("ROLLGUARD_") and isinstance(value, str):
            monkeypatch.setenv(name, value)
    settings = Settings()
    seen = (
        settings.max_concurrent_reconciles,
        settings.prometheus_timeout_seconds,
        settings.prometheus_query_attempts,
        settings.prometheus_retry_max_seconds,
        settings.prometheus_max_concurrent_queries,
        settings.prometheus_breaker_failures,
        settings.prometheus_breaker_reset_seconds,
    )
    assert seen == (32, 2.5, 5, 4.0, 24, 7, 45.0), f"the operator reads what the chart was given: {seen}"
