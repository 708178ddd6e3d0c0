"""The Helm chart against the real control plane: what it renders is valid, it installs, upgrades and
uninstalls, and its RBAC is exactly enough. The operator runs beside the cluster (kwok runs no
images) with the token of the chart's ServiceAccount, so every request it makes is authorized as
the installed chart would authorize it; then the same identity is shown to be refused elsewhere.

The ServiceMonitor and PrometheusRule are validated against the real monitoring.coreos.com CRDs,
taken from the prometheus-operator Go module through the Go module proxy (cached by Go). Without
Go those two kinds are left out of the server-side dry run, with a warning.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e import manifests, md, objects
from e2e.chart_values import ALL_OPTIONAL_FEATURES
from e2e.cluster import ControlPlane
from e2e.rollguard_process import RollguardProcess
from e2e.waiting import wait_for
from rollguard import leader

CHART = md.REPO / "charts" / "rollguard"
RELEASE, RELEASE_NS = "rollguard", "rollguard-system"
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule"}
CANARY = {
    "strategy": {
        "type": "Canary",
        "canary": {
            "steps": [{"weight": 50, "pause": {"duration": "5s"}}],
            "scaleDownDelay": "2s",
            "trafficRouting": {"type": "GatewayAPI", "httpRoute": {"name": "charted"}},
        },
    },
    "analysis": {
        "interval": "5s",
        "metrics": [{"name": "error-rate", "template": "error-rate", "thresholdRange": {"max": 0.05}}],
    },
}


def helm(cp: ControlPlane, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    argv = [str(cp.helm_bin), f"--kubeconfig={cp.kubeconfig}", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)} failed ({result.returncode}): {result.stderr}"
    return result


def kubectl_ok(cp: ControlPlane, *args: str, input: str | None = None) -> str:
    result = cp.kubectl(*args, input=input)
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def create_namespace(cp: ControlPlane, name: str, restricted: bool = False) -> None:
    labels = {"pod-security.kubernetes.io/enforce": "restricted"} if restricted else {}
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    kubectl_ok(cp, "apply", "-f", "-", input=json.dumps(body))


@pytest.fixture(scope="module")
def monitoring_crds(control_plane: ControlPlane) -> bool:
    """Install the ServiceMonitor and PrometheusRule CRDs; False when Go is not there to fetch them."""
    go = shutil.which("go")
    if go is None:
        return False
    downloaded = subprocess.run(
        [go, "mod", "download", "-json", PROMETHEUS_OPERATOR],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=control_plane.state_dir,  # outside any Go module
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    assert downloaded.returncode == 0, f"go mod download {PROMETHEUS_OPERATOR} failed: {downloaded.stderr[-2000:]}"
    crd_dir = Path(json.loads(downloaded.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    files = [crd_dir / f"monitoring.coreos.com_{plural}.yaml" for plural in ("servicemonitors", "prometheusrules")]
    kubectl_ok(control_plane, "apply", "--server-side", "--force-conflicts", *[f"--filename={f}" for f in files])
    kubectl_ok(
        control_plane,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    )
    return True


def render(cp: ControlPlane, namespace: str, *values: str) -> list[dict[str, Any]]:
    out = helm(cp, "template", RELEASE, str(CHART), f"--namespace={namespace}", "--include-crds", *values).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.mark.parametrize(
    "values",
    [[], ["--set=watchNamespaces={WATCHED}"], ["--set=watchNamespaces={WATCHED}", *ALL_OPTIONAL_FEATURES]],
    ids=["defaults", "watch-namespaces", "all-features"],
)
def test_rendered_chart_is_accepted_by_the_api_server(
    control_plane: ControlPlane, namespace: str, monitoring_crds: bool, values: list[str]
) -> None:
    target = f"{namespace}-release"
    create_namespace(control_plane, target, restricted=True)
    try:
        docs = render(control_plane, target, *[v.replace("WATCHED", namespace) for v in values])
        if not monitoring_crds:
            warnings.warn("Go is missing: ServiceMonitor/PrometheusRule left out of the dry run", stacklevel=1)
            docs = [d for d in docs if d["kind"] not in MONITORING_KINDS]
        applied = control_plane.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs), timeout=60
        )
        assert applied.returncode == 0, f"the API server rejected the rendered chart: {applied.stderr}"
        assert "would violate PodSecurity" not in applied.stderr, f"not Pod Security restricted: {applied.stderr}"
        accepted = [line for line in applied.stdout.splitlines() if "(server dry run)" in line]
        assert len(accepted) == len(docs), f"every object is accepted; got {applied.stdout}"
    finally:
        control_plane.kubectl("delete", "namespace", target, "--wait=false")


# ---- installed: the operator under the chart's ServiceAccount ------------------------------------


class Installed:
    def __init__(self, cp: ControlPlane, watched: str, outside: str) -> None:
        self.cp, self.watched, self.outside = cp, watched, outside
        self.token = ""


def _drop_finalizers(cp: ControlPlane, namespace: str) -> None:
    listed = cp.kubectl("get", "modeldeployments", "-n", namespace, "-o", "name")
    for name in listed.stdout.split():
        cp.kubectl("patch", "-n", namespace, name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane) -> Iterator[Installed]:
    """The chart installed into rollguard-system (Pod Security restricted), watching one namespace.
    Helm installs the CRD from crds/ unless an earlier test applied it already."""
    suffix = os.urandom(3).hex()
    release = Installed(control_plane, f"e2e-chart-watched-{suffix}", f"e2e-chart-outside-{suffix}")
    for name in (release.watched, release.outside):
        create_namespace(control_plane, name)
    create_namespace(control_plane, RELEASE_NS, restricted=True)
    control_plane.install_gateway_api_crds()
    try:
        started = time.monotonic()
        helm(
            control_plane,
            "install",
            RELEASE,
            str(CHART),
            f"--namespace={RELEASE_NS}",
            f"--set=watchNamespaces={{{release.watched}}}",
            f"--set=prometheus.url={control_plane.prometheus_url}",
            "--wait",
            "--timeout=120s",
        )
        print(f"helm install --wait took {time.monotonic() - started:.1f}s")
        yield release
    finally:
        helm(control_plane, "uninstall", RELEASE, f"--namespace={RELEASE_NS}", "--wait", check=False)
        for name in (release.watched, release.outside):
            _drop_finalizers(control_plane, name)
            control_plane.kubectl("delete", "namespace", name, "--wait=false")
        control_plane.kubectl("delete", "namespace", RELEASE_NS, "--wait=false")


@pytest.fixture(scope="module")
def operator_as_chart(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RollguardProcess]:
    """The operator with a kubeconfig holding only the chart ServiceAccount's token."""
    cp = installed.cp
    installed.token = kubectl_ok(cp, "create", "token", RELEASE, f"--namespace={RELEASE_NS}", "--duration=1h").strip()
    kubeconfig = manifests.write_yaml(
        tmp_path_factory.mktemp("chart-sa") / "kubeconfig",
        manifests.kubeconfig(cp.api_url, installed.token, user=f"system:serviceaccount:{RELEASE_NS}:{RELEASE}"),
    )
    process = RollguardProcess(
        kubeconfig=kubeconfig,
        log_file=cp.log_dir / "rollguard-chart-sa.log",
        namespaces=[installed.watched],
        prometheus_url=cp.prometheus_url,
    )
    process.start()
    yield process
    process.stop()


def test_install_creates_a_restricted_operator_pod_and_the_crd(
    control_plane: ControlPlane, installed: Installed
) -> None:
    status = helm(control_plane, "status", RELEASE, f"--namespace={RELEASE_NS}", "-o", "json").stdout
    assert json.loads(status)["info"]["status"] == "deployed"
    crd = kubectl_ok(control_plane, "get", "crd", "modeldeployments.rollguard.io", "-o", "name")
    assert "modeldeployments.rollguard.io" in crd
    pods = json.loads(kubectl_ok(control_plane, "get", "pods", "-n", RELEASE_NS, "-o", "json"))["items"]
    assert len(pods) == 1, "one operator pod, admitted by the namespace's Pod Security 'restricted' level"
    spec = pods[0]["spec"]
    container = spec["containers"][0]
    assert spec["serviceAccountName"] == RELEASE
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ROLLGUARD_NAMESPACES"] == installed.watched
    assert "ROLLGUARD_LEADER_ELECTION" not in env, "one replica needs no Lease"
    secrets = [v for v in spec["volumes"] if "secret" in v]
    assert secrets == [], "no Secret is mounted unless prometheus.auth/tls name one"


def _route(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "public-gateway"}],
            "rules": [
                {"backendRefs": [{"name": f"{name}-stable", "port": 8080}, {"name": f"{name}-canary", "port": 8080}]}
            ],
        },
    }


def _forbidden_lines(process: RollguardProcess) -> list[str]:
    text = process.log_file.read_text(errors="replace")
    return [line[:300] for line in text.splitlines() if "Forbidden" in line or "status=403" in line]


def test_operator_with_the_chart_rbac_promotes_and_rolls_back(
    control_plane: ControlPlane, kube_api: client.ApiClient, installed: Installed, operator_as_chart: RollguardProcess
) -> None:
    ns, name = installed.watched, "charted"
    md.apply(control_plane, ns, _route(name))
    custom = client.CustomObjectsApi(kube_api)

    def weights() -> dict[str, int]:
        live = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes", name)
        return {ref["name"]: ref.get("weight", 1) for ref in live["spec"]["rules"][0]["backendRefs"]}

    started = time.monotonic()
    md.apply(control_plane, ns, md.manifest(name, "1.0.0", 2, **CANARY))
    wait_for(lambda: md.serving(kube_api, ns, name, "1.0.0"), 90, message="1.0.0 serving under the chart's RBAC")

    md.apply(control_plane, ns, md.manifest(name, "1.1.0", 2, **CANARY))
    wait_for(weights, 60, message="canary at 50%", until=lambda w: w == {f"{name}-stable": 50, f"{name}-canary": 50})
    wait_for(lambda: md.serving(kube_api, ns, name, "1.1.0"), 90, message="healthy canary 1.1.0 promoted")
    wait_for(weights, 30, message="all traffic on stable", until=lambda w: w[f"{name}-stable"] == 100)
    promoted_at = time.monotonic()

    md.apply(control_plane, ns, md.manifest(name, "2.0.0", 2, env={"SIMULATED_ERROR_RATE": "0.3"}, **CANARY))
    status = md.wait_phase(kube_api, ns, name, "RolledBack", timeout=90)
    print(f"promotion after {promoted_at - started:.0f}s, rollback {time.monotonic() - promoted_at:.0f}s later")
    rejected = status["rejected"]
    assert rejected["version"] == "2.0.0" and rejected["reason"] == "AnalysisFailed", rejected
    assert rejected.get("check") == "error-rate", f"the failing check is named: {rejected}"
    assert status["servingVersion"] == "1.1.0", "the known-good version keeps serving"
    wait_for(weights, 30, message="traffic back on stable", until=lambda w: w[f"{name}-stable"] == 100)
    reasons = {e.reason for e in md.events(kube_api, ns, name)}
    assert "RolledBack" in reasons, f"the operator could post Events; saw {reasons}"
    assert _forbidden_lines(operator_as_chart) == [], "no request of the operator was refused"


def _status_of(call: Callable[[], Any]) -> int:
    try:
        call()
    except ApiException as error:
        return int(error.status)
    return 200


def test_the_same_identity_is_refused_secrets_and_other_namespaces(
    control_plane: ControlPlane, installed: Installed, operator_as_chart: RollguardProcess
) -> None:
    api = control_plane.api_client(token=installed.token)
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    refused = {
        "list Secrets in the watched namespace": lambda: core.list_namespaced_secret(installed.watched),
        "list Secrets in the release namespace": lambda: core.list_namespaced_secret(RELEASE_NS),
        "list Secrets cluster-wide": core.list_secret_for_all_namespaces,
        "list ModelDeployments outside watchNamespaces": lambda: custom.list_namespaced_custom_object(
            md.GROUP, md.VERSION, installed.outside, md.PLURAL
        ),
        "list ModelDeployments cluster-wide": lambda: custom.list_cluster_custom_object(
            md.GROUP, md.VERSION, md.PLURAL
        ),
        "list Deployments outside watchNamespaces": lambda: apps.list_namespaced_deployment(installed.outside),
        "create a Deployment outside watchNamespaces": lambda: apps.create_namespaced_deployment(
            installed.outside, objects.deployment("intruder")
        ),
        "write the leader Lease without leader election": lambda: client.CoordinationV1Api(api).create_namespaced_lease(
            RELEASE_NS, {"metadata": {"name": "rollguard-leader"}}
        ),
    }
    answers = {what: _status_of(call) for what, call in refused.items()}
    assert answers == dict.fromkeys(refused, 403), f"each must be Forbidden (403): {answers}"
    allowed = _status_of(
        lambda: custom.list_namespaced_custom_object(md.GROUP, md.VERSION, installed.watched, md.PLURAL)
    )
    assert allowed == 200, "while ModelDeployments in the watched namespace are readable"


def test_helm_upgrade_changes_a_value_and_uninstall_removes_the_release(
    control_plane: ControlPlane, installed: Installed, operator_as_chart: RollguardProcess
) -> None:
    helm(control_plane, "upgrade", RELEASE, str(CHART), f"--namespace={RELEASE_NS}", "--reuse-values",
         "--set=logLevel=DEBUG", "--wait", "--timeout=120s")  # fmt: skip
    deployment = json.loads(kubectl_ok(control_plane, "get", "deploy", RELEASE, "-n", RELEASE_NS, "-o", "json"))
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ROLLGUARD_LOG_LEVEL"] == "DEBUG", "the upgraded value reaches the operator"
    assert env["ROLLGUARD_NAMESPACES"] == installed.watched, "--reuse-values keeps the rest"
    history = json.loads(helm(control_plane, "history", RELEASE, f"--namespace={RELEASE_NS}", "-o", "json").stdout)
    assert [h["revision"] for h in history] == [1, 2] and history[-1]["status"] == "deployed"

    operator_as_chart.stop()
    helm(control_plane, "uninstall", RELEASE, f"--namespace={RELEASE_NS}", "--wait")
    left = control_plane.kubectl(
        "get", "deploy,sa,role,rolebinding,service", "-n", RELEASE_NS, "-l", f"app.kubernetes.io/instance={RELEASE}",
        "-o", "name",
    )  # fmt: skip
    assert left.stdout.strip() == "", f"uninstall removes everything it made: {left.stdout}"
    roles = control_plane.kubectl("get", "role,rolebinding", "-n", installed.watched, "-o", "name")
    assert roles.stdout.strip() == "", f"and the Role in the watched namespace: {roles.stdout}"
    kept = control_plane.kubectl("get", "crd", "modeldeployments.rollguard.io")
    assert kept.returncode == 0, "the CRD stays (Helm never deletes crds/), so ModelDeployments survive"
    assert md.get(control_plane.api, installed.watched, "charted") is not None


# ---- leader election: two operator processes ---------------------------------------------------


def _lease_holder(api: client.ApiClient, namespace: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease("rollguard-leader", namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return str(lease.spec.holder_identity)


@pytest.fixture
def two_replicas(
    namespace: str, start_rollguard: Callable[..., RollguardProcess]
) -> tuple[RollguardProcess, RollguardProcess]:
    """Two operator replicas electing a leader on a Lease in `namespace`: the first leads, the second stands by."""

    def replica(pod: str) -> RollguardProcess:
        return start_rollguard(
            ROLLGUARD_LEADER_ELECTION="true", ROLLGUARD_LEADER_ELECTION_NAMESPACE=namespace, POD_NAME=pod
        )

    a = replica("rollguard-a")
    wait_for(lambda: a.metric("rollguard_leader") == 1, 30, message="the first replica leads")
    return a, replica("rollguard-b")  # started: its /healthz answers as a standby


def test_of_two_replicas_one_leads_and_the_other_takes_over(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    namespace: str,
    two_replicas: tuple[RollguardProcess, RollguardProcess],
) -> None:
    a, b = two_replicas
    md.apply(control_plane, namespace, md.manifest("led", "1.0.0", 2, strategy={"type": "Rolling"}))
    wait_for(lambda: md.serving(kube_api, namespace, "led", "1.0.0"), 60, message="the leader rolls 1.0.0 out")
    for _ in range(6):  # across several renewals
        leaders = (a.metric("rollguard_leader"), b.metric("rollguard_leader"))
        assert leaders == (1, 0), f"exactly one replica leads (a, b) = {leaders}"
        time.sleep(1)
    assert _lease_holder(kube_api, namespace) == "rollguard-a"
    assert b.metric("rollguard_reconcile_duration_seconds_count") == 0, "the standby never reconciles"

    killed = time.monotonic()
    a.kill()
    wait_for(lambda: b.metric("rollguard_leader") == 1, 45, message="the standby takes over when the leader dies")
    print(f"takeover {time.monotonic() - killed:.1f}s after the leader was killed")
    assert _lease_holder(kube_api, namespace) == "rollguard-b"
    md.apply(control_plane, namespace, md.manifest("led", "1.1.0", 2, strategy={"type": "Rolling"}))
    wait_for(lambda: md.serving(kube_api, namespace, "led", "1.1.0"), 60, message="the new leader rolls 1.1.0 out")

    # Someone else takes the Lease (as after a long network partition): b must stop acting, at once.
    client.CoordinationV1Api(kube_api).patch_namespaced_lease(
        "rollguard-leader", namespace, {"spec": {"holderIdentity": "intruder"}}
    )
    assert b.proc is not None
    code = wait_for(b.proc.poll, 30, message="the replica that lost the Lease exits", until=lambda c: c is not None)
    assert code == 1, f"losing leadership exits non-zero so the Deployment restarts it; got {code}"


def test_a_replica_stopped_cleanly_hands_the_lease_over_at_once(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    namespace: str,
    two_replicas: tuple[RollguardProcess, RollguardProcess],
) -> None:
    a, b = two_replicas
    a.stop()  # SIGTERM, as in a rolling update of the operator's Deployment
    assert a.proc is not None and a.proc.returncode == 0, f"a clean stop exits 0; got {a.proc and a.proc.returncode}"
    stopped = time.monotonic()
    # Waiting out the Lease would take its 15 s; a released Lease is taken at the standby's next 2 s retry.
    wait_for(
        lambda: _lease_holder(kube_api, namespace) == "rollguard-b",
        leader.LEASE_SECONDS - 5,
        message="the standby holds the Lease well before the stopped leader's Lease would have expired",
    )
    print(f"handover {time.monotonic() - stopped:.1f}s after the leader stopped")
    wait_for(lambda: b.metric("rollguard_leader") == 1, 10, message="the standby leads")
    md.apply(control_plane, namespace, md.manifest("handed", "1.0.0", 1, strategy={"type": "Rolling"}))
    wait_for(lambda: md.serving(kube_api, namespace, "handed", "1.0.0"), 60, message="the new leader acts")
