"""The surge budget: strategy.canary.maxSurge bounds the pods of a canary rollout at every pass."""

from __future__ import annotations

from typing import Any

import pytest

from rollguard.core.facts import RevisionObserved
from rollguard.core.rollout.sizing import Budget, budgeted, surge_pods
from tests.test_rollout import CANARY, REPLICAS, Cluster, serving, spec_for


@pytest.mark.parametrize(
    ("max_surge", "replicas", "pods"),
    [("25%", 4, 1), ("25%", 5, 2), ("25%", 1, 1), ("100%", 4, 4), ("0%", 4, 0), (2, 4, 2), (0, 4, 0)],
)
def test_max_surge_in_pods_rounds_a_percent_up(max_surge: int | str, replicas: int, pods: int) -> None:
    assert surge_pods(max_surge, replicas) == pods


def seen(replicas: int, ready: int) -> RevisionObserved:
    return RevisionObserved("r", replicas, ready)


@pytest.mark.parametrize(
    ("budget", "target", "stable", "canary", "expected", "why"),
    [
        (Budget(4, 1, 1), 1, seen(4, 4), seen(0, 0), (4, 1), "the canary takes the one surge pod; stable keeps all"),
        (Budget(4, 1, 1), 1, seen(4, 4), seen(1, 1), (3, 1), "its pod ready: stable gives one up"),
        (Budget(4, 1, 1), 2, seen(3, 3), seen(1, 1), (3, 2), "next step: the canary grows into the room"),
        (Budget(4, 1, 1), 4, seen(2, 2), seen(2, 2), (2, 3), "promoting: grows by the surge, stable holds"),
        (Budget(4, 1, 1), 4, seen(1, 1), seen(3, 3), (1, 4), "stable shrank: the canary reaches full size"),
        (Budget(4, 0, 1), 2, seen(4, 4), seen(0, 0), (3, 0), "no surge: stable first gives up maxUnavailable"),
        (Budget(4, 0, 1), 2, seen(3, 3), seen(0, 0), (3, 1), "then the canary takes the freed pod"),
        (Budget(4, 0, 0), 1, seen(4, 4), seen(0, 0), (3, 0), "no surge and maxUnavailable 0: still one at a time"),
        (Budget(4, 1, 1), 2, seen(2, 2), seen(2, 1), (3, 2), "a canary pod lost: stable grows back to cover it"),
    ],
)
def test_budgeted_sizes(
    budget: Budget,
    target: int,
    stable: RevisionObserved,
    canary: RevisionObserved,
    expected: tuple[int, int],
    why: str,
) -> None:
    assert budgeted(budget, target, stable, canary) == expected, why


def walk(max_surge: int | str, replicas: int = REPLICAS, **fields: Any) -> tuple[Cluster, list[tuple[int, int, int]]]:
    """Drives a canary from serving to promoted; returns (pods, ready pods, canary %) seen after every pass."""
    strategy = {**CANARY, "canary": {**CANARY["canary"], "maxSurge": max_surge}}
    cluster = serving("1.0.0", strategy=strategy, replicas=replicas, **fields)
    cluster.set_spec(spec_for("2.0.0", strategy=strategy, replicas=replicas, **fields))
    samples: list[tuple[int, int, int]] = []
    for _ in range(100):
        decision = cluster.reconcile()
        seen_now = cluster.revisions.values()
        samples.append(
            (sum(s.replicas for s in seen_now), sum(s.ready for s in seen_now), cluster.status.canary_weight)
        )
        if decision.status.rollout is None and not decision.status.retired:
            return cluster, samples
    pytest.fail(f"not promoted after 100 passes: {cluster.status.message}")


@pytest.mark.parametrize(("max_surge", "surge"), [("25%", 1), (2, 2), ("100%", 4)])
def test_a_canary_rollout_and_its_promotion_stay_within_the_surge(max_surge: int | str, surge: int) -> None:
    cluster, samples = walk(max_surge)
    assert cluster.status.stable and cluster.status.stable.version == "2.0.0", "promoted"
    assert max(pods for pods, _, _ in samples) <= REPLICAS + surge, f"pods above replicas + {surge}: {samples}"
    assert min(ready for _, ready, _ in samples) >= REPLICAS, f"ready capacity dipped below replicas: {samples}"
    shares = {share for _, _, share in samples}
    assert {25, 50} <= shares, f"the canary's share follows the steps 20% and 50% on 4 pods: {sorted(shares)}"


def test_without_surge_capacity_dips_by_at_most_max_unavailable() -> None:
    cluster, samples = walk(0)
    assert cluster.status.stable and cluster.status.stable.version == "2.0.0", "promoted"
    assert max(pods for pods, _, _ in samples) <= REPLICAS, f"never more pods than replicas: {samples}"
    assert min(ready for _, ready, _ in samples) >= REPLICAS - 1, f"never below replicas - maxUnavailable: {samples}"


def test_promotion_keeps_the_old_pods_left_for_scale_down_delay_and_restarts_none() -> None:
    cluster = serving("1.0.0", strategy=CANARY)
    old = cluster.status.stable
    cluster.set_spec(spec_for("2.0.0", strategy=CANARY))
    decision = cluster.run_until(lambda s: s.rollout is None, "promotion")
    assert old is not None and old.revision in decision.keep_revisions, "the old version is kept for scaleDownDelay"
    assert cluster.revisions[old.revision].replicas <= 1, "with at most the surge's pods"
    new = cluster.status.stable
    assert new is not None and cluster.revisions[new.revision].replicas == REPLICAS, "the canary's Deployment serves"


def test_a_pdb_min_available_counts_every_serving_pod() -> None:
    cluster = serving("1.0.0")
    assert cluster.reconcile().min_available == REPLICAS - 1, "replicas - disruptionBudget.maxUnavailable"
