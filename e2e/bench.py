"""`make bench`: speed and scale, measured against the real control plane (never asserted in tests).

  decide           pure decide() passes per second (no cluster)
  time-to-ready    N ModelDeployments applied at once until all are Ready
  steady-state     reconcile pass duration and API writes over a minute with N unchanged objects
  rollback         seconds from a canary's error rate crossing its limit to stable taking all traffic

Results go to bench-results/<name>.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from e2e import md
from e2e.cluster import ControlPlane
from e2e.rollguard_process import RollguardProcess
from e2e.waiting import wait_for
from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import ModelDeploymentStatus
from rollguard.core.facts import RevisionObserved
from rollguard.core.rollout import Inputs, decide

RESULTS = md.REPO / "bench-results"


def bench_decide(passes: int = 2000) -> dict[str, Any]:
    spec = ModelDeploymentSpec.model_validate(md.manifest("bench", replicas=3)["spec"])
    status = ModelDeploymentStatus()
    revisions: dict[str, RevisionObserved] = {}
    started = time.perf_counter()
    for _ in range(passes):
        decision = decide(Inputs("bench", "ns", 1, spec, status, {}, revisions, datetime.now(UTC)))
        status = decision.status
        revisions = {
            w.ref.revision: RevisionObserved(w.ref.revision, w.replicas, w.replicas) for w in decision.workloads
        }
    seconds = time.perf_counter() - started
    return {
        "passes": passes,
        "passes_per_second": round(passes / seconds),
        "microseconds_per_pass": round(seconds / passes * 1e6),
    }


def ready_count(cp: ControlPlane, namespace: str, names: list[str]) -> int:
    api = cp.api_client()
    return sum(1 for n in names if (md.condition(api, namespace, n, "Ready") or {}).get("status") == "True")


def bench_cluster(cp: ControlPlane, count: int, rollbacks: int) -> dict[str, Any]:
    namespace = "bench"
    cp.kubectl("create", "namespace", namespace)
    md.install_crd(cp)
    operator = RollguardProcess(cp.kubeconfig, cp.log_dir / "rollguard-bench.log", [namespace], cp.prometheus_url)
    operator.start()
    results: dict[str, Any] = {}
    try:
        names = [f"model-{i:03d}" for i in range(count)]
        started = time.monotonic()
        for name in names:
            md.apply(cp, namespace, md.manifest(name, replicas=2, strategy={"type": "Rolling"}))
        wait_for(lambda: ready_count(cp, namespace, names) == count, 600, interval=1, message="all Ready")
        results["time_to_ready"] = {"models": count, "seconds_until_all_ready": round(time.monotonic() - started, 1)}

        writes_before = operator.metric("rollguard_api_writes_total")
        passes_before = operator.metric("rollguard_reconcile_duration_seconds_count")
        seconds_before = operator.metric("rollguard_reconcile_duration_seconds_sum")
        window = 60.0
        time.sleep(window)  # a measurement window, not a wait for a condition
        passes = operator.metric("rollguard_reconcile_duration_seconds_count") - passes_before
        results["steady_state"] = {
            "models": count,
            "window_seconds": window,
            "reconcile_passes": int(passes),
            "mean_pass_ms": round(
                (operator.metric("rollguard_reconcile_duration_seconds_sum") - seconds_before) / max(passes, 1) * 1000,
                1,
            ),
            "api_writes": int(operator.metric("rollguard_api_writes_total") - writes_before),
        }
        results["rollback"] = bench_rollbacks(cp, namespace, rollbacks)
    finally:
        operator.stop()
    return results


def bench_rollbacks(cp: ControlPlane, namespace: str, runs: int) -> dict[str, Any]:
    api = cp.api_client()
    samples = []
    for run in range(runs):
        name = f"rollback-{run}"
        analysis = {
            "interval": "3s",
            "failureLimit": 0,
            "metrics": [{"name": "error-rate", "template": "error-rate", "thresholdRange": {"max": 0.05}}],
        }
        strategy = {"type": "Canary", "canary": {"steps": [{"weight": 50, "pause": {"duration": "30s"}}]}}
        md.apply(cp, namespace, md.manifest(name, replicas=2, strategy=strategy, analysis=analysis))
        wait_for(
            lambda n=name: (md.condition(api, namespace, n, "Ready") or {}).get("status") == "True",
            60,
            message=f"{name} Ready",
        )
        bad = md.manifest(
            name, version="2.0.0", replicas=2, env={"SIMULATED_ERROR_RATE": "0.3"}, strategy=strategy, analysis=analysis
        )
        md.apply(cp, namespace, bad)
        crossed = wait_for(
            lambda n=name: md.ready_pods_by_version(api, namespace, n).get("2.0.0") and time.monotonic(),
            60,
            interval=0.1,
            message="canary ready",
        )
        wait_for(
            lambda n=name: set(md.ready_pods_by_version(api, namespace, n)) == {"1.0.0"},
            60,
            interval=0.1,
            message="stable only",
        )
        samples.append(time.monotonic() - crossed)
    return {
        "runs": runs,
        "analysis_interval_seconds": 3,
        "seconds_min": round(min(samples), 2),
        "seconds_median": round(statistics.median(samples), 2),
        "seconds_max": round(max(samples), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--rollbacks", type=int, default=3)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    results: dict[str, Any] = {"decide": bench_decide()}
    state = Path.home() / ".cache" / "rollguard" / "run" / "bench"
    with ControlPlane(state) as cp:
        results.update(bench_cluster(cp, args.models, args.rollbacks))
    results["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    (RESULTS / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, values in results.items():
        print(f"{name:<14} {values}")
    print(f"\nwritten to {RESULTS / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
