"""Ownership, blockers and back-off: rollguard touches only what it owns and says why when it cannot."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
import structlog

from rollguard import backoff, logs
from rollguard.adapters.kube import NotOwnedError, describe_owner, owned_by
from rollguard.api.status import ModelDeploymentStatus
from rollguard.core.blocked import block
from rollguard.core.conditions import get_condition, set_condition

UID = "11111111-2222-3333-4444-555555555555"


def _with_owners(*refs: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"name": "payments", "ownerReferences": list(refs)}}


def test_only_a_controller_reference_with_our_uid_is_ownership() -> None:
    ours = {"kind": "ModelDeployment", "name": "payments", "uid": UID, "controller": True}
    assert owned_by(_with_owners(ours), UID)
    assert not owned_by(_with_owners({**ours, "controller": False}), UID), "a plain owner reference is not control"
    assert not owned_by(_with_owners({**ours, "uid": "other"}), UID), "a same-named ModelDeployment recreated"
    assert not owned_by({"metadata": {"name": "payments"}}, UID)


def test_conflict_message_names_the_object_and_its_owner() -> None:
    foreign = {
        "metadata": {
            "name": "payments",
            "managedFields": [{"manager": "kubectl-client-side-apply"}, {"manager": "helm"}],
        }
    }
    error = NotOwnedError("Service", "team-a", "payments", describe_owner(foreign))
    assert str(error).startswith(
        "Service team-a/payments already exists and is not owned by this ModelDeployment "
        "(owner: no owner; written by helm, kubectl-client-side-apply)"
    ), str(error)
    owned = _with_owners({"kind": "Deployment", "name": "payments-api", "uid": "u1", "controller": True})
    assert describe_owner(owned) == "Deployment/payments-api (uid u1)"


def test_block_sets_stalled_and_not_ready_and_warns_once() -> None:
    now = "2026-11-29T10:00:00Z"
    first = ModelDeploymentStatus()
    first.conditions = set_condition([], "Ready", "True", "Serving", "serving 1.0.0", 1, "2026-11-29T09:00:00Z")
    before = list(first.conditions)
    events = block(first, before, "NameConflict", "Service team-a/payments ...", 2, now)
    stalled, ready = get_condition(first.conditions, "Stalled"), get_condition(first.conditions, "Ready")
    assert stalled is not None and (stalled.status, stalled.reason) == ("True", "NameConflict")
    assert ready is not None and (ready.status, ready.reason, ready.last_transition_time) == (
        "False",
        "NameConflict",
        now,
    )
    assert [(e.type, e.reason) for e in events] == [("Warning", "NameConflict")]
    assert first.message == "Service team-a/payments ..."

    # The next pass decides "not stalled" again; folding the same blocker keeps times and posts no event.
    second = ModelDeploymentStatus()
    second.conditions = set_condition([], "Stalled", "False", "Progressing", "no blocker", 2, "2026-11-29T10:00:05Z")
    again = block(second, first.conditions, "NameConflict", "Service team-a/payments ...", 2, "2026-11-29T10:00:05Z")
    assert again == [], "a persisting blocker is not announced again"
    assert [c.model_dump() for c in second.conditions] == [c.model_dump() for c in first.conditions], (
        "a persisting blocker costs no status write: conditions identical to the last pass"
    )


def test_holds_back_off_exponentially_and_forget_when_the_object_changes() -> None:
    holds = backoff.Holds(base_seconds=5, cap_seconds=20)
    key = ("ns", "md")
    delays = [holds.fail(key, "gen-1", 100.0).delay_seconds for _ in range(4)]
    assert delays == [5, 10, 20, 20]
    assert holds.holding(key, "gen-1", 110.0)
    assert not holds.holding(key, "gen-1", 120.0), "the hold ends after its delay"
    assert not holds.holding(key, "gen-2", 110.0), "a changed object is tried at once"
    assert holds.fail(key, "gen-2", 110.0).failures == 1
    assert holds.clear(key) and not holds.clear(key)


def test_fingerprint_moves_with_generation_and_annotations_only() -> None:
    body = {"metadata": {"uid": "u", "generation": 3, "annotations": {"a": "1"}, "resourceVersion": "10"}}
    same = {"metadata": {**body["metadata"], "resourceVersion": "11"}}  # a status write
    assert backoff.fingerprint(body) == backoff.fingerprint(same)
    assert backoff.fingerprint(body) != backoff.fingerprint({"metadata": {**body["metadata"], "generation": 4}})
    retry = {"metadata": {**body["metadata"], "annotations": {"a": "1", "rollguard.io/retry": "x"}}}
    assert backoff.fingerprint(body) != backoff.fingerprint(retry)


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    structlog.reset_defaults()
    logs.configure("INFO", "json")
    yield out
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def test_exception_records_carry_the_stack_trace_as_text(json_logs: io.StringIO) -> None:
    def fails() -> None:
        raise OverflowError("duration too large")

    try:
        fails()
    except OverflowError as error:
        structlog.get_logger("rollguard").error("reconcile failed", exc_info=error)
        logging.getLogger("kopf.objects").exception("Handler 'resync' failed with an exception.")
    records = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["reconcile failed", "Handler 'resync' failed with an exception."]
    for record in records:
        trace = record.get("exception", "")
        assert isinstance(trace, str) and trace.startswith("Traceback (most recent call last)"), record
        assert "in fails" in trace and "OverflowError: duration too large" in trace, trace
        assert "exc_info" not in record, f"no raw exc_info left in the record: {record}"
