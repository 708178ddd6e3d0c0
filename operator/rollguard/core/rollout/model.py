"""What decide() reads and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import CheckResult, ModelDeploymentStatus, RevisionRef
from rollguard.core import notify, policy
from rollguard.core.facts import Event, RevisionObserved


@dataclass(frozen=True)
class Inputs:
    name: str
    namespace: str
    generation: int
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus
    annotations: dict[str, str]
    revisions: dict[str, RevisionObserved]
    now: datetime
    analysis: list[CheckResult] | None = None
    route_missing: bool = False
    metrics_configured: bool = True
    pod_policy: policy.PodPolicy = policy.LOCKED_DOWN
    fallback_ready: int = 0  # ready pods of the Deployment <name>-fallback (spec.fallback)
    notification_catalog: notify.Catalog = notify.NO_ENDPOINTS  # endpoints the platform defines (settings)
    confirmation: notify.GateAnswer | None = None  # the confirm-promotion gate's answer this round


@dataclass(frozen=True)
class Workload:
    """A revision the cluster should run, and with how many replicas (with an HPA: its current count)."""

    ref: RevisionRef
    replicas: int
    role: Literal["stable", "canary"]


@dataclass(frozen=True)
class FallbackWorkload:
    """The warm fallback (spec.fallback) to run, and whether the model's Services select its pods now."""

    ref: RevisionRef
    replicas: int
    active: bool


@dataclass
class Decision:
    status: ModelDeploymentStatus
    workloads: list[Workload] = field(default_factory=list)
    keep_revisions: set[str] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    route_weights: tuple[int, int] | None = None
    invalid: list[str] = field(default_factory=list)
    invalid_reason: str = "InvalidSpec"
    min_available: int = 0  # the PodDisruptionBudget's minAvailable over every serving pod
    fallback: FallbackWorkload | None = None
