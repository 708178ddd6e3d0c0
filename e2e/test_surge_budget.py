"""The surge budget on the real control plane: a 4-replica canary, its promotion and a rollback, sampled
every 0.2 s throughout, never run more than replicas + maxSurge pods nor fewer than replicas ready, and
rollguard's PDB makes kcm warn about nothing."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from e2e import md
from e2e.rollguard_process import RollguardProcess
from e2e.test_canary import canary, start_stable
from e2e.waiting import wait_for

REPLICAS, SURGE = 4, 1  # maxSurge defaults to 25%: 1 pod of 4
STEPS = [{"weight": 25, "pause": {"duration": "3s"}}, {"weight": 50, "pause": {"duration": "3s"}}]
MAX_GAP_SECONDS = 2.0  # shorter than any step pause: every step is sampled several times


def pods(api: client.ApiClient, namespace: str, name: str) -> tuple[int, int]:
    """(pods not being deleted, ready pods) of the ModelDeployment."""
    listed = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"rollguard.io/model-deployment={name}"
    )
    live = [p for p in listed.items if not p.metadata.deletion_timestamp]
    ready = [p for p in live if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
    return len(live), len(ready)


def within_budget(sample: tuple[int, int, Any]) -> None:
    """The surge budget, asserted at each sample: never more than replicas + maxSurge pods, never fewer ready."""
    live, ready, _ = sample
    assert live <= REPLICAS + SURGE, f"{live} pods: more than replicas {REPLICAS} + maxSurge {SURGE}"
    assert REPLICAS <= ready <= REPLICAS + SURGE, f"{ready} ready pods: outside {REPLICAS}..{REPLICAS + SURGE}"


def sample_until(api: client.ApiClient, namespace: str, name: str, done: Any, timeout: float, what: str) -> list[Any]:
    """(pods, ready, canary weight) every 0.2 s until done(status), each within the budget; fails after `timeout`."""
    samples: list[Any] = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while True:
        status = md.status(api, namespace, name)
        samples.append((*pods(api, namespace, name), status.get("canaryWeight")))
        now = time.monotonic()
        # A slow apiserver answer would leave a moment unsampled: the gap between samples is bounded too.
        assert now - last < MAX_GAP_SECONDS, f"{what}: {now - last:.1f}s between samples, moments went unseen"
        last = now
        within_budget(samples[-1])
        if done(status):
            return samples
        assert now < deadline, f"{what}: not reached after {timeout}s; last samples {samples[-5:]}"
        time.sleep(0.2)


def pdb_warnings(api: client.ApiClient, namespace: str) -> list[str]:
    found = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector="involvedObject.kind=PodDisruptionBudget,type=Warning"
    )
    return [f"{e.reason}: {e.message}" for e in found.items]


def test_a_canary_and_its_promotion_stay_within_the_surge_budget_and_the_pdb_never_warns(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    name = "surge"
    start_stable(control_plane, kube_api, namespace, canary(name, "1.0.0", steps=STEPS, replicas=REPLICAS))
    md.apply(control_plane, namespace, canary(name, "1.1.0", steps=STEPS, replicas=REPLICAS))
    samples = sample_until(
        kube_api,
        namespace,
        name,
        lambda s: s.get("servingVersion") == "1.1.0" and not s.get("retired"),
        120,
        "1.1.0 promoted and 1.0.0 removed after scaleDownDelay",
    )
    most_pods = max(live for live, _, _ in samples)
    most_ready, least_ready = max(r for _, r, _ in samples), min(r for _, r, _ in samples)
    print(
        f"\nsurge: {len(samples)} samples, at most {most_pods} pods / {most_ready} ready, at least {least_ready} ready"
    )
    assert most_pods == REPLICAS + SURGE, f"the budget was used (a canary pod beside full stable): {samples}"
    weights = {w for _, _, w in samples if w}
    assert {25, 50} <= weights, f"the canary's share follows the steps (25% and 50% of 4 pods): {sorted(weights)}"

    # A rollback deletes the canary's Deployment at once: the other moment kcm used to warn.
    md.apply(
        control_plane,
        namespace,
        canary(name, "1.2.0", env={"SIMULATED_ERROR_RATE": "0.3"}, steps=STEPS, replicas=REPLICAS),
    )
    rollback = sample_until(
        kube_api, namespace, name, lambda s: s.get("phase") == "RolledBack", 90, "1.2.0 rolled back"
    )
    rollback += sample_until(
        kube_api,
        namespace,
        name,
        lambda _: pods(kube_api, namespace, name) == (REPLICAS, REPLICAS),
        60,
        "1.1.0 alone, all ready",
    )
    print(f"rollback: {len(rollback)} samples, at most {max(live for live, _, _ in rollback)} pods")
    policy = client.PolicyV1Api(kube_api)
    budget = policy.read_namespaced_pod_disruption_budget(name, namespace)
    assert budget.spec.min_available == REPLICAS - 1 and budget.spec.max_unavailable is None, budget.spec
    wait_for(
        lambda: policy.read_namespaced_pod_disruption_budget(name, namespace).status,
        30,
        message="kcm's disruption controller has counted the pods left after the rollback",
        until=lambda s: s.observed_generation == budget.metadata.generation and s.expected_pods == REPLICAS,
    )
    assert pdb_warnings(kube_api, namespace) == [], "rollguard's PDB made kcm warn"
