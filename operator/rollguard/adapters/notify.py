"""Outbound webhooks: one bounded queue and one worker per endpoint, so a slow or dead receiver never
delays a reconcile pass or another endpoint. Each delivery is signed (core/notify.signature), retried
with exponential back-off on 5xx, 429 and network errors (tenacity), and counted by outcome in
rollguard_notifications_total; when a queue is full the notification is dropped, logged and counted.

Also the confirm-promotion gate's call, made once per analysis round inside the pass (its answer is a
measurement, like a Prometheus query), with the endpoint's own timeout and no retries (the next round is one).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from rollguard import metrics
from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import ModelDeploymentStatus
from rollguard.core import clock, notify
from rollguard.core.facts import Event
from rollguard.settings import NotificationEndpoint, Settings

log = structlog.get_logger("rollguard.notify")
USER_AGENT = "rollguard-notifier/1"


class RetryableError(Exception):
    """The receiver may take it later: 5xx, 429, a timeout or a refused connection."""


class Notifier:
    def __init__(
        self,
        endpoints: list[NotificationEndpoint],
        attempts: int = 5,
        retry_max_seconds: float = 30.0,
        queue_size: int = 256,
        now_seconds: Callable[[], float] = time.time,
    ) -> None:
        self.endpoints = {endpoint.name: endpoint for endpoint in endpoints}
        self.catalog = notify.Catalog(tuple(notify.EndpointRule(e.name, tuple(e.namespaces)) for e in endpoints))
        self.attempts, self.retry_max_seconds, self.queue_size = attempts, retry_max_seconds, queue_size
        self.now_seconds = now_seconds
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._workers: list[asyncio.Task[None]] = []
        # Its own threads: a receiver that hangs until its timeout never holds a Kubernetes API call's thread.
        self._executor = ThreadPoolExecutor(max_workers=len(endpoints) + 2, thread_name_prefix="rollguard-notify")

    @classmethod
    def from_settings(cls, settings: Settings) -> Notifier:
        return cls(
            settings.notifications_endpoints,
            settings.notifications_attempts,
            settings.notifications_retry_max_seconds,
            settings.notifications_queue_size,
        )

    # -- notifications ------------------------------------------------------------------------
    def announce(
        self,
        namespace: str,
        name: str,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        events: list[Event],
        now: datetime,
    ) -> None:
        """Queues the notifications of a pass's Events (after its status patch); never waits."""
        for endpoint, body in notify.notifications(spec, namespace, name, status, events, clock.iso(now), self.catalog):
            self.submit(endpoint, body)

    def submit(self, endpoint: str, body: dict[str, Any]) -> None:
        queue = self._queue(endpoint)
        try:
            queue.put_nowait(body)
        except asyncio.QueueFull:
            metrics.NOTIFICATIONS.labels(endpoint, body["type"], "dropped").inc()
            log.error(
                "notification dropped: the endpoint's queue is full",
                endpoint=endpoint,
                notification=body["type"],
                namespace=body["namespace"],
                name=body["name"],
                queue_size=self.queue_size,
            )

    def _queue(self, endpoint: str) -> asyncio.Queue[dict[str, Any]]:
        if endpoint not in self._queues:
            self._queues[endpoint] = asyncio.Queue(self.queue_size)
            task = asyncio.create_task(self._work(endpoint), name=f"rollguard notifications to {endpoint}")
            self._workers.append(task)
        return self._queues[endpoint]

    async def _work(self, endpoint: str) -> None:
        queue = self._queues[endpoint]
        while True:
            body = await queue.get()
            try:
                await self.deliver(endpoint, body)
            except Exception:  # a bug here must not stop the endpoint's worker
                log.exception("notification delivery raised", endpoint=endpoint, notification=body.get("type"))
            finally:
                queue.task_done()

    async def deliver(self, endpoint_name: str, body: dict[str, Any]) -> str:
        """Sends one notification with retries; returns and counts its outcome."""
        endpoint = self.endpoints[endpoint_name]
        data = json.dumps(notify.render(body, endpoint.format), separators=(",", ":")).encode()
        loop = asyncio.get_running_loop()
        status, detail = 0, ""
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=0.5, max=self.retry_max_seconds),
                retry=retry_if_exception(lambda error: isinstance(error, RetryableError)),
                reraise=True,
            ):
                with attempt:
                    status, detail = await loop.run_in_executor(self._executor, self._post, endpoint, data, body["id"])
                    if status >= 500 or status == 429:
                        raise RetryableError(detail)
            outcome = "delivered" if 200 <= status < 300 else "rejected"
        except RetryableError as error:
            outcome, detail = "failed", str(error)
        metrics.NOTIFICATIONS.labels(endpoint_name, body["type"], outcome).inc()
        (log.info if outcome == "delivered" else log.error)(
            f"notification {outcome}",
            endpoint=endpoint_name,
            notification=body["type"],
            reason=body["reason"],
            namespace=body["namespace"],
            name=body["name"],
            delivery=body["id"],
            detail=detail,
        )
        return outcome

    def _post(self, endpoint: NotificationEndpoint, data: bytes, delivery: str) -> tuple[int, str]:
        """One signed POST (a fresh timestamp per attempt); raises RetryableError when it got no answer."""
        timestamp = str(int(self.now_seconds()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            notify.DELIVERY_HEADER: delivery,
            notify.TIMESTAMP_HEADER: timestamp,
        }
        if endpoint.secret_file:
            # Read per request: the kubelet updates a mounted Secret in place when it is rotated.
            try:
                secret = Path(endpoint.secret_file).read_bytes().strip()
            except OSError as error:  # a key removed from the Secret: never send unsigned, never fail the pass
                raise RetryableError(f"secret file {endpoint.secret_file}: {error.strerror or error}") from error
            headers[notify.SIGNATURE_HEADER] = notify.signature(secret, timestamp, data)
        try:
            # No redirects: the platform allowed this URL, not wherever it points to.
            response = requests.post(
                endpoint.url, data=data, headers=headers, timeout=endpoint.timeout_seconds, allow_redirects=False
            )
        except requests.RequestException as error:
            raise RetryableError(f"{type(error).__name__}: {error}") from error
        return response.status_code, f"{response.status_code} {response.reason}"

    # -- the confirm-promotion gate ------------------------------------------------------------
    async def confirm(self, endpoint_name: str, body: dict[str, Any]) -> notify.GateAnswer:
        """One signed call to the gate: 2xx confirms; anything else (or no answer) holds this round."""
        endpoint, rule = self.endpoints.get(endpoint_name), self.catalog.get(endpoint_name)
        if endpoint is None or rule is None or not rule.allows(body["namespace"]):
            # decide() reports it (PolicyViolation); a namespace never makes the operator call what it may not use
            return notify.GateAnswer(False, f"endpoint {endpoint_name} is not allowed in namespace {body['namespace']}")
        data = json.dumps(body, separators=(",", ":")).encode()
        loop = asyncio.get_running_loop()
        try:
            status, detail = await loop.run_in_executor(self._executor, self._post, endpoint, data, body["id"])
        except RetryableError as error:
            status, detail = 0, str(error)
        confirmed = 200 <= status < 300
        outcome = "confirmed" if confirmed else ("refused" if status else "failed")
        metrics.NOTIFICATIONS.labels(endpoint_name, notify.CONFIRM_PROMOTION, outcome).inc()
        log.info(
            "confirm-promotion gate answered",
            endpoint=endpoint_name,
            namespace=body["namespace"],
            name=body["name"],
            version=body["version"],
            outcome=outcome,
            detail=detail,
        )
        return notify.GateAnswer(confirmed, detail)

    async def close(self, drain_seconds: float = 5.0) -> None:
        """On shutdown: give queued notifications a moment to go out, then stop the workers."""
        pending = [queue.join() for queue in self._queues.values()]
        if pending:
            try:
                await asyncio.wait_for(asyncio.gather(*pending), drain_seconds)
            except TimeoutError:
                left = sum(queue.qsize() for queue in self._queues.values())
                log.warning("notifications still queued at shutdown were not sent", queued=left)
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
