"""Issue 11, notifications: signed webhooks on rollout events, a Slack-format endpoint, and the
confirm-promotion gate, received by an HTTP server on 127.0.0.1 inside the test.

The receiver verifies every request the way the README tells a user to: HMAC-SHA256 over
`timestamp + "." + body` with the shared secret, and a timestamp no older than five minutes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e import md
from e2e.rollguard_process import RollguardProcess
from e2e.test_canary import canary, rolled_back, start_stable
from e2e.test_fallback import FALLBACK, degrading, fail_live_traffic, model_pods, switched_by_unready_pods
from e2e.waiting import wait_for
from rollguard.core import notify

SECRET = b"s3cr3t-shared-with-the-receiver"
NAME_DEGRADED = "degrading"
NAME_KILLED = "killed-switch"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    answered: int
    signature_valid: bool


@dataclass
class Receiver:
    """Records every POST; answers `answers[path]` (default 200), or 503 to the first `fail_first[path]`."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)
    fail_first: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def of_type(self, path: str, type_: str) -> list[Received]:
        return [r for r in self.at(path) if r.answered < 300 and _type(r) == type_]


def _type(received: Received) -> str:
    """The notification type: the JSON's `type`, or a Slack message's first bold word."""
    if "type" in received.body:
        return str(received.body["type"])
    return str(received.body["blocks"][0]["text"]["text"]).split("*")[1]


def _valid(headers: dict[str, str], raw: bytes) -> bool:
    """What a receiver does (notify.verify, pinned to the README's HMAC recipe in tests/test_notify.py)."""
    timestamp, signature = headers.get("X-Rollguard-Timestamp", ""), headers.get("X-Rollguard-Signature", "")
    return notify.verify(SECRET, timestamp, raw, signature, time.time())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                left = state.fail_first.get(self.path, 0)
                state.fail_first[self.path] = max(0, left - 1)
                answer = 503 if left else state.answers.get(self.path, 200)
                headers = dict(self.headers.items())
                state.requests.append(Received(self.path, headers, json.loads(raw), answer, _valid(headers, raw)))
            self.send_response(answer)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _endpoints(receiver: Receiver, secret_file: Path, namespace: str) -> str:
    endpoint = {"secretFile": str(secret_file), "namespaces": [namespace], "timeoutSeconds": 2}
    return json.dumps(
        [
            {"name": "team", "url": receiver.url("/team"), **endpoint},
            {"name": "chat", "url": receiver.url("/chat"), "format": "slack", **endpoint},
            {"name": "gate", "url": receiver.url("/gate"), **endpoint},
            {"name": "elsewhere", "url": receiver.url("/elsewhere"), **endpoint, "namespaces": ["other-team"]},
        ]
    )


@pytest.fixture
def notifying(
    start_rollguard: Callable[..., RollguardProcess], receiver: Receiver, namespace: str, tmp_path: Path
) -> RollguardProcess:
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_bytes(SECRET + b"\n")  # as `kubectl create secret --from-file` often stores it
    return start_rollguard(
        ROLLGUARD_NOTIFICATIONS_ENDPOINTS=_endpoints(receiver, secret_file, namespace),
        ROLLGUARD_NOTIFICATIONS_RETRY_MAX_SECONDS="1",
    )


def _subscribed(name: str, version: str, **overrides: Any) -> dict[str, Any]:
    steps = [{"weight": 25, "pause": {"duration": "3s"}}, {"weight": 50, "pause": {"duration": "3s"}}]
    body = canary(name, version, steps=steps, **overrides)
    body["spec"]["strategy"]["canary"]["confirmPromotion"] = {"endpoint": "gate"}
    body["spec"]["notifications"] = [{"endpoint": "team"}, {"endpoint": "chat", "events": ["Promoted", "RolledBack"]}]
    return body


def test_each_rollout_event_is_a_signed_webhook_and_the_gate_holds_promotion_until_2xx(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, receiver: Receiver, notifying: RollguardProcess
) -> None:
    receiver.fail_first["/team"] = 1  # the very first delivery is retried with back-off, then arrives
    start_stable(control_plane, kube_api, namespace, _subscribed("notified", "1.0.0"))
    wait_for(lambda: receiver.of_type("/team", "Promoted"), 20, message="the first version's Promoted webhook on /team")
    started = receiver.of_type("/team", "RolloutStarted")
    assert started and started[0].body["version"] == "1.0.0", [r.body for r in receiver.at("/team")]
    first = receiver.at("/team")[0]
    retried = [
        r for r in receiver.at("/team") if r.headers["X-Rollguard-Delivery"] == first.headers["X-Rollguard-Delivery"]
    ]
    assert [r.answered for r in retried][:2] == [503, 200], "a 503 is retried, and the retry is delivered"

    receiver.answers["/gate"] = 503
    md.apply(control_plane, namespace, _subscribed("notified", "1.1.0"))
    held = md.wait_status(
        kube_api,
        namespace,
        "notified",
        lambda s: s.get("phase") == "Holding" and len(receiver.at("/gate")) >= 2,
        90,
        "1.1.0 passed every step and holds while the gate answers 503 (asked every analysis round)",
    )
    assert held["servingVersion"] == "1.0.0", "nothing is promoted while the gate refuses"
    reconciling = next(c for c in held["conditions"] if c["type"] == "Reconciling")
    assert reconciling["reason"] == "AwaitingConfirmation" and "gate" in reconciling["message"], reconciling
    assert "503" in held["rollout"]["confirmation"]["answer"], held["rollout"]["confirmation"]
    request = receiver.at("/gate")[-1].body
    assert request["type"] == "ConfirmPromotion" and request["version"] == "1.1.0", request
    assert {c["check"] for c in request["evidence"]["checks"]} == {"error-rate"}, "the gate sees the last checks"
    steps = receiver.of_type("/team", "StepAdvanced")
    assert steps and all(r.body["version"] == "1.1.0" for r in steps), [r.body for r in steps]
    holding = wait_for(
        lambda: receiver.of_type("/team", "Holding"), 10, message="a Holding webhook (AwaitingConfirmation)"
    )
    assert holding[0].body["reason"] == "AwaitingConfirmation" and holding[0].body["version"] == "1.1.0"

    receiver.answers["/gate"] = 200
    wait_for(lambda: md.serving(kube_api, namespace, "notified", "1.1.0"), 60, message="1.1.0 promoted after a 2xx")
    promoted = wait_for(
        lambda: [r for r in receiver.of_type("/team", "Promoted") if r.body["version"] == "1.1.0"],
        20,
        message="a Promoted webhook for 1.1.0",
    )
    assert promoted[0].body["evidence"]["metrics"].keys() == {"error-rate"}, promoted[0].body

    md.apply(control_plane, namespace, _subscribed("notified", "1.2.0", env={"SIMULATED_ERROR_RATE": "0.3"}))
    rolled_back(kube_api, namespace, "notified")
    rollback = wait_for(lambda: receiver.of_type("/team", "RolledBack"), 20, message="a RolledBack webhook for 1.2.0")[
        0
    ].body
    assert rollback["version"] == "1.2.0" and rollback["cause"] == "Model", rollback
    assert rollback["evidence"]["check"] == "error-rate" and rollback["evidence"]["value"] > 0.05, rollback
    assert rollback["stableVersion"] == "1.1.0" and rollback["phase"] == "RolledBack", rollback

    # The Slack-format endpoint: only the events it subscribed to, as incoming-webhook messages.
    chat = wait_for(
        lambda: receiver.of_type("/chat", "RolledBack") and receiver.at("/chat"), 20, message="the Slack rollback"
    )
    assert {_type(r) for r in chat} == {"Promoted", "RolledBack"}, [r.body for r in chat]
    for message in chat:
        assert message.body["text"] and message.body["blocks"][0]["type"] == "section", message.body
    assert "1.2.0" in receiver.of_type("/chat", "RolledBack")[0].body["text"]

    every = receiver.requests
    assert every and all(r.signature_valid for r in every), [r.headers for r in every if not r.signature_valid]
    wait_for(
        lambda: (
            notifying.metric("rollguard_notifications_total", endpoint="team", outcome="delivered")
            == len([r for r in receiver.at("/team") if r.answered < 300])
        ),
        10,
        message="rollguard_notifications_total{endpoint=team,outcome=delivered} counts every 2xx the receiver gave",
    )
    assert notifying.metric("rollguard_notifications_total", endpoint="gate", outcome="refused") >= 2
    assert notifying.metric("rollguard_notifications_total", endpoint="gate", outcome="confirmed") == 1


def test_an_endpoint_the_namespace_may_not_use_is_a_clear_error_and_the_running_version_serves(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, receiver: Receiver, notifying: RollguardProcess
) -> None:
    start_stable(control_plane, kube_api, namespace, canary("refused", "1.0.0"))
    body = canary("refused", "1.1.0")
    body["spec"]["notifications"] = [{"endpoint": "elsewhere"}, {"endpoint": "nowhere"}]
    md.apply(control_plane, namespace, body)
    failed = md.wait_phase(kube_api, namespace, "refused", "Failed", timeout=30)
    stalled = next(c for c in failed["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "PolicyViolation", stalled
    message = stalled["message"]
    assert f"spec.notifications[0].endpoint: 'elsewhere' is not allowed in namespace '{namespace}'" in message
    assert "notifications.endpoints[name=elsewhere].namespaces" in message, message
    assert "spec.notifications[1].endpoint: 'nowhere' is not a notification endpoint" in message, message
    assert failed["servingVersion"] == "1.0.0"
    assert md.ready_pods_by_version(kube_api, namespace, "refused") == {"1.0.0": 2}, "the running version serves"
    warning = wait_for(
        lambda: [e for e in md.events(kube_api, namespace, "refused") if e.reason == "PolicyViolation"],
        15,
        message="a PolicyViolation Warning Event",
    )
    assert "elsewhere" in warning[0].message and "keeps serving" in warning[0].message
    assert receiver.requests == [], "nothing is sent to an endpoint the namespace may not use"


def test_a_degraded_model_with_no_known_good_and_the_fallback_switches_are_signed_webhooks(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, receiver: Receiver, notifying: RollguardProcess
) -> None:
    def version(number: str) -> dict[str, Any]:
        body = degrading(NAME_DEGRADED, number)
        body["spec"]["notifications"] = [{"endpoint": "team"}, {"endpoint": "chat", "events": ["Degraded", "Fallback"]}]
        return body

    md.apply(control_plane, namespace, version("1.0.0"))
    wait_for(lambda: md.serving(kube_api, namespace, NAME_DEGRADED, "1.0.0"), 60, message="1.0.0 serving")
    md.wait_status(
        kube_api,
        namespace,
        NAME_DEGRADED,
        lambda s: (
            (s.get("watch") or {}).get("lastVerdict") == "Passed" and (s.get("fallback") or {}).get("readyReplicas")
        ),
        60,
        "1.0.0 passes a post-promotion round and the fallback is warm",
    )
    # The only version there is starts failing on live traffic: nothing known-good to roll back to.
    fail_live_traffic(kube_api, namespace, NAME_DEGRADED)

    degraded = wait_for(
        lambda: receiver.of_type("/team", "Degraded"), 90, message="a Degraded webhook once 1.0.0 fails its checks"
    )[0].body
    assert (degraded["reason"], degraded["version"], degraded["cause"]) == ("DegradedNoKnownGood", "1.0.0", "Model")
    assert degraded["evidence"]["check"] == "error-rate" and degraded["evidence"]["value"] > 0.05, degraded
    taken = wait_for(
        lambda: [r.body for r in receiver.of_type("/team", "Fallback") if r.body["reason"] == "FallbackActivated"],
        20,
        message="a Fallback webhook: the fallback took the traffic",
    )[0]
    assert (taken["severity"], taken["cause"], taken["version"]) == ("Warning", "Model", "1.0.0"), taken
    fallback = taken["evidence"]["fallback"]
    assert (fallback["version"], fallback["active"], fallback["reason"]) == (
        "0.9.0",
        True,
        "PostPromotionAnalysisFailed",
    )
    assert taken["evidence"]["rejected"]["check"] == "error-rate", "the failed check that made the fallback serve"
    assert "fallback 0.9.0 serves the traffic" in taken["message"], taken["message"]

    # A new version needs real traffic to be judged: the model gets it back as 1.1.0 rolls out.
    md.apply(control_plane, namespace, version("1.1.0"))
    back = wait_for(
        lambda: [r.body for r in receiver.of_type("/team", "Fallback") if r.body["reason"] == "FallbackReleased"],
        30,
        message="a Fallback webhook: the traffic is back once 1.1.0 rolls out",
    )[0]
    assert (back["severity"], back["cause"]) == ("Normal", None), "the model recovered: no failure cause"
    assert back["evidence"]["fallback"]["active"] is False and "1.1.0 rolling out" in back["message"], back
    assert len([r for r in receiver.of_type("/team", "Fallback") if r.body["reason"] == "FallbackActivated"]) == 1

    chat = wait_for(
        lambda: receiver.at("/chat") if len(receiver.at("/chat")) >= 3 else None,
        10,
        message="the Slack endpoint's Degraded and two Fallback messages",
    )
    assert sorted(_type(r) for r in chat) == ["Degraded", "Fallback", "Fallback"], [r.body for r in chat]
    every = receiver.requests
    assert every and all(r.signature_valid for r in every), [r.headers for r in every if not r.signature_valid]


def test_a_fallback_switch_lost_to_a_kill_is_announced_and_notified_once_by_the_next_operator(
    control_plane: Any,
    kube_api: client.ApiClient,
    namespace: str,
    receiver: Receiver,
    start_rollguard: Callable[..., RollguardProcess],
    tmp_path: Path,
) -> None:
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_bytes(SECRET)
    endpoints = _endpoints(receiver, secret_file, namespace)
    first = start_rollguard(
        ROLLGUARD_NOTIFICATIONS_ENDPOINTS=endpoints, ROLLGUARD_TEST_CRASH_AFTER_STATUS_PATCH="FallbackActivated"
    )
    body = md.manifest(NAME_KILLED, version="1.0.0", replicas=2, fallback=FALLBACK)
    body["spec"]["notifications"] = [{"endpoint": "team", "events": ["Fallback"]}]
    md.apply(control_plane, namespace, body)
    md.wait_status(
        kube_api,
        namespace,
        NAME_KILLED,
        lambda s: md.has_condition(s, "Ready") and (s.get("fallback") or {}).get("readyReplicas") == 1,
        60,
        "1.0.0 serving and the fallback warm",
    )
    pods = model_pods(kube_api, namespace, NAME_KILLED)
    switched = switched_by_unready_pods(kube_api, namespace, NAME_KILLED, pods)["fallback"]
    assert first.proc is not None
    wait_for(lambda: first.proc.poll() is not None, 10, message="the operator exits right after the status write")

    def activated_events() -> int:
        return sum(e.count or 1 for e in md.events(kube_api, namespace, NAME_KILLED) if e.reason == "FallbackActivated")

    def activated_webhooks() -> list[Received]:
        return [r for r in receiver.of_type("/team", "Fallback") if r.body["reason"] == "FallbackActivated"]

    assert activated_events() == 0 and activated_webhooks() == [], "killed before the Event and the webhook"

    second = start_rollguard(ROLLGUARD_NOTIFICATIONS_ENDPOINTS=endpoints)
    wait_for(activated_events, 30, message="the restarted operator's FallbackActivated Event")
    webhook = wait_for(activated_webhooks, 20, message="the restarted operator's Fallback webhook")[0]
    passes = second.metric("rollguard_reconcile_duration_seconds_count")
    wait_for(
        lambda: second.metric("rollguard_reconcile_duration_seconds_count") >= passes + 3,
        30,
        message="three more passes of the restarted operator (none may announce it again)",
    )
    assert activated_events() == 1 and len(activated_webhooks()) == 1, "announced and notified exactly once"
    event = next(e for e in md.events(kube_api, namespace, NAME_KILLED) if e.reason == "FallbackActivated")
    assert event.type == "Warning" and event.message == switched["message"], (event.message, switched["message"])
    assert webhook.signature_valid and webhook.body["cause"] == "Infrastructure", webhook.body
    assert webhook.body["timestamp"] == switched["since"], "the switch's time, not the restart's"
    assert webhook.body["evidence"]["fallback"]["reason"] == "ServingNotReady", webhook.body["evidence"]
    logged = [
        r
        for r in second.logs()
        if r.get("reason") == "FallbackActivated" and r.get("name") == NAME_KILLED and "notification" not in r
    ]
    assert len(logged) == 1 and logged[0].get("reannounced"), f"one log line, saying it is re-announced: {logged}"
    delivered = [
        r for r in second.logs() if r.get("notification") == "Fallback" and r.get("reason") == "FallbackActivated"
    ]
    assert [r.get("event") for r in delivered] == ["notification delivered"], delivered
