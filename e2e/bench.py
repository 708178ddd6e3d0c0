"""`make bench`: cost and latency at scale, measured on the real control plane (never asserted in tests).

    python -m e2e.bench                                  # smoke: 10 objects, 30 s idle, no Argo
    python -m e2e.bench --sizes 100,300,1000 --idle-minutes 5 --canaries 50 --delete 100 --argo

  decide           pure decide() passes per second (no cluster)
  per N in sizes   N created at once → all Ready, RSS; idle window: requests and writes by the
                   operator's identity counted at the API server (audit log), CPU from /proc;
                   spec change → new canary Deployment seen by a watch, p50/p99
  canaries         half bad (30% errors), interval 3 s: canary pod Ready → status.rejected p50/p95,
                   good ones rolled back, Prometheus queries/s (its own /metrics) vs checks due/s
  delete           a namespace holding M ModelDeployments: time until gone, operator error lines
  outage           Prometheus stopped 60 s under a canary: promoted during the outage?
  --argo           idle, rollback and outage with Argo Rollouts (built from its Go module) on a
                   second control plane, and rollguard/Argo ratios

Results: bench-results/bench.json, bench.md (the table) and bench.png (cost and latency against N).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from e2e import bench_argo, bench_report, bench_rollguard, md
from e2e.bench_probes import machine_facts
from e2e.cluster import ControlPlane
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


def operator_code() -> str:
    """Which operator code ran: polling (kopf timers) or event-driven, and the tree's commit."""
    handlers = (md.REPO / "operator" / "rollguard" / "handlers.py").read_text()
    kind = "polling (kopf.timer resync)" if "kopf.timer" in handlers else "event-driven (no kopf.timer)"
    head = subprocess.run(
        ["git", "-C", str(md.REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(md.REPO), "status", "--porcelain", "--", "operator"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{kind}, {head or '?'}{' + uncommitted operator changes' if dirty else ''}"


KCM_QPS = 200  # kube-controller-manager's own client limit (its default, 20/s, makes ReplicaSets at ~7 a second)


def fresh_control_plane(state: Path, audit_user: str, kcm_qps: int = KCM_QPS) -> ControlPlane:
    shutil.rmtree(state, ignore_errors=True)  # old etcd data would not match new tokens
    cp = ControlPlane(state)
    cp.audit_users = [audit_user]
    cp.scrape_seconds = bench_rollguard.SCRAPE_SECONDS
    if kcm_qps:
        cp.controller_manager_args = [f"--kube-api-qps={kcm_qps}", f"--kube-api-burst={2 * kcm_qps}"]
    return cp


def run(args: argparse.Namespace, out: Path, state_root: Path) -> dict[str, Any]:
    """Every scenario the arguments ask for; writes bench.json, bench.md and bench.png into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    sizes = sorted({int(s) for s in args.sizes.split(",")}) if args.sizes else [args.objects]
    results: dict[str, Any] = {
        "machine": machine_facts(),
        "operator_code": operator_code(),
        "arguments": vars(args),
        "decide": bench_decide(200 if sizes[-1] < 50 else 2000),
    }
    started = time.monotonic()
    try:
        _run_scenarios(args, sizes, results, state_root)
    finally:  # whatever was measured is written, also when a scenario failed
        results["machine_after"] = machine_facts()
        results["seconds"] = round(time.monotonic() - started)
        (out / "bench.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        (out / "bench.md").write_text(bench_report.markdown(results))
        bench_report.plot(results, out / "bench.png")
    return results


def _run_scenarios(args: argparse.Namespace, sizes: list[int], results: dict[str, Any], state_root: Path) -> None:
    results["rollguard"] = {}
    with fresh_control_plane(state_root / "rollguard", bench_rollguard.OPERATOR_USER, args.kcm_qps) as cp:
        bench_rollguard.run(
            cp,
            sizes,
            idle_seconds=args.idle_minutes * 60,
            idle_seconds_small=args.small_idle_minutes * 60,
            spec_changes=args.spec_changes,
            canary_count=args.canaries,
            delete_count=args.delete,
            outage_seconds=args.outage_seconds,
            log=lambda line: print(line, flush=True),
            results=results["rollguard"],
        )
    if args.argo:
        with fresh_control_plane(state_root / "argo", bench_argo.ARGO_USER, args.kcm_qps) as cp:
            results["argo"] = bench_argo.run(
                cp,
                args.argo_objects or sizes[-1],
                idle_seconds=(args.argo_idle_minutes or args.idle_minutes) * 60,
                bad=args.argo_rollbacks,
                outage_seconds=args.outage_seconds or 60,
                log=lambda line: print(line, flush=True),
            )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objects", type=int, default=10, help="ModelDeployments (when --sizes is not given)")
    p.add_argument("--sizes", default="", help="comma-separated numbers of objects, measured in turn: 100,300,1000")
    p.add_argument("--idle-minutes", type=float, default=0.5, help="idle window at the largest size")
    p.add_argument("--small-idle-minutes", type=float, default=0.5, help="idle window at the smaller sizes")
    p.add_argument("--spec-changes", type=int, default=5, help="spec changes timed at each size")
    p.add_argument("--canaries", type=int, default=4, help="canaries at once (half bad), among the largest size")
    p.add_argument("--delete", type=int, default=5, help="ModelDeployments in the namespace deleted")
    p.add_argument("--outage-seconds", type=float, default=0, help="Prometheus outage under a canary (0: skipped)")
    p.add_argument("--argo", action="store_true", help="also run Argo Rollouts side by side")
    p.add_argument(
        "--argo-objects", type=int, default=0, help="Rollouts for Argo's idle window (default: largest size)"
    )
    p.add_argument("--argo-idle-minutes", type=float, default=0, help="Argo's idle window (default: --idle-minutes)")
    p.add_argument("--argo-rollbacks", type=int, default=10, help="bad Argo canaries timed")
    p.add_argument(
        "--kcm-qps",
        type=int,
        default=KCM_QPS,
        help="kube-controller-manager's --kube-api-qps (burst twice that); 0: its default, 20",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def main() -> int:
    args = parser().parse_args()
    results = run(args, args.out, Path.home() / ".cache" / "rollguard" / "run" / "bench")
    print()
    print((args.out / "bench.md").read_text())
    print(f"written to {args.out}/bench.json, bench.md, bench.png ({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
