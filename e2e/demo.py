"""`make demo`: the operator on the local control plane, one model rolled out through a canary.

1. starts etcd, kube-apiserver, controllers, kwok, Prometheus and the simulated data plane;
2. installs the CRD and runs rollguard;
3. applies examples/fraud-detector.yaml (1.0.0), then a healthy 1.1.0 that walks the canary steps
   and is promoted, then a 1.2.0 whose pods fail 30% of requests, which is rolled back;
4. prints the plugin's status view, and stops everything (or leaves it up with --keep).
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from e2e import md
from e2e.cluster import ControlPlane
from e2e.rollguard_process import RollguardProcess
from e2e.waiting import wait_for

NAMESPACE = "demo"
NAME = "fraud-detector"
EXAMPLE = md.REPO / "examples" / "fraud-detector.yaml"


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def version_of(base: dict[str, Any], version: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    body = copy.deepcopy(base)
    body["spec"]["model"]["version"] = version
    body["spec"]["model"]["uri"] = f"s3://models/{NAME}/{version}"
    body["spec"]["runtime"]["env"] = [{"name": k, "value": v} for k, v in (env or {}).items()]
    return body


def follow(cp: ControlPlane, until: str, timeout: float) -> dict[str, Any]:
    """Print each change of phase, step, weight and check values until `until` phase."""
    api = cp.api_client()
    last = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = md.status(api, NAMESPACE, NAME)
        rollout = status.get("rollout") or {}
        checks = ", ".join(
            f"{c['name']}={c['value']:.3g} ({c['phase']})"
            if c.get("value") is not None
            else f"{c['name']}: {c['phase']}"
            for c in rollout.get("checks", [])
        )
        line = (
            f"  {status.get('phase', '?'):<11} weight={status.get('canaryWeight', 0):>3}%  {status.get('message', '')}"
        )
        if checks:
            line += f"\n               checks: {checks}"
        if line != last:
            print(line, flush=True)
            last = line
        if status.get("phase") == until and status.get("observedGeneration") == (
            md.get(api, NAMESPACE, NAME) or {}
        ).get("metadata", {}).get("generation"):
            return status
        time.sleep(1)
    raise SystemExit(f"demo: {NAME} did not reach phase {until} within {timeout:.0f}s")


def plugin(cp: ControlPlane, *args: str) -> None:
    argv = [sys.executable, "-m", "rollguard.cli", *args, NAME, "-n", NAMESPACE, "--kubeconfig", str(cp.kubeconfig)]
    subprocess.run(argv, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="leave the cluster and operator running at the end")
    args = parser.parse_args()
    state = Path.home() / ".cache" / "rollguard" / "run" / "demo"
    say("starting the local control plane (etcd, kube-apiserver, controllers, kwok, Prometheus, simulator)")
    started = time.monotonic()
    cp = ControlPlane(state, detached=args.keep)
    cp.start()
    operator: RollguardProcess | None = None
    try:
        print(f"  up in {time.monotonic() - started:.1f}s; KUBECONFIG={cp.kubeconfig}; Prometheus {cp.prometheus_url}")
        md.install_crd(cp)
        cp.kubectl("create", "namespace", NAMESPACE)
        say("starting rollguard (python -m rollguard run), watching namespace demo")
        operator = RollguardProcess(cp.kubeconfig, cp.log_dir / "rollguard-demo.log", [NAMESPACE], cp.prometheus_url)
        operator.start()
        print(f"  logs: {operator.log_file}")

        base = yaml.safe_load(EXAMPLE.read_text())
        say(f"kubectl apply -f {EXAMPLE.relative_to(md.REPO)}   (fraud-detector 1.0.0, 3 replicas)")
        md.apply(cp, NAMESPACE, base)
        waited = cp.kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", "--timeout=90s", f"md/{NAME}")
        print(f"  kubectl wait --for=condition=Ready: {waited.stdout.strip() or waited.stderr.strip()}")

        say("a healthy 1.1.0: canary 25% -> 50%, checks every 10s, then promotion")
        md.apply(cp, NAMESPACE, version_of(base, "1.1.0"))
        follow(cp, "Ready", 240)

        say("a bad 1.2.0 (its pods fail 30% of requests): the canary is rolled back automatically")
        md.apply(cp, NAMESPACE, version_of(base, "1.2.0", {"SIMULATED_ERROR_RATE": "0.3"}))
        status = follow(cp, "RolledBack", 240)
        rejected = status["rejected"]
        print(f"  rejected {rejected['version']}: {rejected['message']}\n  query: {rejected.get('query')}")

        say("kubectl rollguard status fraud-detector -n demo")
        plugin(cp, "status")
        say("kubectl get events (what the operator told Kubernetes)")
        print(
            cp.kubectl(
                "get",
                "events",
                "-n",
                NAMESPACE,
                "--field-selector",
                "involvedObject.kind=ModelDeployment",
                "--sort-by=.lastTimestamp",
            ).stdout
        )
        wait_for(
            lambda: set(md.ready_pods_by_version(cp.api_client(), NAMESPACE, NAME)) == {"1.1.0"},
            60,
            message="only the known-good 1.1.0 serves",
        )
        say("done: 1.1.0 promoted, 1.2.0 rolled back, 1.1.0 serving")
        if args.keep:
            print(
                f"  still running. export KUBECONFIG={cp.kubeconfig}; stop with: python -m e2e.cluster down --name demo"
            )
            cp.save_state()
            return 0
    finally:
        if not args.keep:
            if operator is not None:
                operator.stop()
            cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
