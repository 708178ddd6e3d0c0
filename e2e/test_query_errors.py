"""Prometheus errors by kind, and thin data, against the real control plane and Prometheus.

A mistyped query is its own object's problem: that ModelDeployment goes Stalled (InvalidQuery,
with Prometheus' own message) at once, while a healthy canary in another namespace, under the
same operator process, is promoted on time and the operator's circuit breaker never opens. A
minSampleCount that is never reached means no verdict at all: good and bad canaries both hold.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kubernetes import client

from e2e import md
from e2e.rollguard_process import RollguardProcess
from e2e.test_canary import ERROR_RATE, canary, start_stable
from e2e.waiting import http_get, wait_for
from rollguard.adapters.prometheus import endpoint_of

# Three PromQL syntax errors, as a user types them: a missing parenthesis, a missing brace, `==`.
TYPOS = [
    {
        "name": "typo-paren",
        "query": 'sum(rate(model_requests_total{version="{{ version }}"}[1m])',
        "thresholdRange": {"max": 1},
    },
    {
        "name": "typo-brace",
        "query": 'sum(rate(model_requests_total{version="{{ version }}"[1m]))',
        "thresholdRange": {"max": 1},
    },
    {
        "name": "typo-matcher",
        "query": 'avg(model_feature_drift_score{version=="{{ version }}"})',
        "thresholdRange": {"max": 1},
    },
]
BREAKER = "rollguard_prometheus_circuit_open"


class BreakerWatch:
    """Reads the operator's breaker gauge every 0.25 s in the background, for the whole scenario."""

    def __init__(self, process: RollguardProcess) -> None:
        self.process = process
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self.samples.append(self.process.metric(BREAKER))
            except (AssertionError, OSError):
                continue  # one missed scrape is not a reading

    def __enter__(self) -> BreakerWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_mistyped_queries_stall_only_their_own_object_and_never_open_the_breaker(
    control_plane: Any,
    kube_api: client.ApiClient,
    namespace: str,
    second_namespace: str,
    crd: None,
    record_property: Any,
) -> None:
    process = RollguardProcess(
        kubeconfig=control_plane.kubeconfig,
        log_file=control_plane.log_dir / f"rollguard-{namespace}-bad-neighbour.log",
        namespaces=[namespace, second_namespace],
        prometheus_url=control_plane.prometheus_url,
    )
    process.start()
    try:
        _run_bad_neighbour(control_plane, kube_api, namespace, second_namespace, process, record_property)
    finally:
        process.stop()


def _run_bad_neighbour(
    cp: Any, api: client.ApiClient, typos_ns: str, healthy_ns: str, process: RollguardProcess, record: Any
) -> None:
    # A long metrics-unavailable deadline: a Stalled within seconds cannot come from that clock.
    patient = {"metricsUnavailable": {"deadline": "10m", "action": "Hold"}}
    start_stable(cp, api, typos_ns, canary("typos", "1.0.0", metrics=[ERROR_RATE, *TYPOS], **patient))
    start_stable(cp, api, healthy_ns, canary("healthy", "1.0.0"))
    _, body = http_get(f"http://{process.metrics_address}/metrics")
    exported = f'{BREAKER}{{endpoint="{endpoint_of(cp.prometheus_url)}"}} 0.0'
    assert exported in body, f"the operator exports its endpoint's breaker, closed: {exported}"

    with BreakerWatch(process) as breaker:
        md.apply(cp, typos_ns, canary("typos", "1.1.0", metrics=[ERROR_RATE, *TYPOS], **patient))
        md.apply(cp, healthy_ns, canary("healthy", "1.1.0"))
        applied = time.monotonic()
        healthy_phases: set[str] = set()

        def typos_stalled() -> dict[str, Any] | None:
            rollout = md.status(api, healthy_ns, "healthy").get("rollout") or {}
            healthy_phases.update(c.get("phase", "") for c in rollout.get("checks", []))
            stalled = md.condition(api, typos_ns, "typos", "Stalled")
            return stalled if stalled and stalled["reason"] == "InvalidQuery" else None

        stalled = wait_for(typos_stalled, 45, interval=0.3, message="typos Stalled with reason InvalidQuery")
        stalled_after = time.monotonic() - applied

        def healthy_promoted() -> bool:
            rollout = md.status(api, healthy_ns, "healthy").get("rollout") or {}
            healthy_phases.update(c.get("phase", "") for c in rollout.get("checks", []))
            return md.serving(api, healthy_ns, "healthy", "1.1.0")

        wait_for(healthy_promoted, 60, interval=0.3, message="the healthy neighbour 1.1.0 promoted")
        promoted_after = time.monotonic() - applied

    record("invalid_query_stalled_seconds", round(stalled_after, 1))
    record("neighbour_promoted_seconds", round(promoted_after, 1))
    print(f"\ntypos Stalled after {stalled_after:.1f}s; healthy neighbour promoted after {promoted_after:.1f}s")
    print(f"Stalled message: {stalled['message']}")

    assert stalled["status"] == "True" and "parse error" in stalled["message"], f"Prometheus' words: {stalled}"
    for index, typo in enumerate(TYPOS, start=1):
        assert f"spec.analysis.metrics[{index}] (check {typo['name']})" in stalled["message"], stalled["message"]
    typos = md.status(api, typos_ns, "typos")
    assert typos["phase"] == "Holding" and typos.get("servingVersion") == "1.0.0", typos["message"]
    assert not typos.get("rejected") and typos["rollout"]["failures"] == 0, "held, never rolled back"
    assert md.has_condition(typos, "MetricsAvailable", "False"), typos["conditions"]
    warnings = wait_for(
        lambda: [e for e in md.events(api, typos_ns, "typos") if e.reason == "InvalidQuery"],
        15,
        message="an InvalidQuery Warning Event (kopf posts Events in the background)",
    )
    assert warnings[0].type == "Warning" and "parse error" in warnings[0].message, warnings[0].message

    promotion = md.status(api, healthy_ns, "healthy")["history"][-1]
    assert "error-rate" in promotion["metrics"], f"the neighbour was promoted on a measured round: {promotion}"
    assert healthy_phases <= {"Passed", "Pending", "Inconclusive", ""}, (
        f"every round of the neighbour was measured (no Error from a shared breaker): {healthy_phases}"
    )
    # Read every 0.25 s from before the typos were applied until after the neighbour's promotion.
    assert len(breaker.samples) >= 4 and max(breaker.samples) == 0, (
        f"the breaker never opened: {len(breaker.samples)} readings, max {max(breaker.samples, default=None)}"
    )
    assert process.metric("rollguard_prometheus_query_errors_total") >= 3, "the typos did fail"
    assert process.metric("rollguard_reconcile_errors_total") == 0, "no pass raised"


def test_an_unreachable_min_sample_count_neither_promotes_nor_rolls_back(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    thin = [{**ERROR_RATE, "minSampleCount": 10_000_000}]
    env = {"good": {}, "bad": {"SIMULATED_ERROR_RATE": "0.5"}}
    for name in env:
        start_stable(control_plane, kube_api, namespace, canary(name, "1.0.0", metrics=thin, inconclusiveLimit=4))
    for name, pods in env.items():
        md.apply(control_plane, namespace, canary(name, "1.1.0", env=pods, metrics=thin, inconclusiveLimit=4))
    seen: dict[str, list[tuple[str, str | None]]] = {name: [] for name in env}

    def both_held() -> bool:
        held = 0
        for name in env:
            status = md.status(kube_api, namespace, name)
            seen[name].append((status.get("phase", ""), status.get("servingVersion")))
            stalled = md.condition(kube_api, namespace, name, "Stalled") or {}
            held += stalled.get("reason") == "InconclusiveAnalysis"
        return held == len(env)

    wait_for(both_held, 90, interval=0.3, message="both canaries held for too many inconclusive rounds")
    for name in env:
        status = md.status(kube_api, namespace, name)
        rollout = status["rollout"]
        check = rollout["checks"][0]
        assert (check["phase"], rollout["failures"], rollout["inconclusive"]) == ("Inconclusive", 0, 5), rollout
        assert "fewer than the 10000000 needed" in check["message"] and check["samples"] > 0, check
        assert {version for _, version in seen[name]} == {"1.0.0"}, f"{name}: never promoted: {seen[name]}"
        assert "RolledBack" not in {phase for phase, _ in seen[name]}, f"{name}: never rolled back: {seen[name]}"
        assert not status.get("rejected") and status["phase"] == "Holding", status["message"]
        assert [h["outcome"] for h in status["history"]] == ["Promoted"], f"{name}: only 1.0.0 in history"
    bad = md.status(kube_api, namespace, "bad")["rollout"]["checks"][0]
    assert bad["value"] > 0.3, f"the bad canary's error rate was measured, and still not judged: {bad}"
