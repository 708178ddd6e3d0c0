"""When an object next needs a pass (core/schedule.py), and the scheduler that runs passes (scheduler.py).

The rollouts here are driven the way the operator now drives them: a pass runs only when a child
changed (the simulated cluster applied something) or at the time next_due() asked for. Nothing polls.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from kubernetes.client.exceptions import ApiException

from rollguard import reconciler
from rollguard.api.status import ModelDeploymentStatus
from rollguard.core.schedule import next_due
from rollguard.scheduler import Key, Scheduler
from tests.test_rollout import T0, Cluster, FakePrometheus, reach_weight, serving, spec_for


def drive(cluster: Cluster, done: Callable[[ModelDeploymentStatus], bool], what: str) -> list[datetime]:
    """Passes only on a child change or at next_due; returns the times analysis rounds ran."""
    rounds_at: list[datetime] = []
    for _ in range(200):
        before, rounds = dict(cluster.revisions), cluster.rounds
        cluster.reconcile(after=0)
        if cluster.rounds > rounds:
            rounds_at.append(cluster.now)
        if done(cluster.status):
            return rounds_at
        if cluster.revisions != before:
            continue  # a child Deployment changed: its watch event wakes the next pass at once
        due = next_due(cluster.spec, cluster.status, cluster.now)
        assert due is not None, f"{what}: stuck in {cluster.status.phase} ({cluster.status.message}), nothing due"
        assert due > cluster.now, f"next_due must lie in the future, got {due} at {cluster.now}"
        cluster.now = due
    pytest.fail(f"{what}: not reached in 200 passes; phase {cluster.status.phase}: {cluster.status.message}")


def test_a_good_canary_is_promoted_with_rounds_exactly_one_interval_apart() -> None:
    cluster = serving("1.0.0")
    cluster.set_spec(spec_for("2.0.0"))
    rounds_at = drive(cluster, lambda s: s.serving_version == "2.0.0" and s.phase == "Ready", "promote 2.0.0")
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(rounds_at)}
    assert gaps == {30.0}, f"analysis rounds every interval (30s) and only then, got gaps {sorted(gaps)}"
    assert len(rounds_at) >= 4, f"two 1m steps at a 30s interval need at least 4 rounds, ran {len(rounds_at)}"
    # The retired stable is deleted when its scaleDownDelay (30s) ends, without any change to wake it.
    drive(cluster, lambda s: not s.retired, "retire 1.0.0")
    assert set(cluster.revisions) == {cluster.status.stable.revision}, "only 2.0.0's Deployment remains"  # type: ignore[union-attr]


def test_a_bad_canary_is_rolled_back_at_the_first_round_after_the_metric_crosses() -> None:
    cluster = serving("1.0.0")
    cluster.prometheus = FakePrometheus(value=0.5)  # error rate 50% against a 1% limit
    cluster.set_spec(spec_for("2.0.0"))
    rounds_at = drive(cluster, lambda s: s.rejected is not None, "roll back 2.0.0")
    assert cluster.status.rejected is not None and cluster.status.rejected.reason == "AnalysisFailed"
    assert len(rounds_at) == 2, f"failureLimit 1: rolled back at the second failed round, rounds at {rounds_at}"
    assert (rounds_at[1] - rounds_at[0]).total_seconds() == 30.0, f"one interval apart: {rounds_at}"


def test_an_idle_object_has_nothing_due() -> None:
    cluster = serving("1.0.0")
    drive(cluster, lambda s: not s.retired and s.rollout is None, "settle")
    assert next_due(cluster.spec, cluster.status, cluster.now) is None, "Ready with nothing in progress: no wake-up"


def test_a_pause_stops_the_rollout_clocks_and_a_timed_pause_wakes_at_its_end() -> None:
    cluster = serving("1.0.0", analysis={"metrics": []})
    cluster.set_spec(spec_for("2.0.0", analysis={"metrics": []}))
    reach_weight(cluster)  # canary pods ready: the 1m pause starts
    rollout = cluster.status.rollout
    assert rollout is not None and rollout.weight_reached_at is not None
    assert next_due(cluster.spec, cluster.status, cluster.now) == cluster.now + timedelta(minutes=1), (
        "without checks the next wake-up is the end of the step's 1m pause"
    )
    paused = next_due(cluster.spec, cluster.status, cluster.now, paused=True)
    assert paused is None, f"paused: no rollout clock runs, got {paused}"


def test_the_post_promotion_watch_runs_rounds_until_it_ends() -> None:
    post = {"interval": "30s", "failureLimit": 1, "postPromotion": {"duration": "2m"}}
    post["metrics"] = [{"name": "error-rate", "template": "error-rate", "thresholdRange": {"max": 0.01}}]
    cluster = serving("1.0.0", analysis=post)
    drive(cluster, lambda s: not s.retired, "settle")
    watch = cluster.status.watch
    assert watch is not None, "a post-promotion watch follows promotion"
    drive(cluster, lambda s: s.watch is None, "watch ends")
    assert cluster.now <= T0 + timedelta(hours=1) and next_due(cluster.spec, cluster.status, cluster.now) is None


# -- the scheduler ---------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_changed_objects_run_before_due_ones_within_the_concurrency_bound() -> None:
    async def scenario() -> None:
        started: list[Key] = []
        gates: dict[Key, asyncio.Event] = {}
        running, most = 0, 0

        async def run_pass(key: Key) -> float | None:
            nonlocal running, most
            started.append(key)
            running += 1
            most = max(most, running)
            gate = gates.setdefault(key, asyncio.Event())
            await gate.wait()
            gate.clear()
            running -= 1
            return 30.0 if key[1].startswith("due") else None

        clock = Clock()
        scheduler = Scheduler(run_pass, max_concurrent=2, resync_seconds=600, clock=clock, rng=lambda: 0.5)
        task = asyncio.create_task(scheduler.run())
        for name in ("due-a", "due-b"):
            scheduler.changed(("ns", name))
        await _settle()
        assert started == [("ns", "due-a"), ("ns", "due-b")]
        for name in ("due-a", "due-b"):
            gates[("ns", name)].set()
        await _settle()
        assert scheduler.due_in(("ns", "due-a")) == pytest.approx(30.0), "the pass's own answer: 30 s"
        clock.now = 31.0  # both are due now, and then one object changes
        scheduler.changed(("ns", "changed"))
        await _settle()
        assert started[2] == ("ns", "changed"), f"a change goes first, ran {started[2:]}"
        assert most == 2, "never more than max_concurrent passes at once"
        scheduler.changed(("ns", "changed"))  # changed again while its pass runs: no second pass yet
        await _settle()
        assert started.count(("ns", "changed")) == 1, f"one pass at a time per object: {started}"
        for _ in range(3):
            for gate in gates.values():
                gate.set()
            await _settle()
        assert started.count(("ns", "changed")) == 2, f"the change during the pass runs once more after it: {started}"
        assert scheduler.due_in(("ns", "changed")) == pytest.approx(600 - (clock.now - 31.0), abs=1), (
            "nothing due: only the safety resync"
        )
        scheduler.forget(("ns", "changed"))
        assert scheduler.due_in(("ns", "changed")) is None, "a deleted object is forgotten"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_a_pass_that_raises_is_retried_and_never_stops_the_scheduler() -> None:
    async def scenario() -> None:
        calls = 0

        async def run_pass(key: Key) -> float | None:
            nonlocal calls
            calls += 1
            raise ConnectionError("API server unreachable")

        clock = Clock()
        scheduler = Scheduler(run_pass, 4, 600, retry_seconds=5, clock=clock, rng=lambda: 0.5)
        task = asyncio.create_task(scheduler.run())
        scheduler.changed(("ns", "a"))
        await _settle()
        assert calls == 1 and scheduler.due_in(("ns", "a")) == pytest.approx(5.0), "retried in 5 s"
        clock.now = 5.0
        scheduler.changed(("ns", "b"))  # wakes the loop, which finds "a" due as well
        await _settle()
        assert calls == 3, f"the retry ran, and the other object too: {calls}"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


# -- a pass racing a deletion ------------------------------------------------------------------
def _api_error(status: int, body: dict[str, object]) -> ApiException:
    error = ApiException(status=status, reason="x")
    error.body = json.dumps(body)
    return error


def test_a_pass_racing_a_deletion_stops_quietly_but_other_refusals_do_not() -> None:
    gone = {"code": 404, "details": {"kind": "modeldeployments", "name": "fraud"}}
    assert reconciler._deleted_meanwhile(_api_error(404, gone), "fraud"), "our object deleted after the cache read"
    assert not reconciler._deleted_meanwhile(_api_error(404, gone), "other"), "someone else's 404 is not ours"
    namespace_gone = {"code": 404, "details": {"kind": "namespaces", "name": "ml"}}
    assert reconciler._deleted_meanwhile(_api_error(404, namespace_gone), "fraud"), "its namespace is gone"
    terminating = {
        "code": 403,
        "message": "unable to create new content in namespace ml because it is being terminated",
    }
    assert reconciler._namespace_terminating(_api_error(403, terminating)), "nothing is posted into it"
    assert reconciler._refusal("Service ml/fraud", _api_error(403, terminating)) is None, "not a ChildRejected"
    quota = {"code": 403, "message": "exceeded quota: compute"}
    assert not reconciler._namespace_terminating(_api_error(403, quota)), "a quota refusal is reported, not swallowed"
