"""Notifications, decided purely: which endpoints a ModelDeployment may name, which of a pass's Events
become which notification, their payload (JSON or Slack), the HMAC signature, and when the
confirm-promotion gate is due. The adapter (adapters/notify.py) only queues, signs and sends.

Signing follows Slack's and Stripe's scheme: HMAC-SHA256 over `timestamp + "." + body`, so a
receiver rejects a replayed request whose timestamp is too old.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, get_args

from rollguard.api.spec import ModelDeploymentSpec, NotificationEvent
from rollguard.api.status import ModelDeploymentStatus
from rollguard.core import attribution, clock
from rollguard.core.facts import Event

NOTIFICATION_EVENTS: tuple[NotificationEvent, ...] = get_args(NotificationEvent)
CONFIRM_PROMOTION = "ConfirmPromotion"
SIGNATURE_HEADER = "X-Rollguard-Signature"
TIMESTAMP_HEADER = "X-Rollguard-Timestamp"
DELIVERY_HEADER = "X-Rollguard-Delivery"
REPLAY_TOLERANCE_SECONDS = 300
ENDPOINTS_CHART_VALUE = "notifications.endpoints"
ENDPOINTS_ENV = "ROLLGUARD_NOTIFICATIONS_ENDPOINTS"

# The Event reasons (core/rollout/*.py, core/summary.py) each notification type stands for.
_BY_REASON: dict[str, NotificationEvent] = {
    "RolloutStarted": "RolloutStarted",
    "StepAdvanced": "StepAdvanced",
    "Promoting": "StepAdvanced",
    "Promoted": "Promoted",
    "RollbackComplete": "Promoted",
    "RolledBack": "RolledBack",
    "DegradedNoKnownGood": "Degraded",
    "SharedOutageAfterPromotion": "Degraded",  # the known-good version breaks the same check: a shared upstream
    "DependencyHold": "Holding",
    "DependencyOutage": "Holding",
    "MetricsUnavailable": "Holding",
    "InconclusiveAnalysis": "Holding",
    "ProgressDeadlineExceeded": "Holding",
    "InvalidQuery": "Holding",
    "AwaitingConfirmation": "Holding",
    "FallbackActivated": "Fallback",
    "FallbackReleased": "Fallback",
}


# -- which endpoints a ModelDeployment may name ------------------------------------------------
@dataclass(frozen=True)
class EndpointRule:
    """An endpoint the platform defines, and the tenant namespaces allowed to name it (none: all)."""

    name: str
    namespaces: tuple[str, ...] = ()

    def allows(self, namespace: str) -> bool:
        return not self.namespaces or any(fnmatchcase(namespace, pattern) for pattern in self.namespaces)


@dataclass(frozen=True)
class Catalog:
    endpoints: tuple[EndpointRule, ...] = ()

    def get(self, name: str) -> EndpointRule | None:
        return next((rule for rule in self.endpoints if rule.name == name), None)


NO_ENDPOINTS = Catalog()


def violations(spec: ModelDeploymentSpec, namespace: str, catalog: Catalog) -> list[str]:
    """Every endpoint name the spec uses that the platform does not define or does not allow here."""
    named = [(f"spec.notifications[{i}].endpoint", ref.endpoint) for i, ref in enumerate(spec.notifications)]
    canary = spec.strategy.canary
    if canary is not None and canary.confirm_promotion is not None:
        named.append(("spec.strategy.canary.confirmPromotion.endpoint", canary.confirm_promotion.endpoint))
    problems: list[str] = []
    for field, name in named:
        rule = catalog.get(name)
        if rule is None:
            defined = ", ".join(r.name for r in catalog.endpoints) or "none"
            problems.append(
                f"{field}: {name!r} is not a notification endpoint (the platform defines: {defined}; a platform "
                f"admin adds endpoints under chart value {ENDPOINTS_CHART_VALUE} / {ENDPOINTS_ENV})"
            )
        elif not rule.allows(namespace):
            problems.append(
                f"{field}: {name!r} is not allowed in namespace {namespace!r} (endpoint {name} allows "
                f"{', '.join(rule.namespaces)}; a platform admin can add {namespace!r} to chart value "
                f"{ENDPOINTS_CHART_VALUE}[name={name}].namespaces)"
            )
    return problems


# -- which Events become notifications, and what they carry ----------------------------------------
def kind_of(event: Event, status: ModelDeploymentStatus) -> NotificationEvent | None:
    """The notification type of a pass's Event; None for Events nobody subscribes to (Retry, ...)."""
    kind = _BY_REASON.get(event.reason)
    rejected = status.rejected
    if kind == "RolledBack" and rejected is not None and rejected.reason == "PostPromotionAnalysisFailed":
        return "Degraded"  # the stable version failed its post-promotion watch and is rolled back
    return kind


def _decided_at(kind: NotificationEvent, status: ModelDeploymentStatus, now_iso: str) -> str:
    """A promotion's or rollback's time from history (a fallback switch's from status.fallback), so a
    re-announcement carries the same time and id."""
    if kind == "Fallback" and status.fallback is not None and status.fallback.since is not None:
        return status.fallback.since
    newest = status.history[-1] if status.history else None
    outcome = {"Promoted": "Promoted", "RolledBack": "RolledBack", "Degraded": "RolledBack"}.get(kind)
    return newest.at if newest is not None and outcome == newest.outcome else now_iso


def payload(
    event: Event, kind: NotificationEvent, namespace: str, name: str, status: ModelDeploymentStatus, now_iso: str
) -> dict[str, Any]:
    """The JSON body: what happened, to which version, why (cause) and on what evidence."""
    rollout, rejected, stable = status.rollout, status.rejected, status.stable
    cause: str | None = None
    evidence: dict[str, Any] | None = None
    version = stable.version if stable else None
    if kind in ("RolledBack", "Degraded") and rejected is not None:
        version, cause = rejected.version, rejected.cause
        evidence = rejected.model_dump(mode="json", by_alias=True, exclude_none=True)
    elif kind in ("RolloutStarted", "StepAdvanced", "Holding") and rollout is not None:
        version, cause = rollout.target.version, rollout.cause or attribution.cause_of(event.reason)
        checks = [
            {"check": c.name, "phase": c.phase, "value": c.value, "stableValue": c.stable_value, "limit": c.limit}
            for c in rollout.checks
        ]
        evidence = {"step": rollout.step_index + 1, "weight": rollout.weight, "checks": checks}
        if rollout.confirmation is not None and rollout.confirmation.answer:
            evidence["gateAnswer"] = rollout.confirmation.answer
    elif kind == "Promoted" and status.history and status.history[-1].outcome == "Promoted":
        evidence = {"metrics": status.history[-1].metrics, "reason": status.history[-1].reason}
    elif kind == "Fallback" and status.fallback is not None:
        # Taking the traffic carries its cause; giving it back has none (the model recovered).
        cause = status.fallback.cause if status.fallback.active else None
        evidence = {"fallback": status.fallback.model_dump(mode="json", by_alias=True, exclude_none=True)}
        if status.fallback.reason == "PostPromotionAnalysisFailed" and rejected is not None:
            evidence["rejected"] = rejected.model_dump(mode="json", by_alias=True, exclude_none=True)
    at = _decided_at(kind, status, now_iso)
    identity = f"{namespace}/{name}/{kind}/{event.reason}/{at}"
    return {
        "id": hashlib.sha256(identity.encode()).hexdigest()[:32],
        "type": kind,
        "reason": event.reason,
        "severity": event.type,
        "message": event.message,
        "namespace": namespace,
        "name": name,
        "version": version,
        "stableVersion": stable.version if stable else None,
        "phase": status.phase,
        "cause": cause,
        "evidence": evidence,
        "timestamp": at,
    }


def notifications(
    spec: ModelDeploymentSpec,
    namespace: str,
    name: str,
    status: ModelDeploymentStatus,
    events: list[Event],
    now_iso: str,
    catalog: Catalog,
) -> list[tuple[str, dict[str, Any]]]:
    """(endpoint, payload) for every Event each subscribed, allowed endpoint wants."""
    sent: list[tuple[str, dict[str, Any]]] = []
    for event in events:
        kind = kind_of(event, status)
        if kind is None:
            continue
        body = payload(event, kind, namespace, name, status, now_iso)
        for ref in spec.notifications:
            rule = catalog.get(ref.endpoint)
            if rule is not None and rule.allows(namespace) and (not ref.events or kind in ref.events):
                sent.append((ref.endpoint, body))
    return sent


_ICON = {"Warning": ":warning:", "Normal": ":white_check_mark:"}


def slack(body: dict[str, Any]) -> dict[str, Any]:
    """The same notification as a Slack incoming-webhook message (text fallback plus blocks)."""
    subject = f"{body['namespace']}/{body['name']}"
    version = f" version `{body['version']}`" if body.get("version") else ""
    facts = [f"phase {body['phase']}"] + ([f"cause {body['cause']}"] if body.get("cause") else [])
    facts.append(body["timestamp"])
    message = str(body["message"])[:2800]  # a section's text is at most 3000 characters
    return {
        "text": f"{_ICON.get(body['severity'], '')} {body['type']}: {subject}: {message}".strip(),
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*{body['type']}* `{subject}`{version}\n{message}"},
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]},
        ],
    }


def render(body: dict[str, Any], format_: str) -> dict[str, Any]:
    return slack(body) if format_ == "slack" else body


# -- signing ------------------------------------------------------------------------------------
def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The X-Rollguard-Signature value: sha256=<hex HMAC-SHA256 of `timestamp.body`>."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    header: str,
    now_seconds: float,
    tolerance_seconds: float = REPLAY_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does: a fresh timestamp and a constant-time match of the signature."""
    try:
        fresh = abs(now_seconds - int(timestamp)) <= tolerance_seconds
    except ValueError:
        return False
    return fresh and hmac.compare_digest(signature(secret, timestamp, body), header)


# -- the confirm-promotion gate -------------------------------------------------------------------
@dataclass(frozen=True)
class GateAnswer:
    """What the gate answered this round (measured by the adapter, judged by decide())."""

    confirmed: bool
    detail: str


def gate_due(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime, paused: bool) -> str | None:
    """The gate endpoint to call this pass: every step passed and the last call is an interval old."""
    canary, rollout = spec.strategy.canary, status.rollout
    if paused or canary is None or canary.confirm_promotion is None or rollout is None:
        return None
    waiting = rollout.confirmation
    if waiting is None or rollout.promoting or rollout.paused_reason is not None:
        return None
    if waiting.asked_at is not None and clock.seconds_since(waiting.asked_at, now) < spec.analysis.interval_seconds:
        return None
    return canary.confirm_promotion.endpoint


def confirm_request(namespace: str, name: str, status: ModelDeploymentStatus, now_iso: str) -> dict[str, Any]:
    """The gate's request body: which version waits, since when, with this round's checks."""
    rollout = status.rollout
    assert rollout is not None and rollout.confirmation is not None
    event = Event(
        "Normal",
        CONFIRM_PROMOTION,
        f"version {rollout.target.version} passed every step; answer 2xx to promote it",
    )
    body = payload(event, "Holding", namespace, name, status, now_iso)
    return body | {"type": CONFIRM_PROMOTION, "requestedAt": rollout.confirmation.requested_at}
