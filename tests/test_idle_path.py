"""The idle and event path (issue 10): the operator's own status patch coming back through the watch
schedules no pass, a burst of watch events wakes the scheduler once, and Events are posted in the
background and dropped quietly in a namespace being deleted."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest
import structlog
from kubernetes.client.exceptions import ApiException

from rollguard import cache, handlers, reconciler
from rollguard.adapters.events import EventPoster, event_body, namespace_going
from rollguard.core.facts import Event
from rollguard.scheduler import Key, Scheduler

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def md(rv: int, generation: int = 1, name: str = "fraud", phase: str = "Ready") -> dict[str, Any]:
    meta = {"namespace": "ml", "name": name, "uid": f"uid-{name}", "resourceVersion": str(rv), "generation": generation}
    return {
        "apiVersion": "rollguard.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": meta,
        "status": {"phase": phase},
    }


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


# -- the operator's own status patch --------------------------------------------------------------
def test_only_the_exact_object_our_status_patch_produced_counts_as_its_echo() -> None:
    reader = cache.Cache()
    assert not reader.echo(md(12)), "nothing written yet: every event is news"
    reader.wrote(md(12))
    assert reader.echo(md(12)), "the watch delivering the object our patch returned"
    assert not reader.echo(md(13, generation=2)), "a later change by someone else (a spec edit)"
    assert not reader.echo(md(11)), "an earlier change by someone else, delivered before our echo"
    assert not reader.echo(md(12, name="other")), "another object at that resourceVersion"
    reader.model_deployment("ml", "fraud")  # a pass reading the cache drops its copy of our write...
    assert reader.echo(md(12)), "...but not the record of which version was ours (the echo may come later)"
    reader.forget("ml", "fraud")
    assert not reader.echo(md(12)), "a deleted object's record is dropped (a new one of that name is news)"


def _memo(reader: cache.Cache) -> tuple[Any, list[Key]]:
    asked: list[Key] = []
    scheduler = SimpleNamespace(changed=asked.append, forget=lambda key: None)
    return SimpleNamespace(ctx=SimpleNamespace(cache=reader), scheduler=scheduler), asked


def test_the_watch_echo_of_our_own_status_patch_schedules_no_pass_but_a_user_change_does() -> None:
    reader = cache.Cache()
    memo, asked = _memo(reader)
    reader.wrote(md(12))

    async def deliver(obj: dict[str, Any]) -> None:
        await cast(Any, handlers.on_model_deployment)(event={"type": "MODIFIED", "object": obj}, memo=memo)

    asyncio.run(deliver(md(12)))
    assert asked == [], f"our own status patch coming back wakes no pass: {asked}"
    asyncio.run(deliver(md(13, generation=2)))
    assert asked == [("ml", "fraud")], f"a spec change after it does: {asked}"


# -- coalesced wake-ups ---------------------------------------------------------------------------
def test_a_burst_of_watch_events_costs_one_wake_up_and_one_pass_per_object() -> None:
    async def scenario() -> None:
        passes: list[Key] = []

        async def run_pass(key: Key) -> float | None:
            passes.append(key)
            return None

        scheduler = Scheduler(run_pass, max_concurrent=16, resync_seconds=600, rng=lambda: 0.5)
        task = asyncio.create_task(scheduler.run())
        await _settle()
        before = scheduler.turns
        for _ in range(50):  # one object's events (its status, its Deployment's status...) in one turn
            scheduler.changed(("ml", "fraud"))
        scheduler.changed(("ml", "other"))
        await _settle()
        assert sorted(passes) == [("ml", "fraud"), ("ml", "other")], f"one pass per changed object: {passes}"
        # One turn starts the passes; each pass ending (and asking for its safety resync) wakes it once more.
        assert scheduler.turns - before <= 1 + len(passes), f"{scheduler.turns - before} wake-ups for 51 events"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_an_idle_scheduler_sleeps_until_the_next_due_time() -> None:
    async def scenario() -> None:
        async def run_pass(key: Key) -> float | None:
            return 0.05  # e.g. an analysis round due in 50 ms

        scheduler = Scheduler(run_pass, max_concurrent=4, resync_seconds=600, rng=lambda: 0.5)
        task = asyncio.create_task(scheduler.run())
        scheduler.changed(("ml", "fraud"))
        await asyncio.sleep(0.5)
        turns = scheduler.turns
        assert 5 <= turns <= 40, f"woken about once per due pass (every 50 ms for 0.5 s), not busy-looping: {turns}"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


# -- Events ---------------------------------------------------------------------------------------
def _refusal(status: int, body: dict[str, Any]) -> ApiException:
    error = ApiException(status=status, reason="Forbidden" if status == 403 else "Not Found")
    error.body = json.dumps(body)
    return error


TERMINATING = _refusal(
    403,
    {
        "message": 'events "fraud.1" is forbidden: unable to create new content in namespace ml because it is being '
        "terminated",
        "reason": "Forbidden",
        "details": {"name": "fraud.1", "kind": "events"},
    },
)
NAMESPACE_GONE = _refusal(
    404, {"message": 'namespaces "ml" not found', "details": {"name": "ml", "kind": "namespaces"}}
)
RBAC_REFUSAL = _refusal(403, {"message": 'events is forbidden: User "x" cannot create resource "events"'})


def test_a_namespace_being_deleted_is_told_apart_from_other_refusals() -> None:
    assert namespace_going(TERMINATING)
    assert namespace_going(NAMESPACE_GONE)
    assert not namespace_going(RBAC_REFUSAL), "a missing RBAC rule is a real error the user must see"
    assert not namespace_going(ApiException(status=500, reason="Internal Server Error"))


def test_the_event_names_the_object_as_kubectl_describe_finds_it() -> None:
    body = event_body(md(12), Event("Warning", "RolledBack", "x" * 5000), NOW, "pod-1")
    assert body["involvedObject"] == {
        "apiVersion": "rollguard.io/v1alpha1",
        "kind": "ModelDeployment",
        "name": "fraud",
        "uid": "uid-fraud",
        "namespace": "ml",
    }
    assert (body["type"], body["reason"]) == ("Warning", "RolledBack")
    assert len(body["message"]) == 1024 and "..." in body["message"], "cut to what the API server accepts"
    assert body["metadata"] == {"namespace": "ml", "generateName": "fraud."}
    assert body["source"] == {"component": "rollguard"} and body["reportingComponent"] == "rollguard"


def test_events_are_posted_in_order_without_blocking_the_pass() -> None:
    posted: list[str] = []
    release = threading.Event()

    def create(namespace: str, body: dict[str, Any]) -> None:
        release.wait(5)  # a slow API server
        posted.append(body["reason"])

    async def scenario() -> None:
        poster = EventPoster(create, instance="test", clock=lambda: NOW)
        for reason in ("Progressing", "Promoted"):
            poster.post(md(12), Event("Normal", reason, "m"))
        assert posted == [], "post() only queues: the pass goes on while the API server is slow"
        release.set()
        await asyncio.wait_for(poster.drain(), 5)
        assert posted == ["Progressing", "Promoted"], "in the order the passes decided them"
        await poster.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("refusal", "warned"),
    [(TERMINATING, False), (NAMESPACE_GONE, False), (RBAC_REFUSAL, True)],
    ids=["terminating", "namespace-gone", "rbac"],
)
def test_an_event_into_a_namespace_being_deleted_is_dropped_quietly(refusal: ApiException, warned: bool) -> None:
    def create(namespace: str, body: dict[str, Any]) -> None:
        raise refusal

    async def scenario() -> list[Any]:
        poster = EventPoster(create, instance="test", clock=lambda: NOW)
        with structlog.testing.capture_logs() as logs:
            poster.post(md(12), Event("Normal", "Promoted", "m"))
            await asyncio.wait_for(poster.drain(), 5)
        await poster.close()
        return logs

    logs = asyncio.run(scenario())
    loud = [entry for entry in logs if entry["log_level"] in ("warning", "error", "critical")]
    if warned:
        assert len(loud) == 1 and loud[0]["status"] == 403, f"a real refusal is a warning naming it: {logs}"
    else:
        assert loud == [], f"nothing above debug for a namespace being deleted: {loud}"


def test_a_child_write_into_a_deleted_namespace_is_no_child_rejected_warning() -> None:
    assert reconciler._refusal("Deployment ml/fraud-1", NAMESPACE_GONE) is None, "the pass stops quietly instead"
    assert reconciler._refusal("Deployment ml/fraud-1", TERMINATING) is None
    assert reconciler._refusal("Deployment ml/fraud-1", RBAC_REFUSAL) is not None, "a real refusal is still reported"


def test_one_objects_slow_event_does_not_hold_back_another_objects() -> None:
    shard = EventPoster(None).shard
    slow = "fraud"
    fast = next(f"churn-{i}" for i in range(100) if shard("ml", f"churn-{i}") != shard("ml", slow))
    posted: list[str] = []
    release = threading.Event()

    def create(namespace: str, body: dict[str, Any]) -> None:
        if body["involvedObject"]["name"] == slow:
            release.wait(5)  # e.g. a slow admission webhook on this one
        posted.append(f"{body['involvedObject']['name']}:{body['reason']}")

    async def scenario() -> None:
        poster = EventPoster(create, instance="test", clock=lambda: NOW)
        poster.post(md(12, name=slow), Event("Normal", "RolloutStarted", "m"))
        poster.post(md(12, name=slow), Event("Normal", "Promoted", "m"))
        poster.post(md(12, name=fast), Event("Normal", "Promoted", "m"))
        for _ in range(200):
            if posted:
                break
            await asyncio.sleep(0.01)
        assert posted == [f"{fast}:Promoted"], f"the other object's Event went ahead: {posted}"
        release.set()
        await asyncio.wait_for(poster.drain(), 5)
        assert posted[1:] == [f"{slow}:RolloutStarted", f"{slow}:Promoted"], f"one object's in order: {posted}"
        await poster.close()

    asyncio.run(scenario())
