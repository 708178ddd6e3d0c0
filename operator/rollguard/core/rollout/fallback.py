"""spec.fallback: a warm model that takes the traffic while the model cannot serve, and gives it back.

It takes the traffic when the serving version has had no ready pod for `activateAfter` (reason
ServingNotReady), or failed its post-promotion checks with no known-good version to roll back to
(PostPromotionAnalysisFailed). It gives it back as soon as a pod of the model is ready again, or (checks
case) when the degraded version stops serving as-is: another version is promoted or starts rolling out
(it needs real traffic to be judged), or a user retries it. A version without traffic cannot be measured,
so "its checks pass again" can never be observed; a new version is the way back.

Pure: the reconciler builds the Deployment and switches the Services' selectors from `Decision.fallback`.
"""

from __future__ import annotations

from rollguard.api.base import duration_seconds
from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import Cause, Condition, FallbackStatus, ModelDeploymentStatus, RevisionRef
from rollguard.core import clock, naming, policy
from rollguard.core.builders import revision_ref
from rollguard.core.conditions import Truth, set_condition
from rollguard.core.rollout.model import FallbackWorkload
from rollguard.core.rollout.state import Pass

NOT_READY = "ServingNotReady"
DEGRADED = "PostPromotionAnalysisFailed"


def fallback_ref(spec: ModelDeploymentSpec) -> RevisionRef | None:
    """The fallback as a revision (its model, and its runtime or spec.runtime), None when none is declared."""
    declared = spec.fallback
    if declared is None:
        return None
    runtime = declared.runtime or spec.runtime
    template = {
        "model": declared.model.model_dump(mode="json", by_alias=True, exclude_none=True),
        "runtime": runtime.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    return revision_ref(template, naming.revision_of(template))


def violations(spec: ModelDeploymentSpec, pod_policy: policy.PodPolicy) -> list[str]:
    """The platform's pod policy applies to a fallback runtime as to spec.runtime (checked there already)."""
    if spec.fallback is None or spec.fallback.runtime is None:
        return []
    runtime = spec.fallback.runtime.model_dump(mode="json", by_alias=True, exclude_none=True)
    return [
        problem.replace("spec.runtime.", "spec.fallback.runtime.", 1)
        for problem in policy.violations(runtime, pod_policy)
    ]


def _serving_ready(p: Pass) -> int:
    """Ready pods of the model's revisions (stable, and a rollout's target): what its Services can reach."""
    revisions = [p.status.stable, p.status.rollout.target if p.status.rollout else None]
    return sum(p.observed(ref.revision).ready for ref in revisions if ref is not None)


def _why(p: Pass, state: FallbackStatus) -> tuple[str, Cause | None, str] | None:
    """(reason, cause, evidence) when the fallback should serve this pass, else None."""
    stable, rejected = p.status.stable, p.status.rejected
    if (
        stable is not None
        and rejected is not None
        and rejected.revision == stable.revision
        and rejected.reason == DEGRADED
        and p.status.rollout is None
        and (state.active or p.inputs.fallback_ready > 0)  # never trade a degraded model for nothing
    ):
        return DEGRADED, rejected.cause, f"stable version {stable.version} degraded after promotion: {rejected.message}"
    declared = p.spec.fallback
    if stable is None or declared is None or state.unready_since is None:
        return None
    unready_for = clock.seconds_since(state.unready_since, p.now)
    if unready_for < duration_seconds(declared.activate_after):
        return None
    failure = p.observed(stable.revision).failure
    why = f": {failure}" if failure else ""
    return NOT_READY, "Infrastructure", f"no pod of version {stable.version} ready for {int(unready_for)}s{why}"


def progress_fallback(p: Pass) -> FallbackWorkload | None:
    """Keeps status.fallback and decides whether the fallback serves; events for each switch."""
    ref, before = fallback_ref(p.spec), p.status.fallback
    if ref is None or p.spec.fallback is None:
        if before is not None and before.active:
            p.event("Normal", "FallbackReleased", f"spec.fallback removed: fallback {before.version} serves no more")
        p.status.fallback = None
        return None
    state = before.model_copy() if before is not None else FallbackStatus(version=ref.version, revision=ref.revision)
    state.version, state.revision, state.ready_replicas = ref.version, ref.revision, p.inputs.fallback_ready
    nothing_ready = p.status.stable is not None and p.base_replicas() > 0 and _serving_ready(p) == 0
    state.unready_since = (state.unready_since or p.now_iso) if nothing_ready else None
    why = _why(p, state)
    if why is not None:
        reason, cause, evidence = why
        message = (
            f"fallback {ref.version} serves the traffic ({state.ready_replicas}/{p.spec.fallback.replicas} ready, "
            f"cause {cause}): {evidence}; {_until(reason)}"
        )
        if not state.active:
            state.active, state.since = True, p.now_iso
            p.event("Warning", "FallbackActivated", message)
        if state.reason != reason:  # written once per switch: no status write every pass while it serves
            state.reason, state.cause, state.message = reason, cause, message
    elif state.active:
        held_for = int(max(0.0, clock.seconds_since(state.since, p.now)))
        message = f"{_recovered(p, state)}: traffic back from fallback {ref.version} after {held_for}s"
        p.event("Normal", "FallbackReleased", message)
        # since and message tell of this switch, so a restarted operator can announce it again (announce.py)
        state.active, state.since, state.reason, state.cause, state.message = False, p.now_iso, None, None, message
    p.status.fallback = state
    return FallbackWorkload(ref, p.spec.fallback.replicas, state.active)


def _until(reason: str) -> str:
    if reason == NOT_READY:
        return "the traffic comes back as soon as a pod of the model is ready again"
    return "the traffic comes back when a new version rolls out or is promoted (or `kubectl rollguard retry`)"


def _recovered(p: Pass, state: FallbackStatus) -> str:
    stable = p.status.stable
    if state.reason == NOT_READY:
        return f"{_serving_ready(p)} pod(s) of the model ready again"
    if p.status.rollout is not None:
        return f"version {p.status.rollout.target.version} rolling out (it needs real traffic to be judged)"
    return f"version {stable.version if stable else 'nothing'} serving again"


def overlay(status: ModelDeploymentStatus, generation: int, now_iso: str) -> None:
    """After summarize(): while the fallback serves, Ready says so and the message leads with it."""
    state = status.fallback
    if state is None:
        status.conditions = [c for c in status.conditions if c.type != "FallbackActive"]
        return
    conditions: list[Condition] = status.conditions
    active: tuple[Truth, str, str]
    if state.active:
        conditions = set_condition(conditions, "Ready", "False", "FallbackActive", state.message, generation, now_iso)
        status.message = f"{state.message}. {status.message}"
        active = ("True", state.reason or "FallbackActive", state.message)
    else:
        active = ("False", "ModelServing", f"fallback {state.version} kept warm, no traffic")
    truth, reason, text = active
    status.conditions = set_condition(conditions, "FallbackActive", truth, reason, text, generation, now_iso)
