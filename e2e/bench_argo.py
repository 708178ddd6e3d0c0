"""`make bench`, side by side: Argo Rollouts on the same kind of control plane, with equivalent
Rollout + AnalysisTemplate objects, through the idle, rollback and Prometheus-outage scenarios.

The controller is built from its Go module at a pinned version (tools/argo-rollouts/build.sh) and
its CRDs come from the same module. Its pods carry the simulator's labels
(rollguard.io/model-deployment, model, version), so the simulator serves them the same series.

Upstream files relied on (argoproj/argo-rollouts v1.8.3):
  cmd/rollouts-controller/main.go    flags (--kubeconfig, --leader-elect, --metricsport, --healthzPort)
  utils/defaults/defaults.go         consecutiveErrorLimit 4 by default; POD_NAMESPACE
  manifests/crds/*.yaml              the CRDs installed here
  metricproviders/prometheus/prometheus.go   result[0] is the first sample of an instant vector
  rollout/analysis.go                reconcileBackgroundAnalysisRun: a background run beside the steps
  analysis/analysis.go               an Error measurement counts toward consecutiveErrorLimit
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from e2e import manifests
from e2e.bench_probes import AuditLog, FirstSeen, cpu_percent, proc_sample, settle
from e2e.bench_rollguard import (
    INTERVAL_SECONDS,
    WINDOW_SECONDS,
    add_pod_capacity,
    error_rate_crossing,
    percentile,
)
from e2e.cluster import ControlPlane
from e2e.processes import free_port
from e2e.waiting import http_get, wait_for

BUILD = Path(__file__).resolve().parents[1] / "tools" / "argo-rollouts" / "build.sh"
ARGO_NS, ARGO_SA = "argo-rollouts", "argo-rollouts"
ARGO_USER = f"system:serviceaccount:{ARGO_NS}:{ARGO_SA}"
NAMESPACE = "bench-argo"
GROUP, VERSION = "argoproj.io", "v1alpha1"


def build() -> Path:
    """The cache directory holding rollouts-controller and crds/ (built once, then reused)."""
    out = subprocess.run([str(BUILD)], capture_output=True, text=True, check=False, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{BUILD} failed ({out.returncode}): {out.stderr[-2000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def analysis_template(prometheus_url: str) -> dict[str, Any]:
    """rollguard's error-rate check, said the Argo way: fail at result > 0.05, every 3 s."""
    sel = f'namespace="{NAMESPACE}",model="{{{{args.name}}}}",version="{{{{args.version}}}}"'
    window = f"[{WINDOW_SECONDS}s]"
    query = (
        f'(sum(rate(model_requests_total{{{sel},code="500"}}{window})) or vector(0))'
        f" / sum(rate(model_requests_total{{{sel}}}{window}))"
    )
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "error-rate", "namespace": NAMESPACE},
        "spec": {
            "args": [{"name": "name"}, {"name": "version"}],
            "metrics": [
                {
                    "name": "error-rate",
                    "interval": f"{INTERVAL_SECONDS}s",
                    "failureLimit": 0,
                    "successCondition": "result[0] <= 0.05",
                    "provider": {"prometheus": {"address": prometheus_url, "query": query}},
                }
            ],
        },
    }


def rollout(name: str, version: str = "1.0.0", env: dict[str, str] | None = None, pause: str = "20s") -> dict[str, Any]:
    labels = {
        "app": name,
        "rollguard.io/model-deployment": name,
        "rollguard.io/model": name,
        "rollguard.io/version": version,
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "model",
                            "image": "docker.io/seldonio/mlserver:1.6.1",
                            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                        }
                    ]
                },
            },
            "strategy": {
                "canary": {
                    "analysis": {
                        "templates": [{"templateName": "error-rate"}],
                        "args": [{"name": "name", "value": name}, {"name": "version", "value": version}],
                    },
                    "steps": [{"setWeight": 50}, {"pause": {"duration": pause}}],
                }
            },
        },
    }


class Argo:
    def __init__(self, cp: ControlPlane, home: Path) -> None:
        self.cp, self.home = cp, home
        self.health_port, self.metrics_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = cp.log_dir / "argo-rollouts.log"

    def install(self) -> None:
        cp = self.cp
        crds = sorted(self.home.joinpath("crds").glob("*-crd.yaml"))  # not the kustomization.yaml beside them
        cp.kubectl("apply", "--server-side", *[f"--filename={f}" for f in crds], check=True)
        cp.wait_for_crds_established(
            [f"{p}.argoproj.io" for p in ("rollouts", "analysistemplates", "analysisruns", "experiments")]
        )
        for ns in (ARGO_NS, NAMESPACE):
            cp.kubectl("create", "namespace", ns, check=True)
        cp.kubectl("create", "serviceaccount", ARGO_SA, f"--namespace={ARGO_NS}", check=True)
        # Its own install binds a wide ClusterRole; cluster-admin here: RBAC does not change what it requests.
        cp.kubectl(
            "create", "clusterrolebinding", "argo-rollouts-bench", "--clusterrole=cluster-admin",
            f"--serviceaccount={ARGO_NS}:{ARGO_SA}", check=True,
        )  # fmt: skip

    def start(self) -> None:
        token = self.cp.kubectl("create", "token", ARGO_SA, f"--namespace={ARGO_NS}", "--duration=6h", check=True)
        kubeconfig = manifests.write_yaml(
            self.cp.state_dir / "argo.kubeconfig",
            manifests.kubeconfig(self.cp.api_url, token.stdout.strip(), ARGO_USER),
        )
        argv = [
            str(self.home / "rollouts-controller"),
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",  # as rollguard runs here: one replica, no Lease renewals
            f"--metricsport={self.metrics_port}",
            f"--healthzPort={self.health_port}",
            "--loglevel=info",
        ]
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={"POD_NAMESPACE": ARGO_NS})
        wait_for(
            lambda: http_get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1)[0] == 200,
            60,
            message="argo rollouts /healthz",
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _custom(api: client.ApiClient) -> Any:
    return client.CustomObjectsApi(api)  # its methods answer dicts typed as object


def _apply(cp: ControlPlane, body: dict[str, Any]) -> None:
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump(body), check=True)


def _list_rollouts(api: client.ApiClient) -> Any:
    def call(**kwargs: Any) -> Any:
        return _custom(api).list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "rollouts", **kwargs)

    return call


def _healthy(obj: dict[str, Any]) -> str | None:
    status = obj.get("status") or {}
    return obj["metadata"]["name"] if status.get("phase") == "Healthy" else None


def run(
    cp: ControlPlane, objects: int, idle_seconds: float, bad: int, outage_seconds: float, log: Any = print
) -> dict[str, Any]:
    """Argo's idle cost with `objects` Rollouts, `bad` rollbacks at interval 3 s, and a 60 s outage."""
    api = cp.api_client()
    add_pod_capacity(cp)
    home = build()
    argo = Argo(cp, home)
    argo.install()
    _apply(cp, analysis_template(cp.prometheus_url))
    argo.start()
    audit = AuditLog(cp.audit_log)
    results: dict[str, Any] = {"version": home.name, "operator_user": ARGO_USER}
    try:
        names = [f"model-{i:04d}" for i in range(objects)]
        healthy = FirstSeen(_list_rollouts(api), _healthy).start()
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda n: _custom(api).create_namespaced_custom_object(
                        GROUP, VERSION, NAMESPACE, "rollouts", rollout(n)
                    ),
                    names,
                )
            )
        wait_for(lambda: all(healthy.first(n) for n in names), 1200, interval=1, message="all Rollouts Healthy")
        healthy.stop()
        results["seconds_until_all_healthy"] = round(max(healthy.first(n) or 0 for n in names) - started, 1)
        results["settle"] = settle(audit, ARGO_USER)  # as for rollguard: idle is the steady state after the burst
        mark, before = audit.mark(), proc_sample(argo.pid)
        time.sleep(idle_seconds)  # a measurement window, not a wait for a condition
        after = proc_sample(argo.pid)
        counts = audit.count(ARGO_USER, mark)
        results["idle"] = {
            "objects": objects,
            "window_seconds": idle_seconds,
            "requests": counts.requests,
            "writes": counts.writes,
            "requests_per_object_per_10min": round(counts.requests / max(objects, 1) * 600 / idle_seconds, 2),
            "cpu_percent_of_a_core": round(cpu_percent(before, after), 2),
            "rss_mib": round(after.rss_mib, 1),
            "audit": counts.as_dict(),
        }
        log(f"argo idle: {results['idle']['requests']} requests, {results['idle']['cpu_percent_of_a_core']}% CPU")
        results["rollback"] = rollbacks(cp, api, names[:bad])
        log(f"argo rollback: {results['rollback']}")
        results["outage"] = outage(cp, api, names[bad], outage_seconds)
        log(f"argo outage: {results['outage']}")
    finally:
        argo.stop()
    return results


def rollbacks(cp: ControlPlane, api: client.ApiClient, names: list[str]) -> dict[str, Any]:
    version = "2.0.0"
    core = client.CoreV1Api(api)

    def canary_ready(pod: dict[str, Any]) -> str | None:
        labels = pod["metadata"].get("labels") or {}
        conditions = (pod.get("status") or {}).get("conditions") or []
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        return (
            labels.get("rollguard.io/model-deployment")
            if ready and labels.get("rollguard.io/version") == version
            else None
        )

    def aborted(obj: dict[str, Any]) -> str | None:
        return obj["metadata"]["name"] if (obj.get("status") or {}).get("abort") else None

    crossing = FirstSeen(core.list_namespaced_pod, canary_ready, namespace=NAMESPACE).start()
    aborts = FirstSeen(_list_rollouts(api), aborted).start()
    metric = error_rate_crossing(cp.prometheus_url, NAMESPACE, version)  # as rollguard's side measures it
    try:
        for name in names:
            _apply(cp, rollout(name, version, env={"SIMULATED_ERROR_RATE": "0.3"}, pause="45s"))
        wait_for(lambda: all(aborts.first(n) for n in names), 300, message="every bad Argo canary aborted")
    finally:
        crossing.stop()
        aborts.stop()
        metric.stop()
    from_metric = [aborts.seen[n] - metric.seen[n] for n in names if n in aborts.seen and n in metric.seen]
    latencies = [aborts.first(n) - crossing.first(n) for n in names if aborts.first(n) and crossing.first(n)]  # type: ignore[operator]
    return {
        "canaries": len(names),
        "interval_seconds": INTERVAL_SECONDS,
        "crossing_to_aborted_seconds_p50": percentile(from_metric, 50),
        "crossing_to_aborted_seconds_p95": percentile(from_metric, 95),
        "crossing_to_aborted_seconds_max": round(max(from_metric), 2) if from_metric else None,
        "crossings_seen": len(from_metric),
        "pod_ready_to_aborted_seconds_p50": percentile(latencies, 50),
        "pod_ready_to_aborted_seconds_p95": percentile(latencies, 95),
        "note": "crossing as on rollguard's side (error rate above the limit at Prometheus);"
        " aborted = Rollout status.abort (Argo's rollback)",
    }


def outage(cp: ControlPlane, api: client.ApiClient, name: str, seconds: float) -> dict[str, Any]:
    """A canary (15 s pause) is under background analysis when Prometheus stops for `seconds`."""
    version = "1.1.0"
    _apply(cp, rollout(name, version, pause="15s"))

    def first_success() -> bool:
        runs = _custom(api).list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "analysisruns")
        for run in runs["items"]:
            if run["metadata"]["name"].startswith(name):
                for metric in (run.get("status") or {}).get("metricResults") or []:
                    if metric.get("successful", 0) >= 1:
                        return True
        return False

    wait_for(first_success, 180, message="a first successful Argo measurement")
    cp.stop_prometheus()
    promoted_during = False
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            status = _custom(api).get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "rollouts", name)["status"]
            promoted_during = promoted_during or (
                status.get("stableRS") == status.get("currentPodHash") and status.get("phase") == "Healthy"
            )
            time.sleep(1)  # sampling the outcome through a fixed-length outage
    finally:
        cp.start_prometheus()
    status = _custom(api).get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "rollouts", name)["status"]
    return {
        "outage_seconds": seconds,
        "promoted_during_outage": promoted_during,
        "phase_at_end_of_outage": status.get("phase"),
        "aborted": bool(status.get("abort")),
    }
