"""`make bench`, rollguard's side: the scenarios of issue 10's Targets table, one process, one cluster.

The operator runs under the chart's ServiceAccount (its RBAC rendered by `helm template`), so the
API server's audit log attributes every request it makes, kopf's own PATCHes included.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e import manifests, md
from e2e.bench_probes import (
    AuditLog,
    FirstSeen,
    PromCrossing,
    cpu_percent,
    model_deployments_watch,
    proc_sample,
    prometheus_queries,
    settle,
)
from e2e.cluster import ControlPlane
from e2e.rollguard_process import RollguardProcess
from e2e.waiting import wait_for
from rollguard.settings import Settings

RELEASE, RELEASE_NS = "rollguard", "rollguard-system"
OPERATOR_USER = f"system:serviceaccount:{RELEASE_NS}:{RELEASE}"
NAMESPACE, DELETE_NAMESPACE = "bench", "bench-delete"
INTERVAL_SECONDS = 3
# The simulator renders 1,000 pods' metrics in about 0.5 s on a quiet machine: scrape every 2 s (1 s timed out
# under load), and let the check's window hold three scrapes.
SCRAPE_SECONDS = 2
WINDOW_SECONDS = 3 * SCRAPE_SECONDS
# A round of one check asks for its value, its sample count and the stable's value (reconciler._measure).
QUERIES_PER_ROUND = 3
QUERY_WINDOW_SECONDS = 12.0
ERROR_LIMIT = 0.05
ERROR_RATE = {
    "name": "error-rate",
    "template": "error-rate",
    "interval": f"{WINDOW_SECONDS}s",
    "thresholdRange": {"max": ERROR_LIMIT},
    "minSampleCount": 5,
}


def percentile(samples: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[min(len(ordered), max(1, math.ceil(p / 100 * len(ordered)))) - 1], 2)


def body(name: str, version: str = "1.0.0", env: dict[str, str] | None = None, pause: str = "20s") -> dict[str, Any]:
    """A bench object: replicas 1, Canary, one check (issue 10's Targets)."""
    return md.manifest(
        name,
        version=version,
        replicas=1,
        env=env,
        strategy={"type": "Canary", "canary": {"steps": [{"weight": 50, "pause": {"duration": pause}}]}},
        analysis={
            "interval": f"{INTERVAL_SECONDS}s",
            "failureLimit": 0,
            "consecutiveErrorLimit": 0,
            "metrics": [ERROR_RATE],
        },
    )


def add_pod_capacity(cp: ControlPlane, nodes: int = 2, pods_per_node: int = 1000) -> None:
    """More kwok nodes: the harness's two hold 110 pods each, fewer than the bench's models."""
    core = client.CoreV1Api(cp.api_client())
    names = [f"kwok-bench-{i}" for i in range(nodes)]
    for i, name in enumerate(names):
        node = manifests.fake_node(name, ("zone-a", "zone-b")[i % 2])
        assert node.status is not None
        node.status.capacity = {**(node.status.capacity or {}), "pods": str(pods_per_node)}
        node.status.allocatable = {**(node.status.allocatable or {}), "pods": str(pods_per_node)}
        core.create_node(node)

    def ready() -> bool:
        nodes: list[Any] = core.list_node().items
        found = {n.metadata.name: n for n in nodes}
        return all(
            name in found and any(c.type == "Ready" and c.status == "True" for c in found[name].status.conditions or [])
            for name in names
        )

    wait_for(ready, 60, message=f"bench nodes {names} Ready")


def operator_default_resync() -> str | None:
    """The operator's own default resync, read from its settings (None if it has no such setting)."""
    field = Settings.model_fields.get("resync_seconds")
    return None if field is None else str(field.default)


def install_operator_identity(cp: ControlPlane, chart: Path) -> Path:
    """The chart's ServiceAccount and cluster-wide RBAC, and a kubeconfig holding that SA's token."""
    cp.kubectl("create", "namespace", RELEASE_NS)
    rendered = cp.kubectl(
        "--namespace",
        RELEASE_NS,
        "create",
        "-f",
        "-",
        input=_helm_template(cp, chart),
        check=True,
    )
    assert rendered.returncode == 0
    token = cp.kubectl("create", "token", RELEASE, f"--namespace={RELEASE_NS}", "--duration=6h", check=True).stdout
    return manifests.write_yaml(
        cp.state_dir / "rollguard-sa.kubeconfig", manifests.kubeconfig(cp.api_url, token.strip(), user=OPERATOR_USER)
    )


def _helm_template(cp: ControlPlane, chart: Path) -> str:
    argv = [
        str(cp.helm_bin),
        "template",
        RELEASE,
        str(chart),
        f"--namespace={RELEASE_NS}",
        "--show-only=templates/serviceaccount.yaml",
        "--show-only=templates/rbac.yaml",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    return yaml.safe_dump_all([d for d in yaml.safe_load_all(out) if d])


def create_all(api: client.ApiClient, namespace: str, bodies: list[dict[str, Any]]) -> None:
    """Create objects concurrently (as the admin: not counted against the operator's identity)."""
    custom = client.CustomObjectsApi(api)

    def create(b: dict[str, Any]) -> None:
        custom.create_namespaced_custom_object(md.GROUP, md.VERSION, namespace, md.PLURAL, b)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, bodies))


def patch_spec(api: client.ApiClient, namespace: str, name: str, patch: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        md.GROUP, md.VERSION, namespace, md.PLURAL, name, {"spec": patch}
    )


def _is_ready(obj: dict[str, Any]) -> str | None:
    status = obj.get("status") or {}
    return obj["metadata"]["name"] if md.has_condition(status, "Ready") else None


def create_and_wait_ready(api: client.ApiClient, names: list[str]) -> list[float]:
    """Create `names` at once; seconds from the start until each was seen Ready, sorted."""
    ready = FirstSeen(model_deployments_watch(api, NAMESPACE), _is_ready).start()
    started = time.monotonic()
    try:
        create_all(api, NAMESPACE, [body(n) for n in names])
        wait_for(lambda: all(ready.first(n) for n in names), 1200, interval=1, message=f"{len(names)} created Ready")
        return sorted(ready.seen[n] - started for n in names)
    finally:
        ready.stop()


@dataclass
class Operator:
    """The operator process and what counts its cost."""

    process: RollguardProcess
    audit: AuditLog

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid


def idle_window(
    cp: ControlPlane, op: Operator, objects: int, seconds: float, user: str, changed: Sequence[str] = ()
) -> dict[str, Any]:
    """Requests and writes at the API server, and CPU, while nothing changes.

    `changed`: objects whose earlier spec change may still be finishing (scale-down delay,
    post-promotion watch); their writes are counted, and the writes to all others apart.
    """
    mark, before = op.audit.mark(), proc_sample(op.pid)
    time.sleep(seconds)  # a measurement window, not a wait for a condition
    after = proc_sample(op.pid)
    counts = op.audit.count(user, mark)
    return {
        "objects": objects,
        "window_seconds": seconds,
        "requests": counts.requests,
        "writes": counts.writes,
        "writes_to_unchanged_objects": counts.writes_outside(changed),
        "requests_per_object_per_10min": round(counts.requests / max(objects, 1) * 600 / seconds, 2),
        "cpu_percent_of_a_core": round(cpu_percent(before, after), 2),
        "rss_mib": round(after.rss_mib, 1),
        "audit": counts.as_dict(),
    }


def spec_change_latency(api: client.ApiClient, names: list[str], spacing: float) -> dict[str, Any]:
    """Seconds from a spec change (new version) to its new canary Deployment being seen by a watch."""
    new_version = "1.0.1"

    def new_deployment(obj: dict[str, Any]) -> str | None:
        labels = obj["metadata"].get("labels") or {}
        template = ((obj.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
        if new_version in (labels.get("rollguard.io/version"), template.get("rollguard.io/version")):
            return str(labels.get("rollguard.io/model-deployment") or template.get("rollguard.io/model-deployment"))
        return None

    seen = FirstSeen(client.AppsV1Api(api).list_namespaced_deployment, new_deployment, namespace=NAMESPACE).start()
    changed: dict[str, float] = {}
    try:
        for name in names:
            changed[name] = time.monotonic()
            patch_spec(api, NAMESPACE, name, {"model": {"version": new_version, "uri": f"s3://models/{name}/1.0.1"}})
            time.sleep(spacing)  # changes spread out, as users make them
        wait_for(lambda: all(seen.first(n) for n in names), 180, message="a new canary Deployment for every change")
    finally:
        seen.stop()
    samples = [round(seen.first(n) - changed[n], 3) for n in names if seen.first(n)]  # type: ignore[operator]
    return {
        "changes": len(names),
        "seconds_p50": percentile(samples, 50),
        "seconds_p99": percentile(samples, 99),
        "seconds_max": max(samples, default=None),
    }


def error_rate_crossing(prometheus_url: str, namespace: str, version: str) -> PromCrossing:
    """The metric crossing as Prometheus sees it: the check's own error rate, over its own window, per model."""
    sel, rate_window = f'namespace="{namespace}",version="{version}"', f"[{WINDOW_SECONDS}s]"
    return PromCrossing(
        prometheus_url,
        f'sum by (model) (rate(model_requests_total{{{sel},code="500"}}{rate_window}))'
        f" / sum by (model) (rate(model_requests_total{{{sel}}}{rate_window}))",
        "model",
        ERROR_LIMIT,
    ).start()


def canaries(cp: ControlPlane, api: client.ApiClient, names: list[str]) -> dict[str, Any]:
    """Half the names get a bad canary (30% errors), half a good one; all at once, interval 3 s."""
    bad, good = names[: len(names) // 2], names[len(names) // 2 :]
    version = "2.0.0"
    core = client.CoreV1Api(api)

    def canary_ready(pod: dict[str, Any]) -> str | None:
        labels = pod["metadata"].get("labels") or {}
        ready = md.has_condition(pod.get("status") or {}, "Ready")
        return (
            labels.get("rollguard.io/model-deployment")
            if ready and labels.get("rollguard.io/version") == version
            else None
        )

    def rejected(obj: dict[str, Any]) -> str | None:
        status = obj.get("status") or {}
        return obj["metadata"]["name"] if (status.get("rejected") or {}).get("version") == version else None

    crossing = FirstSeen(core.list_namespaced_pod, canary_ready, namespace=NAMESPACE).start()
    rejections = FirstSeen(model_deployments_watch(api, NAMESPACE), rejected).start()
    metric = error_rate_crossing(cp.prometheus_url, NAMESPACE, version)
    queries_before, started = prometheus_queries(cp.prometheus_url), time.monotonic()
    try:
        for name in names:
            env = {"SIMULATED_ERROR_RATE": "0.3"} if name in bad else {}
            md.apply(cp, NAMESPACE, body(name, version=version, env=env, pause="45s"))
        wait_for(lambda: all(crossing.first(n) for n in names), 180, message="every canary pod Ready")
        missing: list[str] = []
        try:
            wait_for(lambda: all(rejections.first(n) for n in bad), 240, message="every bad canary rejected")
        except AssertionError:  # a result, not a crash: the table says how many were still not rejected
            missing = [n for n in bad if not rejections.first(n)]
        metric.stop()
        # Then only the good canaries are under analysis (45 s pause): queries per check due.
        rounds_before, q0, window_start = analysis_marks(api), prometheus_queries(cp.prometheus_url), time.monotonic()
        time.sleep(QUERY_WINDOW_SECONDS)  # a measurement window, not a wait for a condition
        window = time.monotonic() - window_start
        queries_per_second = (prometheus_queries(cp.prometheus_url) - q0) / window
        rounds_after = analysis_marks(api)
        # Every object whose analysis ran in the window (canaries, post-promotion watches) has checks due.
        analysed = {k: n for k, (at, n) in rounds_after.items() if at and at != rounds_before.get(k, (None, 0))[0]}

        def settled(name: str) -> bool:
            status = md.status(api, NAMESPACE, name)
            return status.get("servingVersion") == version or (status.get("rejected") or {}).get("version") == version

        try:
            wait_for(lambda: all(settled(n) for n in good), 300, message="every good canary promoted or rejected")
        except AssertionError:
            missing += [n for n in good if not settled(n)]
    finally:
        crossing.stop()
        rejections.stop()
        metric.stop()
    from_metric = [rejections.seen[n] - metric.seen[n] for n in bad if n in rejections.seen and n in metric.seen]
    latencies = [rejections.first(n) - crossing.first(n) for n in bad if rejections.first(n) and crossing.first(n)]  # type: ignore[operator]
    good_rolled_back = [
        n for n in good if (md.status(api, NAMESPACE, n).get("rejected") or {}).get("version") == version
    ]
    checks_due = sum(analysed.values()) / INTERVAL_SECONDS  # each check is due once per interval
    return {
        "canaries": len(names),
        "bad": len(bad),
        "not_settled_within_deadline": len(missing),
        "interval_seconds": INTERVAL_SECONDS,
        "crossing_to_rejected_seconds_p50": percentile(from_metric, 50),
        "crossing_to_rejected_seconds_p95": percentile(from_metric, 95),
        "crossing_to_rejected_seconds_max": round(max(from_metric), 2) if from_metric else None,
        "crossings_seen": len(from_metric),
        "pod_ready_to_rejected_seconds_p50": percentile(latencies, 50),
        "pod_ready_to_rejected_seconds_p95": percentile(latencies, 95),
        "good_rolled_back": len(good_rolled_back),
        "prometheus_queries_per_second": round(queries_per_second, 2),
        "checks_due_per_second": round(checks_due, 2),
        "queries_per_check_due": round(queries_per_second / checks_due, 2),
        "queries_per_check_round": QUERIES_PER_ROUND,
        "objects_under_analysis": len(analysed),
        "query_window_seconds": round(window, 1),
        "prometheus_queries_total": round(prometheus_queries(cp.prometheus_url) - queries_before),
        "seconds": round(time.monotonic() - started, 1),
        "note": "crossing = first time the canary's error rate over the check's window, polled at"
        " Prometheus every 0.5 s, is above the limit (the bench's own polls end before the query window)",
    }


def analysis_marks(api: client.ApiClient) -> dict[str, tuple[str | None, int]]:
    """Per object: its last analysis time (rollout or post-promotion watch) and how many checks it has."""
    listed: Any = client.CustomObjectsApi(api).list_namespaced_custom_object(md.GROUP, md.VERSION, NAMESPACE, md.PLURAL)
    marks: dict[str, tuple[str | None, int]] = {}
    for obj in listed["items"]:
        status = obj.get("status") or {}
        parts = [status.get("rollout") or {}, status.get("watch") or {}]
        at = max((p.get("lastAnalysisAt") or "" for p in parts), default="") or None
        marks[obj["metadata"]["name"]] = (at, max(len(p.get("checks") or []) for p in parts))
    return marks


def delete_namespace(cp: ControlPlane, api: client.ApiClient, op: Operator, count: int) -> dict[str, Any]:
    """A namespace holding `count` Ready ModelDeployments is deleted: time to gone, operator log errors."""
    names = [f"del-{i:03d}" for i in range(count)]
    ready = FirstSeen(model_deployments_watch(api, DELETE_NAMESPACE), _is_ready).start()
    try:
        create_all(api, DELETE_NAMESPACE, [body(n) for n in names])
        wait_for(lambda: all(ready.first(n) for n in names), 600, interval=1, message="all Ready before the delete")
    finally:
        ready.stop()
    lines_before = len(op.process.logs())
    started = time.monotonic()
    cp.kubectl("delete", "namespace", DELETE_NAMESPACE, "--wait=false", check=True)

    def gone() -> bool:
        try:
            client.CoreV1Api(api).read_namespace(DELETE_NAMESPACE)
            return False
        except ApiException as error:
            return bool(error.status == 404)

    deadline = 600
    finished = True
    try:
        wait_for(gone, deadline, interval=0.5, message=f"namespace {DELETE_NAMESPACE} gone")
    except AssertionError:
        finished = False
    seconds = time.monotonic() - started
    errors = [
        r
        for r in op.process.logs()[lines_before:]
        if str(r.get("level", r.get("levelname", ""))).lower() in {"error", "critical"}
    ]
    return {
        "model_deployments": count,
        "seconds_until_gone": round(seconds, 1) if finished else None,
        "gone_within_deadline": finished,
        "operator_error_lines": len(errors),
        "first_errors": [str(r.get("message", r))[:200] for r in errors[:3]],
    }


def run(
    cp: ControlPlane,
    sizes: list[int],
    idle_seconds: float,
    idle_seconds_small: float,
    spec_changes: int,
    canary_count: int,
    delete_count: int,
    outage_seconds: float = 60,
    log: Callable[[str], None] = print,
    results: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every rollguard scenario on one running control plane (started with OPERATOR_USER audited)."""
    results = {} if results is None else results  # filled as it goes: a failed scenario keeps the others
    api = cp.api_client()
    add_pod_capacity(cp)
    for ns in (NAMESPACE, DELETE_NAMESPACE):
        cp.kubectl("create", "namespace", ns, check=True)
    md.install_crd(cp)
    kubeconfig = install_operator_identity(cp, md.REPO / "charts" / "rollguard")
    resync = operator_default_resync()
    env = {"ROLLGUARD_RESYNC_SECONDS": resync} if resync else {}
    # Cluster-wide, as the chart installs it by default (its ClusterRole, rendered above).
    process = RollguardProcess(kubeconfig, cp.log_dir / "rollguard-bench.log", [], cp.prometheus_url, env)
    process.start()
    op = Operator(process, AuditLog(cp.audit_log))
    results.update({"operator_user": OPERATOR_USER, "resync_seconds": resync, "by_objects": []})
    try:
        made, spec_changed = 0, list[str]()
        for size in sizes:
            batch = [f"model-{i:04d}" for i in range(made, size)]
            mark, cpu_before = op.audit.mark(), proc_sample(op.pid)
            arrivals = create_and_wait_ready(api, batch)
            creating, cpu_after = op.audit.count(OPERATOR_USER, mark), proc_sample(op.pid)
            made = size
            point: dict[str, Any] = {
                "objects": size,
                "created_at_once": len(batch),
                "seconds_until_all_ready": round(arrivals[-1], 1),
                "seconds_until_half_ready": round(arrivals[len(arrivals) // 2], 1),
                "writes_while_creating": creating.writes,
                "audit_while_creating": creating.as_dict(),
                # CPU time, unlike seconds until Ready, hardly moves with the machine's load.
                "operator_cpu_seconds_while_creating": round(cpu_after.cpu_seconds - cpu_before.cpu_seconds, 1),
                "loadavg_after_ready": [round(x, 2) for x in os.getloadavg()],
                "rss_mib_after_ready": round(proc_sample(op.pid).rss_mib, 1),
            }
            log(f"rollguard N={size}: all Ready in {point['seconds_until_all_ready']}s")
            window = idle_seconds if size == sizes[-1] else idle_seconds_small
            point["settle"] = settle(op.audit, OPERATOR_USER)
            log(
                f"rollguard N={size}: quiet {point['settle']['seconds_until_quiet']}s after all Ready, "
                f"{point['settle']['writes']} writes meanwhile"
            )
            point["idle"] = idle_window(cp, op, size, window, OPERATOR_USER, changed=spec_changed)
            log(f"rollguard N={size}: idle {point['idle']['requests']} requests, {point['idle']['writes']} writes")
            changes = [f"model-{i:04d}" for i in range(size - min(spec_changes, len(batch)), size)]
            point["spec_change"] = spec_change_latency(api, changes, spacing=1.0) if changes else {}
            spec_changed += changes
            log(f"rollguard N={size}: spec change p50 {point['spec_change'].get('seconds_p50')}s")
            results["by_objects"].append(point)
        if canary_count:
            count = min(canary_count, max(2, sizes[-1] // 2))
            results["canaries"] = canaries(cp, api, [f"model-{i:04d}" for i in range(count)])
            log(f"rollguard canaries: {results['canaries']}")
        if delete_count:
            results["delete_namespace"] = delete_namespace(cp, api, op, delete_count)
            log(f"rollguard delete namespace: {results['delete_namespace']}")
        if outage_seconds:
            results["outage"] = prometheus_outage(cp, api, outage_seconds)
            log(f"rollguard outage: {results['outage']}")
    finally:
        process.stop()
    return results


def prometheus_outage(cp: ControlPlane, api: client.ApiClient, seconds: float) -> dict[str, Any]:
    """A canary (15 s pause) is under analysis when Prometheus stops for `seconds`: promoted during it?"""
    name = "outage"
    md.apply(cp, NAMESPACE, body(name))
    wait_for(lambda: md.serving(api, NAMESPACE, name, "1.0.0"), 300, message="outage model serving")
    md.apply(cp, NAMESPACE, body(name, version="1.1.0", pause="15s"))
    wait_for(
        lambda: (md.status(api, NAMESPACE, name).get("rollout") or {}).get("lastVerdict") == "Passed",
        180,
        message="a first passing analysis round",
    )
    cp.stop_prometheus()
    promoted_during = False
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            promoted_during = promoted_during or md.status(api, NAMESPACE, name).get("servingVersion") == "1.1.0"
            time.sleep(1)  # sampling the outcome through a fixed-length outage
    finally:
        cp.start_prometheus()
    status = md.status(api, NAMESPACE, name)
    return {
        "outage_seconds": seconds,
        "promoted_during_outage": promoted_during,
        "phase_at_end_of_outage": status.get("phase"),
    }
