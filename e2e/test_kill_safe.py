"""Decisions survive a kill: an operator that dies between a rollback's status write and its Event
loses nothing; the next one announces it (Event, log line with evidence, counter), exactly once."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from e2e import md
from e2e.test_canary import canary, start_stable
from e2e.waiting import wait_for


def rolled_back_events(api: client.ApiClient, namespace: str, name: str) -> int:
    """How many RolledBack Events the object has (an Event repeated in place counts each time)."""
    return sum(e.count or 1 for e in md.events(api, namespace, name) if e.reason == "RolledBack")


def test_rollback_announced_once_after_a_kill_between_status_write_and_event(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, start_rollguard: Any
) -> None:
    name = "killsafe"
    first = start_rollguard(ROLLGUARD_TEST_CRASH_AFTER_STATUS_PATCH="RolledBack")
    start_stable(control_plane, kube_api, namespace, canary(name, "1.0.0"))
    md.apply(control_plane, namespace, canary(name, "1.1.0", env={"SIMULATED_ERROR_RATE": "0.3"}))
    status = md.wait_phase(kube_api, namespace, name, "RolledBack", timeout=90)
    assert first.proc is not None
    wait_for(lambda: first.proc.poll() is not None, 10, message="the operator exits right after the status write")
    assert status["rejected"]["check"] == "error-rate", status["rejected"]
    assert rolled_back_events(kube_api, namespace, name) == 0, "killed before the Event: the decision is unannounced"
    assert not [r for r in first.logs() if r.get("reason") == "RolledBack"], "and before the log line"

    second = start_rollguard()
    wait_for(lambda: rolled_back_events(kube_api, namespace, name) >= 1, 30, message="the restarted operator's Event")
    passes = second.metric("rollguard_reconcile_duration_seconds_count")
    wait_for(
        lambda: second.metric("rollguard_reconcile_duration_seconds_count") >= passes + 3,
        30,
        message="three more passes of the restarted operator (none may announce it again)",
    )
    event = next(e for e in md.events(kube_api, namespace, name) if e.reason == "RolledBack")
    assert rolled_back_events(kube_api, namespace, name) == 1, "the rollback is announced exactly once"
    assert event.type == "Warning" and "1.1.0" in event.message and "error-rate" in event.message, event.message
    logged = [r for r in second.logs() if r.get("reason") == "RolledBack" and r.get("name") == name]
    assert len(logged) == 1 and logged[0]["evidence"]["check"] == "error-rate", logged
    assert logged[0]["evidence"]["cause"] == "Model" and logged[0].get("reannounced"), logged[0]
    rollbacks = second.metric("rollguard_rollbacks_total", name=name, reason="AnalysisFailed", check="error-rate")
    assert rollbacks == 1, f"rollguard_rollbacks_total counts the rollback once, got {rollbacks}"
