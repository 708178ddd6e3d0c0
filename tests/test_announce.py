"""Decisions survive a kill: the Event a pass announced is derived again from the status it wrote."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import structlog

from rollguard import announcer, metrics
from rollguard.core import clock
from rollguard.core.facts import Event
from rollguard.core.rollout import Decision
from rollguard.core.rollout.announce import decided, fallback_switch
from tests.test_fallback import serving_with_fallback
from tests.test_rollout import NAME, NAMESPACE, WATCHED, FakePrometheus, failing_canary, serving, spec_for

WITHIN = announcer.REANNOUNCE_WITHIN_SECONDS
DECISIONS = {"Promoted", "RolledBack", "RollbackComplete", "DegradedNoKnownGood"}


def announced(decision: Decision) -> Event:
    """The one promotion or rollback Event a pass emitted."""
    found = [e for e in decision.events if e.reason in DECISIONS]
    assert len(found) == 1, f"one decision Event expected in this pass, got {decision.events}"
    return found[0]


def test_a_canary_rollback_is_derived_from_status_as_it_was_announced() -> None:
    cluster = failing_canary()
    decision = cluster.run_until(lambda s: s.rollout is None, "rollback")
    assert decided(decision.status, cluster.now, WITHIN) == (decision.status.history[-1].at, announced(decision))


def test_a_promotion_is_derived_from_status_as_it_was_announced() -> None:
    cluster = serving("1.0.0")
    cluster.set_spec(spec_for("2.0.0"))
    decision = cluster.run_until(lambda s: s.stable is not None and s.stable.version == "2.0.0", "promoted")
    event = announced(decision)
    assert (event.reason, "was 1.0.0" in event.message) == ("Promoted", True), event
    assert decided(decision.status, cluster.now, WITHIN) == (decision.status.history[-1].at, event)


def test_a_post_promotion_rollback_and_its_completion_are_derived_as_announced() -> None:
    cluster = serving("1.0.0", analysis=WATCHED)
    cluster.set_spec(spec_for("2.0.0", analysis=WATCHED))
    cluster.run_until(lambda s: s.stable is not None and s.stable.version == "2.0.0" and not s.retired, "2.0.0")
    cluster.prometheus = FakePrometheus(value=0.2)
    degraded = cluster.run_until(lambda s: s.rollout is not None, "post-promotion failure")
    assert decided(degraded.status, cluster.now, WITHIN) == (degraded.status.history[-1].at, announced(degraded))
    done = cluster.run_until(lambda s: s.rollout is None, "back on 1.0.0")
    event = announced(done)
    assert event.reason == "RollbackComplete", event
    assert decided(done.status, cluster.now, WITHIN) == (done.status.history[-1].at, event)


def test_an_old_decision_or_no_decision_is_not_announced_again() -> None:
    cluster = failing_canary()
    decision = cluster.run_until(lambda s: s.rollout is None, "rollback")
    later = cluster.now + timedelta(seconds=WITHIN + 1)
    assert decided(decision.status, later, WITHIN) is None, "a decision older than the window is not news"
    cluster.set_spec(spec_for("3.0.0"))
    cluster.reconcile()
    cluster.set_spec(spec_for("4.0.0"))
    superseded = cluster.reconcile()
    assert superseded.status.history[-1].outcome == "Superseded", superseded.status.history[-1]
    assert decided(superseded.status, cluster.now, WITHIN) is None, "a superseded canary announced no decision"


class FakeKube:
    """Answers the one Events list reannounce() makes: whether the Event exists already."""

    def __init__(self, event_exists: bool) -> None:
        self.event_exists = event_exists
        self.asked: list[tuple[str, str, str, datetime]] = []

    def event_since(self, namespace: str, uid: str, reason: str, since: datetime) -> bool:
        self.asked.append((namespace, uid, reason, since))
        return self.event_exists

    async def run(self, func: Any, *args: Any) -> Any:
        return func(*args)


class FakeContext:
    def __init__(self, event_exists: bool) -> None:
        self.kube = FakeKube(event_exists)
        self.announced: set[tuple[str, str]] = set()
        self.posted: list[Event] = []

    def post_event(self, body: dict[str, Any], event: Event) -> None:
        self.posted.append(event)


def rollbacks_counted() -> float:
    labels = {"namespace": NAMESPACE, "name": NAME, "reason": "AnalysisFailed", "check": "error-rate"}
    return sum(
        sample.value
        for family in metrics.ROLLBACKS.collect()
        for sample in family.samples
        if sample.name.endswith("_total") and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_a_lost_rollback_is_announced_once_per_start_and_a_posted_one_never() -> None:
    cluster = failing_canary()
    decision = cluster.run_until(lambda s: s.rollout is None, "rollback")
    body = {"metadata": {"namespace": NAMESPACE, "name": NAME, "uid": "uid-1"}}
    log = structlog.get_logger("test")

    lost, before = FakeContext(event_exists=False), rollbacks_counted()
    for _ in range(3):
        asyncio.run(announcer.reannounce(lost, body, decision.status, cluster.now, log))
    assert lost.posted == [announced(decision)], "the lost Event is posted again, once"
    assert len(lost.kube.asked) == 1, f"one Events list per object per start, got {lost.kube.asked}"
    assert rollbacks_counted() == before + 1, "rollguard_rollbacks_total counts the lost rollback once"

    posted = FakeContext(event_exists=True)
    asyncio.run(announcer.reannounce(posted, body, decision.status, cluster.now, log))
    assert posted.posted == [] and rollbacks_counted() == before + 1, "an Event already posted is not repeated"


def test_a_version_promoted_again_through_a_new_rollout_is_derived_as_a_promotion() -> None:
    cluster = serving("1.0.0")
    cluster.set_spec(spec_for("2.0.0"))
    cluster.run_until(lambda s: s.stable is not None and s.stable.version == "2.0.0" and not s.retired, "2.0.0")
    # The user pushes 1.0.0 again: a canary of a version promoted earlier, not a rollback.
    cluster.set_spec(spec_for("1.0.0"))
    decision = cluster.run_until(lambda s: s.stable is not None and s.stable.version == "1.0.0", "1.0.0 again")
    event = announced(decision)
    assert (event.reason, "was 2.0.0" in event.message) == ("Promoted", True), event
    assert decided(decision.status, cluster.now, WITHIN) == (decision.status.history[-1].at, event)


# -- the fallback's switches: the moment an on-call engineer must hear of -----------------------------
def _switch(decision: Decision, reason: str) -> Event:
    found = [e for e in decision.events if e.reason == reason]
    assert len(found) == 1, f"one {reason} Event expected in this pass, got {decision.events}"
    return found[0]


def test_the_fallback_taking_and_giving_back_the_traffic_is_derived_from_status_as_announced() -> None:
    cluster = serving_with_fallback()
    assert fallback_switch(cluster.status, cluster.now, WITHIN) is None, "warm, never switched: nothing to announce"
    cluster.lose_readiness("1.0.0")
    cluster.reconcile(after=1)
    active = cluster.reconcile(after=10)
    assert fallback_switch(active.status, cluster.now, WITHIN) == (
        clock.iso(cluster.now),
        _switch(active, "FallbackActivated"),
    )
    later = cluster.reconcile(after=30)
    assert fallback_switch(later.status, cluster.now, WITHIN) == (
        clock.iso(cluster.now - timedelta(seconds=30)),
        _switch(active, "FallbackActivated"),
    ), "still the activation, with its own time, while the fallback serves"
    cluster.recover("1.0.0")
    back = cluster.reconcile(after=5)
    assert fallback_switch(back.status, cluster.now, WITHIN) == (
        clock.iso(cluster.now),
        _switch(back, "FallbackReleased"),
    )
    assert fallback_switch(back.status, cluster.now + timedelta(seconds=WITHIN + 1), WITHIN) is None, "old news"


def test_a_lost_fallback_activation_is_announced_after_a_restart_and_a_posted_one_never() -> None:
    cluster = serving_with_fallback()
    cluster.lose_readiness("1.0.0")
    cluster.reconcile(after=1)
    active = cluster.reconcile(after=10)
    body = {"metadata": {"namespace": NAMESPACE, "name": NAME, "uid": "uid-1"}}
    log = structlog.get_logger("test")

    lost = FakeContext(event_exists=False)
    for _ in range(2):
        asyncio.run(announcer.reannounce(lost, body, active.status, cluster.now, log))
    fallback_events = [e for e in lost.posted if e.reason.startswith("Fallback")]
    assert fallback_events == [_switch(active, "FallbackActivated")], "the lost Warning is posted again, once"
    asked = [(reason, since) for _, _, reason, since in lost.kube.asked]
    assert ("FallbackActivated", clock.parse(active.status.fallback.since)) in asked, asked  # type: ignore[union-attr]

    posted = FakeContext(event_exists=True)
    asyncio.run(announcer.reannounce(posted, body, active.status, cluster.now, log))
    assert posted.posted == [], "an Event already posted is not repeated"
