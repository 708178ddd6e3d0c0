"""What a decision tells the user, built from status alone, so a restarted operator can say it again.

The Event, log line and counter of a pass are emitted after its status patch; a kill in between
would lose them. `decided()` derives them back from the newest history entry, `fallback_switch()` from
status.fallback (the moment an on-call engineer must hear of).
"""

from __future__ import annotations

from datetime import datetime

from rollguard.api.status import Cause, HistoryEntry, ModelDeploymentStatus
from rollguard.core import clock
from rollguard.core.facts import Event


def rolled_back(version: str, reason: str, cause: Cause | None, message: str, serving: str) -> Event:
    return Event(
        "Warning",
        "RolledBack",
        f"version {version} rolled back ({reason}, cause {cause}): {message}; serving {serving}",
    )


def degraded(version: str, cause: Cause | None, detail: str, previous: str | None) -> Event:
    """A stable version failed its post-promotion checks: rolled back to `previous`, or nowhere to go."""
    if previous is None:
        return Event(
            "Warning",
            "DegradedNoKnownGood",
            f"stable version {version} degraded (cause {cause}: {detail}) and there is no earlier known-good version",
        )
    return Event(
        "Warning",
        "RolledBack",
        f"stable version {version} degraded after promotion (cause {cause}: {detail}); "
        f"rolling back to known-good {previous}",
    )


def promoted(version: str, reason: str, previous: str | None, rollback: bool) -> Event:
    if rollback:
        return Event("Normal", "RollbackComplete", f"serving known-good version {version} again ({reason})")
    was = f" (was {previous})" if previous else ""
    return Event("Normal", "Promoted", f"version {version} promoted to stable{was}: {reason}")


def decided(status: ModelDeploymentStatus, now: datetime, within_seconds: float) -> tuple[str, Event] | None:
    """The Event the newest promotion or rollback in status announced, with its time, if that was at
    most `within_seconds` before `now`; None when there is nothing recent to announce."""
    if not status.history:
        return None
    newest, earlier = status.history[-1], status.history[:-1]
    if clock.seconds_since(newest.at, now) > within_seconds:
        return None
    if newest.outcome == "Promoted":
        return newest.at, _promotion(newest, earlier)
    rejected = status.rejected
    if newest.outcome != "RolledBack" or rejected is None or rejected.revision != newest.revision:
        return None
    if rejected.reason == "PostPromotionAnalysisFailed":
        rollout = status.rollout
        previous = rollout.target.version if rollout is not None and rollout.kind == "Rollback" else None
        return newest.at, degraded(newest.version, rejected.cause, rejected.message, previous)
    serving = status.stable.version if status.stable else "nothing"
    return newest.at, rolled_back(newest.version, rejected.reason, rejected.cause, rejected.message, serving)


def fallback_switch(status: ModelDeploymentStatus, now: datetime, within_seconds: float) -> tuple[str, Event] | None:
    """The Event of the fallback's last switch (took or gave back the traffic), with its time, if that was at
    most `within_seconds` before `now`: status.fallback keeps the switch's time and announcement for this."""
    state = status.fallback
    if state is None or state.since is None or not state.message:
        return None
    if clock.seconds_since(state.since, now) > within_seconds:
        return None
    if state.active:
        return state.since, Event("Warning", "FallbackActivated", state.message)
    return state.since, Event("Normal", "FallbackReleased", state.message)


def _promotion(newest: HistoryEntry, earlier: list[HistoryEntry]) -> Event:
    promotions = [entry for entry in earlier if entry.outcome == "Promoted"]
    # A version pushed again is promoted by a new rollout, not a rollback: the entry says which rollout it was.
    rollback = newest.kind == "Rollback"
    if newest.kind is None:  # written before entries carried their kind: a revision promoted again came back
        rollback = any(entry.revision == newest.revision for entry in promotions)
    previous = promotions[-1].version if promotions else None
    return promoted(newest.version, newest.reason, previous, rollback)
