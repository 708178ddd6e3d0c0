"""Small value types shared by the core's modules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class RevisionObserved:
    """One child Deployment as the cluster shows it."""

    revision: str
    replicas: int
    ready: int
    up_to_date: bool = True
    failure: str | None = None


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str
