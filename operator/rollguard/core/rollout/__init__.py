"""The rollout state machine: `decide(inputs) -> Decision`, a pure function of spec, status,
what the cluster shows, this round's analysis, and the time.

A restarted operator resumes exactly where it was because every fact it needs is in status.
Split by phase: `steps` (start, advance, promote), `holds` (verdicts, shared outages, missing
metrics), `watch` (after promotion), `manual` (the plugin's annotations), `sizing` (pods within the
surge budget, weights), `announce` (a decision's Event, rebuilt from status after a kill).
"""

from __future__ import annotations

from rollguard.core import notify, policy
from rollguard.core.rollout.fallback import overlay, progress_fallback
from rollguard.core.rollout.fallback import violations as fallback_violations
from rollguard.core.rollout.manual import apply_actions
from rollguard.core.rollout.model import Decision, Inputs, Workload
from rollguard.core.rollout.sizing import canary_replicas, min_available, route_weights_of, workloads_of
from rollguard.core.rollout.state import Pass
from rollguard.core.rollout.steps import (
    choose_rollout,
    progress_canary,
    progress_readiness_gated,
    stop_clocks_while_paused,
)
from rollguard.core.rollout.watch import progress_watch
from rollguard.core.summary import summarize
from rollguard.core.validation import problems_of

__all__ = ["Decision", "Inputs", "Workload", "canary_replicas", "decide"]


def decide(inputs: Inputs) -> Decision:
    """One reconcile pass: what to run, what status to write, what to tell the user."""
    p = Pass(inputs)
    invalid = problems_of(inputs.spec, inputs.route_missing, inputs.metrics_configured)
    invalid_reason = "InvalidSpec"
    if not invalid:
        # The platform's pod policy gates every new revision: a refused one is never written.
        invalid = policy.violations(p.desired.template["runtime"], inputs.pod_policy)
        # Endpoints too: a tenant names only what the platform defined for its namespace (no URL, no Secret).
        invalid += notify.violations(inputs.spec, inputs.namespace, inputs.notification_catalog)
        invalid += fallback_violations(inputs.spec, inputs.pod_policy)  # the fallback is no way around it
        invalid_reason = "PolicyViolation" if invalid else invalid_reason
    if not invalid:
        apply_actions(p)
        choose_rollout(p)
        rollout = p.status.rollout
        if rollout is not None:
            stop_clocks_while_paused(p, rollout)
        if rollout is not None and not p.paused:
            if rollout.kind == "Canary":
                progress_canary(p, rollout)
            else:
                progress_readiness_gated(p, rollout)
        elif rollout is None:
            progress_watch(p)
    fallback_workload = None if invalid else progress_fallback(p)
    workloads, keep = workloads_of(p)
    p.events += summarize(
        p.status,
        spec=inputs.spec,
        name=inputs.name,
        generation=inputs.generation,
        desired=p.desired,
        revisions=inputs.revisions,
        base_replicas=p.base_replicas(),
        paused=p.paused,
        invalid=invalid,
        invalid_reason=invalid_reason,
        now_iso=p.now_iso,
    )
    if not invalid:
        overlay(p.status, inputs.generation, p.now_iso)
    return Decision(
        status=p.status,
        workloads=workloads,
        keep_revisions=keep,
        events=p.events,
        route_weights=route_weights_of(p),
        invalid=invalid,
        invalid_reason=invalid_reason,
        min_available=min_available(p),
        fallback=fallback_workload,
    )
