"""What a pass reads beyond the watch-fed cache: decided here, purely, so a pass reads only what a
decision can use."""

from __future__ import annotations

from datetime import datetime

from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import ModelDeploymentStatus
from rollguard.core import clock

# The deadline may pass between this check and decide(): read a little early rather than miss it.
DEADLINE_MARGIN_SECONDS = 30.0


def wants_failure_reason(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> bool:
    """Whether to read why pods are not ready (a pod list and a ReplicaSet list).

    Only the message of a rollout past its progress deadline says why (rollout/steps.py
    `_not_ready_message`); before that, pods that are still starting cost no request.
    """
    rollout = status.rollout
    if rollout is None:
        return False
    elapsed = clock.seconds_since(rollout.step_started_at, now)
    return elapsed > spec.progress_deadline_seconds - DEADLINE_MARGIN_SECONDS
