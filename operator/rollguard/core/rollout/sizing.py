"""How many pods each revision runs, and the traffic weights of a routed canary."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rollguard.api.status import RolloutStatus
from rollguard.core import clock
from rollguard.core.facts import RevisionObserved
from rollguard.core.rollout.model import Workload
from rollguard.core.rollout.state import Pass


def canary_replicas(total: int, weight: int) -> int:
    """Canary pods for a step at `weight`%: ceil(total x weight / 100), at least one.

    Without a traffic router the canary's share is canary / (canary + stable); with the surge budget
    stable shrinks to total - canary, so the share is the step's weight rounded to whole pods.
    """
    if total <= 0:
        return 0
    return min(total, max(1, math.ceil(total * weight / 100)))


@dataclass(frozen=True)
class Budget:
    """strategy.canary.maxSurge resolved to pods, and the stable pods a rollout may take without surge."""

    replicas: int
    surge: int
    unavailable: int


def surge_pods(max_surge: int | str, replicas: int) -> int:
    """maxSurge in pods: a percent of replicas rounds up, as a Deployment's maxSurge does."""
    if isinstance(max_surge, str):
        return math.ceil(replicas * int(max_surge.rstrip("%")) / 100)
    return max_surge


def budget_of(p: Pass) -> Budget | None:
    """None when the budget does not apply: no canary strategy, an HPA owns stable's count, or an
    HTTPRoute sets the shares (stable must keep the pods for its route weight until the route moves)."""
    canary = p.spec.strategy.canary
    if canary is None or p.spec.autoscaling is not None or canary.traffic_routing.type != "ReplicaRatio":
        return None
    replicas = p.base_replicas()
    return Budget(replicas, surge_pods(canary.max_surge, replicas), p.spec.disruption_budget.max_unavailable)


def budgeted(
    budget: Budget, canary_target: int, stable_seen: RevisionObserved, canary_seen: RevisionObserved
) -> tuple[int, int]:
    """(stable, canary) replicas for this pass, moving toward (replicas - target, target).

    The canary grows only into the room the surge leaves beside stable's current pods; stable shrinks
    only as far as the canary's ready pods replace it (with no surge: first by maxUnavailable, at least 1).
    """
    replicas = budget.replicas
    canary_ready = min(canary_seen.ready, canary_target)
    give_up = 0 if budget.surge > 0 else max(1, budget.unavailable)
    stable = min(replicas, max(replicas - canary_target, replicas - canary_ready - give_up))
    room = replicas + budget.surge - max(stable, stable_seen.replicas)
    canary = max(0, min(canary_target, max(room, min(canary_seen.replicas, canary_target))))
    return stable, canary


def canary_target(p: Pass, rollout: RolloutStatus) -> int:
    """The canary's pods at its current step; at full size once promoting (and for other kinds)."""
    canary = p.spec.strategy.canary
    if rollout.kind == "Canary" and not rollout.promoting and canary is not None:
        return canary_replicas(p.base_replicas(), canary.steps[min(rollout.step_index, len(canary.steps) - 1)].weight)
    return p.base_replicas()


def sizes(p: Pass) -> tuple[int, int]:
    """(stable, canary) replicas this pass: within the surge budget while a rollout replaces a stable."""
    base, rollout, stable = p.base_replicas(), p.status.rollout, p.status.stable
    if rollout is None:
        return base, 0
    target = canary_target(p, rollout)
    budget = budget_of(p)
    if stable is None or budget is None or rollout.kind != "Canary":
        return base, target  # a rollback to known-good comes back at full size at once: speed over cost
    return budgeted(budget, target, p.observed(stable.revision), p.observed(rollout.target.revision))


def reached(p: Pass, rollout: RolloutStatus) -> bool:
    """The canary runs its target on ready pods and, at a step, stable has shrunk to make room for it
    (at promotion the old stable keeps what it has left, within the budget, for scaleDownDelay)."""
    stable_want, canary_want = sizes(p)
    stable = p.status.stable
    at_step = rollout.kind == "Canary" and not rollout.promoting
    shrunk = not at_step or stable is None or p.observed(stable.revision).replicas <= stable_want
    return p.ready_at(rollout.target.revision, canary_want) and canary_want == canary_target(p, rollout) and shrunk


def min_available(p: Pass) -> int:
    """The PodDisruptionBudget's minAvailable: replicas - maxUnavailable, counted over every serving pod."""
    return max(0, p.base_replicas() - p.spec.disruption_budget.max_unavailable)


def workloads_of(p: Pass) -> tuple[list[Workload], set[str]]:
    stable, rollout = p.status.stable, p.status.rollout
    workloads: list[Workload] = []
    stable_want, canary_want = sizes(p)
    if stable is not None:
        # With an autoscaler, `base` is its current count, so applying it never fights the HPA.
        workloads.append(Workload(stable, stable_want, "stable"))
    if rollout is not None:
        workloads.append(Workload(rollout.target, canary_want, "canary"))
    keep = {w.ref.revision for w in workloads}
    p.status.retired = [
        r for r in p.status.retired if r.revision not in keep and clock.seconds_since(r.delete_after, p.now) < 0
    ]
    keep |= {r.revision for r in p.status.retired}
    return workloads, keep


def route_weights_of(p: Pass) -> tuple[int, int] | None:
    canary = p.spec.strategy.canary
    if canary is None or canary.traffic_routing.type != "GatewayAPI":
        return None
    rollout = p.status.rollout
    if rollout is None or rollout.kind != "Canary" or (rollout.weight_reached_at is None and not rollout.promoting):
        return (100, 0)
    return (100 - rollout.weight, rollout.weight)
