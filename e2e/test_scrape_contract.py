"""The scrape contract (README, "The metric contract"): model pods' series carry `namespace` and `pod`.

* examples/scrape/prometheus-kubernetes-sd.yaml: checked by promtool, then run by a real Prometheus
  whose kubernetes_sd discovers the pods of a ModelDeployment through the test apiserver; the
  targets must carry the labels rollguard's queries select by. kwok pod IPs are fake, so only
  discovery and relabelling are asserted, never a scrape. Debian's Prometheus is built without
  kubernetes_sd, so this one is built from the Go module proxy (e2e/build-prometheus-k8s-sd.sh).
* The chart's optional PodMonitor and examples/scrape/podmonitor.yaml: server dry run against the
  prometheus-operator CRD.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e import md
from e2e.processes import free_port
from e2e.rollguard_process import RollguardProcess
from e2e.waiting import http_get, wait_for

SCRAPE_EXAMPLES = md.REPO / "examples" / "scrape"
BUILD_PROMETHEUS = Path(__file__).with_name("build-prometheus-k8s-sd.sh")
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
CHART = md.REPO / "charts" / "rollguard"


def prometheus_with_kubernetes_sd() -> Path:
    built = subprocess.run(["bash", str(BUILD_PROMETHEUS)], capture_output=True, text=True, timeout=1800, check=False)
    assert built.returncode == 0, f"building Prometheus with kubernetes_sd failed: {built.stderr[-3000:]}"
    return Path(built.stdout.strip().splitlines()[-1])


def run_ok(argv: list[str], **kwargs: Any) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kwargs)
    assert result.returncode == 0, f"{' '.join(argv)} failed: {result.stdout}{result.stderr}"
    return result.stdout


def bystander_pod(namespace: str) -> dict[str, Any]:
    """A pod rollguard did not create, with a port named http like rollguard's: never a target."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bystander", "namespace": namespace, "labels": {"app": "bystander"}},
        "spec": {
            "containers": [{"name": "app", "image": "example/app:1", "ports": [{"name": "http", "containerPort": 80}]}]
        },
    }


@pytest.mark.timeout(1800)  # a cold Prometheus build takes ~10 min (`make e2e` and `make test` do it first)
def test_kubernetes_sd_example_gives_every_model_pod_its_namespace_and_pod_labels(
    own_control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess, tmp_path: Path
) -> None:
    cp = own_control_plane
    md.apply(cp, namespace, md.manifest("fraud", replicas=2))
    md.apply(cp, namespace, bystander_pod(namespace))
    wait_for(lambda: md.serving(kube_api, namespace, "fraud", "1.0.0"), 60, message="fraud 1.0.0 serving")
    pods = {
        p.metadata.name
        for p in client.CoreV1Api(kube_api)
        .list_namespaced_pod(namespace, label_selector="rollguard.io/model-deployment")
        .items
    }
    assert len(pods) == 2, f"two model pods expected, got {pods}"

    bin_dir = prometheus_with_kubernetes_sd()
    config = yaml.safe_load((SCRAPE_EXAMPLES / "prometheus-kubernetes-sd.yaml").read_text())
    for job in config["scrape_configs"]:
        for discovery in job["kubernetes_sd_configs"]:  # the cluster's address and credentials, as in-cluster
            discovery.update(
                api_server=cp.api_url,
                authorization={"credentials": cp.admin_token},
                tls_config={"insecure_skip_verify": True},
                namespaces={"names": [namespace]},
            )
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    run_ok([str(bin_dir / "promtool"), "check", "config", str(SCRAPE_EXAMPLES / "prometheus-kubernetes-sd.yaml")])
    run_ok([str(bin_dir / "promtool"), "check", "config", str(config_file)])

    port = free_port()
    prometheus = cp.start_process(
        f"prometheus-k8s-sd-{namespace}",
        [
            str(bin_dir / "prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
    )
    try:

        def targets() -> list[dict[str, Any]]:
            status, body = http_get(f"http://127.0.0.1:{port}/api/v1/targets?state=active", timeout=2)
            assert status == 200, body
            found: list[dict[str, Any]] = json.loads(body)["data"]["activeTargets"]
            return found

        found = wait_for(
            targets,
            60,
            message=f"kubernetes_sd targets for exactly the model pods {sorted(pods)}",
            until=lambda ts: {t["labels"].get("pod") for t in ts} == pods,
        )
    finally:
        prometheus.stop()
    for target in found:
        labels = target["labels"]
        assert labels["namespace"] == namespace and labels["job"] == "rollguard-models", labels
        assert labels["model_deployment"] == "fraud", f"the ModelDeployment is a label too: {labels}"
        assert target["scrapeUrl"].endswith(":8082/metrics"), f"the model server's metrics port: {target['scrapeUrl']}"


def test_model_pod_monitor_and_its_example_are_accepted_by_the_prometheus_operator_crd(
    control_plane: Any, namespace: str
) -> None:
    go = shutil.which("go")
    assert go, "Go is needed to fetch the prometheus-operator CRDs from the module proxy"
    downloaded = run_ok(
        [go, "mod", "download", "-json", PROMETHEUS_OPERATOR],
        cwd=control_plane.state_dir,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    crd = (
        Path(json.loads(downloaded)["Dir"])
        / "example"
        / "prometheus-operator-crd"
        / "monitoring.coreos.com_podmonitors.yaml"
    )
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", f"--filename={crd}", check=True)
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/podmonitors.monitoring.coreos.com", check=True
    )

    helm = str(control_plane.helm_bin)
    monitors = []
    for extra in ([], ["--set=watchNamespaces={team-a,team-b}"]):
        rendered = run_ok(
            [
                helm,
                "template",
                "rollguard",
                str(CHART),
                f"--namespace={namespace}",
                "--show-only=templates/podmonitor-models.yaml",
                "--set=modelPodMonitor.enabled=true",
                *extra,
            ]
        )
        monitors.append(yaml.safe_load(rendered))
    example = yaml.safe_load((SCRAPE_EXAMPLES / "podmonitor.yaml").read_text())
    example["metadata"]["namespace"] = namespace
    monitors.append(example)
    applied = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(monitors))
    assert applied.returncode == 0, f"the API server rejected a PodMonitor: {applied.stderr}"
    assert applied.stdout.count("(server dry run)") == 3, applied.stdout

    every_namespace, watched, _ = monitors
    assert every_namespace["spec"]["namespaceSelector"] == {"any": True}, every_namespace["spec"]
    assert watched["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}, watched["spec"]
    assert every_namespace["spec"]["selector"] == {
        "matchExpressions": [{"key": "rollguard.io/model-deployment", "operator": "Exists"}]
    }, "every pod rollguard creates, and only those"
    endpoint = every_namespace["spec"]["podMetricsEndpoints"][0]
    assert endpoint["honorLabels"] is False and endpoint["portNumber"] == 8082, endpoint
