"""Manual control without touching the spec: annotations the plugin (or a human) sets.

  rollguard.io/promote: <token>           advance the canary one step now
  rollguard.io/promote-full: <token>      skip the remaining steps and promote
  rollguard.io/abort: <token>             roll the rollout back now
  rollguard.io/retry: <token>             rollout the rejected version again
  rollguard.io/resume: <token>            release a hold (metrics unavailable, inconclusive)
  rollguard.io/undo: <version>@<token>    go back to a known-good version from status.history
  rollguard.io/paused: "true"             hold the rollout where it is (pause/resume)

Each token is handled once: its value is recorded in status.handledActions, so a restart or a
re-applied manifest never repeats an action, and the operator never edits metadata or spec.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollguard.core.naming import ANNOTATION_PREFIX

ACTIONS = ("abort", "undo", "retry", "promote-full", "promote", "resume")
PAUSED_ANNOTATION = f"{ANNOTATION_PREFIX}paused"


@dataclass(frozen=True)
class Action:
    name: str
    value: str

    @property
    def argument(self) -> str:
        """For undo: the version before the last '@'."""
        return self.value.rsplit("@", 1)[0]


def pending(annotations: dict[str, str], handled: dict[str, str]) -> list[Action]:
    """Actions whose annotation value has not been handled yet, in a fixed, safe order."""
    found = []
    for name in ACTIONS:
        value = annotations.get(ANNOTATION_PREFIX + name)
        if value and handled.get(name) != value:
            found.append(Action(name, value))
    return found


def paused_by_annotation(annotations: dict[str, str]) -> bool:
    return annotations.get(PAUSED_ANNOTATION, "").lower() == "true"
