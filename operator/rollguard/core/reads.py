"""What a pass reads beyond the watch-fed cache: decided here, purely, so a pass reads only what a
decision can use."""

from __future__ import annotations

from datetime import datetime

from rollguard.api.base import duration_seconds
from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import ModelDeploymentStatus
from rollguard.core import clock

# A clock may run out between this check and decide(): read a little early rather than miss it.
DEADLINE_MARGIN_SECONDS = 30.0


def wants_failure_reason(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> bool:
    """Whether to read why pods are not ready (a pod list and a ReplicaSet list).

    Only two messages say why: a rollout's past its progress deadline (rollout/steps.py
    `_not_ready_message`) and the fallback's switch when the serving version has no ready pod
    (rollout/fallback.py `_why`). Until one of them can be due, pods that are still starting cost
    no request.
    """
    rollout = status.rollout
    if rollout is not None:
        elapsed = clock.seconds_since(rollout.step_started_at, now)
        if elapsed > spec.progress_deadline_seconds - DEADLINE_MARGIN_SECONDS:
            return True
    declared, fallback = spec.fallback, status.fallback
    if declared is None or status.stable is None:
        return False
    lead = duration_seconds(declared.activate_after) - DEADLINE_MARGIN_SECONDS
    since = fallback.unready_since if fallback is not None else None
    return lead <= 0 or (since is not None and clock.seconds_since(since, now) > lead)
