"""Notifications: endpoint policy, Event -> notification mapping, payloads, signing, settings, the
confirm-promotion gate in decide(), and the webhook adapter against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import ValidationError

from rollguard import announcer, metrics
from rollguard.adapters.notify import Notifier
from rollguard.api.status import HistoryEntry, ModelDeploymentStatus, Rejection, RevisionRef
from rollguard.core import notify, schedule
from rollguard.core.facts import Event
from rollguard.core.rollout import Inputs
from rollguard.settings import NotificationEndpoint, Settings
from tests.test_fallback import serving_with_fallback, with_fallback
from tests.test_rollout import CANARY, NAME, NAMESPACE, WATCHED, Cluster, FakePrometheus, kstatus, reasons, spec_for

CATALOG = notify.Catalog(
    (notify.EndpointRule("team", (NAMESPACE,)), notify.EndpointRule("gate", ("ml-*",)), notify.EndpointRule("all"))
)
SECRET = b"k3y"
REPO = Path(__file__).resolve().parents[1]


# -- which endpoints a ModelDeployment may name ------------------------------------------------
def test_unknown_and_not_allowed_endpoints_name_field_value_and_chart_value() -> None:
    gated = {**CANARY, "canary": {**CANARY["canary"], "confirmPromotion": {"endpoint": "nope"}}}
    spec = spec_for("1.0.0", notifications=[{"endpoint": "team"}, {"endpoint": "ghost"}], strategy=gated)
    assert notify.violations(spec, NAMESPACE, CATALOG) == [
        "spec.notifications[1].endpoint: 'ghost' is not a notification endpoint (the platform defines: team, gate, "
        "all; a platform admin adds endpoints under chart value notifications.endpoints / "
        "ROLLGUARD_NOTIFICATIONS_ENDPOINTS)",
        "spec.strategy.canary.confirmPromotion.endpoint: 'nope' is not a notification endpoint (the platform "
        "defines: team, gate, all; a platform admin adds endpoints under chart value notifications.endpoints / "
        "ROLLGUARD_NOTIFICATIONS_ENDPOINTS)",
    ]
    elsewhere = notify.violations(spec_for("1.0.0", notifications=[{"endpoint": "team"}]), "team-b", CATALOG)
    assert elsewhere == [
        "spec.notifications[0].endpoint: 'team' is not allowed in namespace 'team-b' (endpoint team allows ml-prod; "
        "a platform admin can add 'team-b' to chart value notifications.endpoints[name=team].namespaces)"
    ]
    ok = spec_for("1.0.0", notifications=[{"endpoint": "gate"}, {"endpoint": "all"}])
    assert notify.violations(ok, "ml-staging", CATALOG) == [], "patterns and an empty list (all) allow"


def test_a_not_allowed_endpoint_is_a_policy_violation_and_the_running_version_keeps_serving() -> None:
    cluster = Cluster(spec_for("1.0.0"))
    cluster.run_until(lambda s: s.phase == "Ready", "1.0.0 serving")
    cluster.set_spec(spec_for("2.0.0", notifications=[{"endpoint": "ghost"}]))
    decision = cluster.reconcile()
    assert decision.invalid_reason == "PolicyViolation" and decision.status.phase == "Failed"
    assert decision.status.stable is not None and decision.status.stable.version == "1.0.0"
    assert [w.ref.version for w in decision.workloads] == ["1.0.0"], "no rollout of the refused spec"
    warning = next(e for e in decision.events if e.reason == "PolicyViolation")
    assert "spec.notifications[0].endpoint: 'ghost'" in warning.message and "keeps serving" in warning.message


# -- which Events become notifications ---------------------------------------------------------
@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("RolloutStarted", "RolloutStarted"),
        ("StepAdvanced", "StepAdvanced"),
        ("Promoting", "StepAdvanced"),
        ("Promoted", "Promoted"),
        ("RollbackComplete", "Promoted"),
        ("RolledBack", "RolledBack"),
        ("DegradedNoKnownGood", "Degraded"),
        ("SharedOutageAfterPromotion", "Degraded"),
        ("DependencyHold", "Holding"),
        ("MetricsUnavailable", "Holding"),
        ("AwaitingConfirmation", "Holding"),
        ("FallbackActivated", "Fallback"),
        ("FallbackReleased", "Fallback"),
        ("Retry", None),
        ("ActionIgnored", None),
    ],
)
def test_event_reasons_map_to_notification_types(reason: str, kind: str | None) -> None:
    assert notify.kind_of(Event("Normal", reason, ""), ModelDeploymentStatus()) == kind


def test_every_warning_the_operator_decides_is_notified() -> None:
    """A new Warning reason added to core/ must reach on-call too, not only `kubectl get events`."""
    source = "\n".join(f.read_text() for f in (REPO / "operator" / "rollguard" / "core").rglob("*.py"))
    warnings = set(re.findall(r'event\(\s*"Warning",\s*"([A-Za-z]+)"', source))
    warnings |= set(re.findall(r'Event\("Warning",\s*"([A-Za-z]+)"', source))
    assert {"FallbackActivated", "SharedOutageAfterPromotion", "DependencyHold"} <= warnings, warnings  # found
    answered_by_the_user_who_asked = {"UndoRejected"}  # a refused `kubectl rollguard undo`: the CLI says why
    unmapped = {
        reason
        for reason in warnings - answered_by_the_user_who_asked
        if notify.kind_of(Event("Warning", reason, ""), ModelDeploymentStatus()) is None
    }
    assert unmapped == set(), f"Warning Events with no notification type: {sorted(unmapped)}"


def _ref(version: str) -> RevisionRef:
    return RevisionRef(revision=f"r{version}", version=version, image="i", uri="s3://m")


def _rolled_back(reason: str = "AnalysisFailed") -> ModelDeploymentStatus:
    return ModelDeploymentStatus(
        phase="RolledBack",
        stable=_ref("1.0.0"),
        rejected=Rejection(
            revision="r2.0.0",
            version="2.0.0",
            reason=reason,
            message="check error-rate: 0.3 > 0.01",
            check="error-rate",
            value=0.3,
            limit="<= 0.01",
            cause="Model",
            at="2026-03-01T12:00:00Z",
        ),
        history=[
            HistoryEntry(revision="r2.0.0", version="2.0.0", uri="s3://m", image="i", outcome="RolledBack", at="T1")
        ],
    )


def test_a_post_promotion_rollback_is_a_degraded_notification() -> None:
    event = Event("Warning", "RolledBack", "stable version 2.0.0 degraded after promotion")
    assert notify.kind_of(event, _rolled_back("PostPromotionAnalysisFailed")) == "Degraded"


def test_a_rollback_payload_carries_version_cause_and_evidence_and_a_stable_id() -> None:
    status = _rolled_back()
    event = Event("Warning", "RolledBack", "version 2.0.0 rolled back")
    spec = spec_for("2.0.0", notifications=[{"endpoint": "team"}, {"endpoint": "all", "events": ["Promoted"]}])
    sent = notify.notifications(spec, NAMESPACE, NAME, status, [event], "2026-03-01T12:05:00Z", CATALOG)
    assert [endpoint for endpoint, _ in sent] == ["team"], "an endpoint gets only the events it subscribed to"
    body = sent[0][1]
    assert body["type"] == "RolledBack" and body["version"] == "2.0.0" and body["stableVersion"] == "1.0.0"
    assert body["cause"] == "Model" and body["phase"] == "RolledBack" and body["severity"] == "Warning"
    assert body["evidence"]["check"] == "error-rate" and body["evidence"]["value"] == 0.3, body["evidence"]
    assert (body["namespace"], body["name"], body["timestamp"]) == (NAMESPACE, NAME, "T1"), "decided at, from history"
    again = notify.notifications(spec, NAMESPACE, NAME, status, [event], "2026-03-01T12:09:00Z", CATALOG)[0][1]
    assert again["id"] == body["id"], "a re-announcement after a restart has the same id: receivers can dedupe"
    assert notify.notifications(spec, "team-b", NAME, status, [event], "x", CATALOG) == [], "not allowed: not sent"


def test_slack_format_is_an_incoming_webhook_message() -> None:
    body = notify.payload(Event("Warning", "RolledBack", "version 2.0.0 rolled back"), "RolledBack", NAMESPACE, NAME,
                          _rolled_back(), "now")  # fmt: skip
    message = notify.render(body, "slack")
    assert message["text"] == f":warning: RolledBack: {NAMESPACE}/{NAME}: version 2.0.0 rolled back"
    section, context = message["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "*RolledBack*" in section["text"]["text"] and "`2.0.0`" in section["text"]["text"]
    assert context["elements"][0]["text"] == "phase RolledBack · cause Model · T1"
    assert notify.render(body, "json") is body


# -- signing ------------------------------------------------------------------------------------
def test_signature_is_hmac_sha256_of_timestamp_dot_body_and_verify_rejects_replays_and_tampering() -> None:
    body = b'{"type":"Promoted"}'
    expected = "sha256=" + hmac.new(SECRET, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert notify.signature(SECRET, "1700000000", body) == expected
    assert notify.verify(SECRET, "1700000000", body, expected, now_seconds=1_700_000_100)
    assert not notify.verify(SECRET, "1700000000", body, expected, now_seconds=1_700_000_301), "older than 5 min"
    assert not notify.verify(SECRET, "1700000000", body + b" ", expected, now_seconds=1_700_000_000), "tampered"
    assert not notify.verify(b"other", "1700000000", body, expected, now_seconds=1_700_000_000), "wrong secret"
    assert not notify.verify(SECRET, "soon", body, expected, now_seconds=1_700_000_000), "not a timestamp"


# -- settings ----------------------------------------------------------------------------------
def test_endpoints_come_from_one_json_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoints = [
        {"name": "team", "url": "https://hooks.example.com/t", "secretFile": "/s/team", "namespaces": ["ml-*"]},
        {"name": "chat", "url": "https://hooks.slack.com/services/x", "format": "slack", "timeoutSeconds": 3},
    ]
    monkeypatch.setenv("ROLLGUARD_NOTIFICATIONS_ENDPOINTS", json.dumps(endpoints))
    settings = Settings()
    assert [(e.name, e.format, e.timeout_seconds) for e in settings.notifications_endpoints] == [
        ("team", "json", 5.0),
        ("chat", "slack", 3.0),
    ]
    assert settings.notification_catalog() == notify.Catalog(
        (notify.EndpointRule("team", ("ml-*",)), notify.EndpointRule("chat", ()))
    )


@pytest.mark.parametrize(
    ("endpoints", "error"),
    [
        ([{"name": "team", "url": "https://h/x"}], "endpoint 'team': format json needs secret"),
        ([{"name": "Team!", "url": "https://h/x", "format": "slack"}], "name"),
        ([{"name": "team", "url": "file:///etc/passwd", "format": "slack"}], "url"),
        ([{"name": "t", "url": "https://h", "format": "slack", "timeoutSeconds": 0}], "timeoutSeconds"),
        ([{"name": "t", "url": "https://h", "format": "xml"}], "format"),
        ([{"name": "t", "url": "https://h", "format": "slack"}] * 2, "unique names; repeated: t"),
    ],
)
def test_invalid_endpoints_stop_the_operator_at_start(
    monkeypatch: pytest.MonkeyPatch, endpoints: list[dict[str, Any]], error: str
) -> None:
    monkeypatch.setenv("ROLLGUARD_NOTIFICATIONS_ENDPOINTS", json.dumps(endpoints))
    with pytest.raises(ValidationError, match=error.replace("(", r"\(")):
        Settings()


# -- the confirm-promotion gate in decide() ----------------------------------------------------
GATED = {**CANARY, "canary": {**CANARY["canary"], "confirmPromotion": {"endpoint": "gate"}}}


class GatedCluster(Cluster):
    """Cluster whose reconciler asks the gate when notify.gate_due says so, answering `gate_answers`."""

    gate_status: int = 503
    asked: int = 0

    def inputs(self, **changes: Any) -> Inputs:
        answer = None
        if notify.gate_due(self.spec, self.status, self.now, self.spec.paused) is not None:
            self.asked += 1
            answer = notify.GateAnswer(200 <= self.gate_status < 300, f"{self.gate_status}")
        return super().inputs(notification_catalog=CATALOG, confirmation=answer, **changes)


def test_the_gate_holds_promotion_until_it_answers_2xx() -> None:
    cluster = GatedCluster(spec_for("1.0.0", strategy=GATED))
    cluster.run_until(lambda s: s.phase == "Ready", "the first version needs no gate")
    assert cluster.asked == 0
    cluster.set_spec(spec_for("2.0.0", strategy=GATED))
    held = cluster.run_until(lambda s: s.phase == "Holding", "every step passed: holding for the gate")
    assert held.status.rollout is not None and held.status.rollout.confirmation is not None
    assert "AwaitingConfirmation" in reasons(held.events) and cluster.asked == 0, "asked from the next round on"
    assert kstatus(held.status) == ("False", "True", "False"), "waiting, not stuck: Reconciling, not Stalled"
    assert "waits for a 2xx from endpoint gate" in held.status.message, held.status.message
    wake = schedule.next_due(cluster.spec, held.status, cluster.now)
    assert wake is not None and wake <= cluster.now + timedelta(seconds=30), "the next call is one interval away"
    for _ in range(12):
        cluster.reconcile()
    assert cluster.status.phase == "Holding" and cluster.asked == 4, "asked once per 30s interval while refused"
    assert cluster.status.rollout is not None and cluster.status.rollout.confirmation is not None
    assert cluster.status.rollout.confirmation.answer == "503"
    cluster.gate_status = 204
    cluster.run_until(lambda s: s.stable is not None and s.stable.version == "2.0.0", "promoted after a 2xx")
    assert "PromotionConfirmed" in reasons(cluster.events)


# -- the adapter, against a real HTTP server ---------------------------------------------------
class Server:
    def __init__(self) -> None:
        self.answers: list[int] = []
        self.seen: list[tuple[dict[str, str], bytes]] = []
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                state.seen.append((dict(self.headers.items()), raw))
                self.send_response(state.answers.pop(0) if state.answers else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    thread = threading.Thread(target=running.http.serve_forever, daemon=True)
    thread.start()
    yield running
    running.http.shutdown()
    running.http.server_close()


def _notifier(url: str, tmp_path: Path, **options: Any) -> Notifier:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    endpoint = NotificationEndpoint(name="team", url=url, secret_file=str(secret), timeout_seconds=1)
    return Notifier([endpoint], **{"attempts": 3, "retry_max_seconds": 0.05, **options})


BODY = {"id": "d1", "type": "Promoted", "reason": "Promoted", "namespace": NAMESPACE, "name": NAME, "version": "2"}


def _count(outcome: str, event: str = "Promoted") -> float:
    return metrics.NOTIFICATIONS.labels("team", event, outcome)._value.get()


def test_a_5xx_is_retried_with_a_fresh_signature_and_then_delivered(server: Server, tmp_path: Path) -> None:
    server.answers = [503, 502]
    before = _count("delivered")
    assert asyncio.run(_notifier(server.url, tmp_path).deliver("team", BODY)) == "delivered"
    assert len(server.seen) == 3 and _count("delivered") == before + 1
    for headers, raw in server.seen:
        assert json.loads(raw) == BODY and headers["X-Rollguard-Delivery"] == "d1"
        stamp = headers["X-Rollguard-Timestamp"]
        assert notify.verify(SECRET, stamp, raw, headers["X-Rollguard-Signature"], float(stamp)), "trimmed secret"


def test_a_4xx_is_not_retried_and_an_unreachable_endpoint_fails_after_its_attempts(
    server: Server, tmp_path: Path
) -> None:
    server.answers = [400]
    assert asyncio.run(_notifier(server.url, tmp_path).deliver("team", BODY)) == "rejected"
    assert len(server.seen) == 1
    before = _count("failed")
    closed = "http://127.0.0.1:9/hook"  # discard port: nothing listens
    assert asyncio.run(_notifier(closed, tmp_path).deliver("team", BODY)) == "failed"
    assert _count("failed") == before + 1


def test_a_missing_secret_file_sends_nothing_unsigned_and_is_a_failure_not_a_crash(
    server: Server, tmp_path: Path
) -> None:
    notifier = _notifier(server.url, tmp_path)
    (tmp_path / "secret").unlink()  # the key was removed from the mounted Secret
    before = _count("failed")
    assert asyncio.run(notifier.deliver("team", BODY)) == "failed" and _count("failed") == before + 1
    answer = asyncio.run(notifier.confirm("team", BODY))
    assert not answer.confirmed and "secret file" in answer.detail, answer
    assert server.seen == [], "nothing is sent unsigned"


def test_a_full_queue_drops_and_counts_instead_of_waiting(server: Server, tmp_path: Path) -> None:
    async def flood() -> None:
        notifier = _notifier(server.url, tmp_path, queue_size=1)
        for _ in range(3):  # the worker has not run yet: one fits, two are dropped
            notifier.submit("team", BODY)
        await notifier.close()

    before = _count("dropped")
    asyncio.run(flood())
    assert _count("dropped") == before + 2 and len(server.seen) == 1, "the queued one still went out at close"


def test_the_gate_confirms_on_2xx_only(server: Server, tmp_path: Path) -> None:
    async def ask() -> list[notify.GateAnswer]:
        notifier = _notifier(server.url, tmp_path)
        return [await notifier.confirm("team", BODY) for _ in range(2)]

    server.answers = [503, 204]
    refused, confirmed = asyncio.run(ask())
    assert refused == notify.GateAnswer(False, "503 Service Unavailable") and len(server.seen) == 2, "no retries"
    assert confirmed.confirmed and confirmed.detail.startswith("204")


def test_the_gate_is_never_called_for_a_namespace_it_does_not_allow(server: Server, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    endpoint = NotificationEndpoint(name="team", url=server.url, secret_file=str(secret), namespaces=["team-a"])
    answer = asyncio.run(Notifier([endpoint]).confirm("team", {**BODY, "namespace": "team-b"}))
    assert answer == notify.GateAnswer(False, "endpoint team is not allowed in namespace team-b")
    assert server.seen == [], "no request leaves for another namespace's gate"


# -- kill-safety: a re-announced decision is notified again, with the same id ------------------------
class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def announce(self, namespace: str, name: str, spec: Any, status: Any, events: list[Event], now: Any) -> None:
        self.sent += notify.notifications(spec, namespace, name, status, events, "restart-time", CATALOG)


def test_a_lost_rollback_is_notified_again_after_a_restart_with_the_same_id() -> None:
    from tests.test_announce import FakeContext, failing_canary  # noqa: PLC0415

    cluster = failing_canary()
    decision = cluster.run_until(lambda s: s.rollout is None, "rollback")
    spec = spec_for("2.0.0", notifications=[{"endpoint": "team"}])
    original = notify.notifications(spec, NAMESPACE, NAME, decision.status, decision.events, "pass-time", CATALOG)
    context = FakeContext(event_exists=False)
    context.notifier = RecordingNotifier()  # type: ignore[attr-defined]
    body = {"metadata": {"namespace": NAMESPACE, "name": NAME, "uid": "u"}, "spec": spec.model_dump(by_alias=True)}
    asyncio.run(announcer.reannounce(context, body, decision.status, cluster.now, structlog.get_logger("test")))
    again = context.notifier.sent  # type: ignore[attr-defined]
    assert [(e, b["type"]) for e, b in again] == [("team", "RolledBack")], again
    first = next(b for _, b in original if b["type"] == "RolledBack")
    assert again[0][1]["id"] == first["id"] and again[0][1]["evidence"] == first["evidence"]


# -- Degraded and Fallback: the moments with no known-good version ------------------------------------
def test_a_degraded_model_and_the_fallback_switches_are_notified_with_cause_and_evidence() -> None:
    cluster = serving_with_fallback(analysis=WATCHED)
    spec = with_fallback(analysis=WATCHED, notifications=[{"endpoint": "team"}])
    cluster.prometheus = FakePrometheus(value=0.2)
    degraded = cluster.run_until(lambda s: s.watch is None, "post-promotion failure")
    sent = {
        b["reason"]: b
        for _, b in notify.notifications(spec, NAMESPACE, NAME, degraded.status, degraded.events, "t", CATALOG)
    }
    assert {"DegradedNoKnownGood", "FallbackActivated"} <= sent.keys(), sent.keys()
    down = sent["DegradedNoKnownGood"]
    assert (down["type"], down["version"], down["cause"]) == ("Degraded", "1.0.0", "Model"), down
    assert down["evidence"]["check"] == "error-rate" and down["evidence"]["value"] == 0.2, down["evidence"]
    taken = sent["FallbackActivated"]
    assert (taken["type"], taken["severity"], taken["cause"]) == ("Fallback", "Warning", "Model"), taken
    fallback = taken["evidence"]["fallback"]
    assert (fallback["version"], fallback["active"], fallback["reason"]) == (
        "0.9.0",
        True,
        "PostPromotionAnalysisFailed",
    )
    assert taken["evidence"]["rejected"]["check"] == "error-rate", "the failed check that made the fallback serve"
    assert taken["timestamp"] == fallback["since"], "the switch's time, from status: a re-announcement has the same id"

    cluster.set_spec(with_fallback("2.0.0", analysis=WATCHED))
    started = cluster.reconcile()
    released = [b for _, b in notify.notifications(spec, NAMESPACE, NAME, started.status, started.events, "t", CATALOG)]
    back = next(b for b in released if b["reason"] == "FallbackReleased")
    assert (back["type"], back["severity"], back["cause"]) == ("Fallback", "Normal", None), "recovered: no cause"
    assert back["evidence"]["fallback"]["active"] is False and "2.0.0 rolling out" in back["message"], back
    assert back["id"] != taken["id"], "taking and giving back are two notifications"


def test_a_lost_fallback_activation_is_notified_again_with_the_same_id() -> None:
    from tests.test_announce import FakeContext  # noqa: PLC0415

    cluster = serving_with_fallback()
    cluster.lose_readiness("1.0.0")
    cluster.reconcile(after=1)
    active = cluster.reconcile(after=10)
    spec = spec_for("1.0.0", notifications=[{"endpoint": "team", "events": ["Fallback"]}])
    original = notify.notifications(spec, NAMESPACE, NAME, active.status, active.events, "pass-time", CATALOG)
    context = FakeContext(event_exists=False)
    context.notifier = RecordingNotifier()  # type: ignore[attr-defined]
    body = {"metadata": {"namespace": NAMESPACE, "name": NAME, "uid": "u"}, "spec": spec.model_dump(by_alias=True)}
    later = cluster.now + timedelta(seconds=40)
    asyncio.run(announcer.reannounce(context, body, active.status, later, structlog.get_logger("test")))
    again = context.notifier.sent  # type: ignore[attr-defined]
    assert [(e, b["reason"], b["cause"]) for e, b in again] == [("team", "FallbackActivated", "Infrastructure")], again
    assert again[0][1]["id"] == original[0][1]["id"] and again[0][1]["evidence"] == original[0][1]["evidence"]
