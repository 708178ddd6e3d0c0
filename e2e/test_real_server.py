"""Issue 9 with a real model server: MLServer 1.7.1 (PyPI) behind kwok pods, judged by the mlserver preset.

Each Ready pod of the ModelDeployment gets its own MLServer process on 127.0.0.1, serving a
scikit-learn model trained at test time, scraped by the harness's Prometheus with the
`namespace` and `pod` labels a cluster's service discovery attaches (e2e/mlserver_backend.py).
Nothing here is simulated but the kubelet: the counters are MLServer's own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e import md
from e2e.mlserver_backend import BUG_ENV, RAISES_ON_NEGATIVE, MLServerFleet
from e2e.rollguard_process import RollguardProcess
from e2e.waiting import prom_query, wait_for

NAME = "fraud"
CHECKS = [
    {"name": "error-rate", "template": "error-rate", "thresholdRange": {"max": 0.05}, "minSampleCount": 10},
    {"name": "mean-latency", "template": "mean-latency", "thresholdRange": {"max": 1.0}, "minSampleCount": 10},
    {"name": "p99", "template": "latency", "quantile": 0.99, "thresholdRange": {"max": 2.5}, "minSampleCount": 10},
]


def release(version: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return md.manifest(
        NAME,
        version=version,
        replicas=1,
        env=env,
        strategy={
            "type": "Canary",
            "canary": {"steps": [{"weight": 50, "pause": {"duration": "6s"}}], "scaleDownDelay": "2s"},
        },
        analysis={
            "interval": "3s",
            "failureLimit": 0,
            "consecutiveErrorLimit": 0,
            "metricPreset": "mlserver",
            "metrics": CHECKS,
        },
    )


@pytest.fixture
def mlservers(own_prometheus: Any, namespace: str, tmp_path: Path) -> Iterator[MLServerFleet]:
    with MLServerFleet(own_prometheus, namespace, NAME, tmp_path) as fleet:
        yield fleet
    print(f"\nMLServer answers by pod (model, HTTP codes): {fleet.answers()}")


def test_real_mlserver_canary_is_promoted_and_a_version_that_raises_is_rolled_back(
    own_prometheus: Any,
    kube_api: client.ApiClient,
    namespace: str,
    prometheus_url: str,
    rollguard: RollguardProcess,
    mlservers: MLServerFleet,
    record_property: Any,
) -> None:
    cp = own_prometheus
    started = time.monotonic()
    md.apply(cp, namespace, release("1.0.0"))
    wait_for(lambda: md.serving(kube_api, namespace, NAME, "1.0.0"), 90, message="1.0.0 serving")

    md.apply(cp, namespace, release("1.1.0"))
    wait_for(lambda: md.serving(kube_api, namespace, NAME, "1.1.0"), 150, interval=1, message="1.1.0 promoted")
    promoted = md.status(kube_api, namespace, NAME)["history"][-1]
    assert (promoted["version"], promoted["outcome"]) == ("1.1.0", "Promoted"), promoted
    assert set(promoted["metrics"]) == {"error-rate", "mean-latency", "p99"}, (
        f"every check read MLServer's real series: {promoted['metrics']}"
    )
    assert promoted["metrics"]["error-rate"] == 0, f"the healthy model answers every input: {promoted['metrics']}"
    healthy_seconds = time.monotonic() - started

    md.apply(cp, namespace, release("1.2.0", env={BUG_ENV: RAISES_ON_NEGATIVE}))
    status = md.wait_phase(kube_api, namespace, NAME, "RolledBack", timeout=150)
    rejected = status["rejected"]
    assert (rejected["version"], rejected["reason"], rejected["check"]) == ("1.2.0", "AnalysisFailed", "error-rate")
    assert 0.1 < rejected["value"] < 0.45, f"a quarter of the inputs are negative and raise: {rejected}"
    canary_pods = f'pod=~"{NAME}-{rejected["revision"]}-'
    assert canary_pods in rejected["query"] and "model_infer_request_failure_total" in rejected["query"], rejected
    wait_for(
        lambda: set(md.ready_pods_by_version(kube_api, namespace, NAME)) == {"1.1.0"},
        30,
        message="only the known-good 1.1.0 serves after the rollback",
    )

    # MLServer's own labels could not have told the versions apart: the URL carries no version.
    failed = f'max_over_time(model_infer_request_failure_total{{namespace="{namespace}"}}[5m]) > 0'
    failures = prom_query(prometheus_url, failed)  # a range: the rolled-back pods are no longer scraped
    assert failures and {s["metric"]["version"] for s in failures} == {"None"}, failures
    assert {s["metric"]["pod"].startswith(f"{NAME}-{rejected['revision']}-") for s in failures} == {True}, (
        f"only the raising version's pods failed requests: {failures}"
    )
    total = time.monotonic() - started
    record_property("real_mlserver_promote_seconds", round(healthy_seconds, 1))
    record_property("real_mlserver_total_seconds", round(total, 1))
    print(f"\nreal MLServer: 1.1.0 promoted after {healthy_seconds:.0f}s, 1.2.0 rolled back; {total:.0f}s in all")
