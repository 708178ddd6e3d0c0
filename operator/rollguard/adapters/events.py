"""Kubernetes Events (core v1) for a ModelDeployment's decisions, posted in the background.

`post()` only queues: a few tasks post them on their own threads (each object's in order), so a pass
never waits for an Event and needs no kopf handler context. A namespace being deleted refuses new objects (403
"... because it is being terminated", or 404 once gone): those Events are dropped quietly, as the
objects they describe are going too. The body is kopf's (kopf/_cogs/clients/events.py, post_event),
so `kubectl describe` and `involvedObject` field selectors see the same Events as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollguard.core.facts import Event

log = structlog.get_logger("rollguard")

COMPONENT = "rollguard"
MAX_MESSAGE_LENGTH = 1024  # kopf's cut, which the API server's Event validation accepts
QUEUE_LIMIT = 10_000  # Events beyond this while the API server is unreachable are dropped, with a warning


def _shorten(message: str) -> str:
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    half = (MAX_MESSAGE_LENGTH - 3) // 2
    return f"{message[:half]}...{message[-(MAX_MESSAGE_LENGTH - 3 - half) :]}"


def event_body(obj: dict[str, Any], event: Event, now: datetime, instance: str) -> dict[str, Any]:
    """The core v1 Event about `obj` (its apiVersion, kind, name, uid and namespace)."""
    meta = obj.get("metadata") or {}
    involved = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "namespace": meta.get("namespace"),
    }
    stamp = now.isoformat()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"namespace": meta.get("namespace"), "generateName": f"{str(meta.get('name'))[:200]}."},
        "involvedObject": {key: value for key, value in involved.items() if value},
        "type": event.type,
        "reason": event.reason,
        "message": _shorten(event.message),
        "action": event.reason,
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "source": {"component": COMPONENT},  # the "From" column of `kubectl describe`
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": stamp,
        "count": 1,
    }


def namespace_going(error: BaseException) -> bool:
    """The API server refuses new objects in a namespace being deleted (403), or it is gone (404)."""
    if not isinstance(error, ApiException):
        return False
    body = str(error.body or "")
    if error.status == 403:
        return "being terminated" in body
    if error.status == 404:
        try:
            details = json.loads(body or "{}").get("details") or {}
        except ValueError:
            return False
        return details.get("kind") == "namespaces"
    return False


class EventPoster:
    """Queues Events and posts them from a few background tasks. Each object's Events go through one
    task, in the order its passes decided them; different objects' Events are posted side by side, so
    a burst of decisions (1,000 objects created at once) does not trail Events into the idle minutes."""

    WORKERS = 4

    def __init__(
        self,
        create: Callable[[str, dict[str, Any]], Any] | None = None,
        *,
        instance: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        workers: int = WORKERS,
    ) -> None:
        self._create = create
        self._instance = instance or os.environ.get("POD_NAME") or socket.gethostname()
        self._clock = clock
        self._workers = max(1, workers)
        self._queues: list[asyncio.Queue[dict[str, Any]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._dropped = 0

    @classmethod
    def for_api(cls, api: client.ApiClient, workers: int = WORKERS) -> EventPoster:
        """Posting through `api`, whose connection pool should hold `workers` connections."""
        core = client.CoreV1Api(api)

        def create(namespace: str, body: dict[str, Any]) -> None:
            # The response is not needed: read past it (so the connection is reused) without typed models.
            response: Any = core.create_namespaced_event(namespace, cast(Any, body), _preload_content=False)
            response.read()
            response.release_conn()

        return cls(create, workers=workers)

    def post(self, obj: dict[str, Any], event: Event) -> None:
        """Queue an Event about `obj`; never blocks. Called from the event loop (a pass)."""
        if self._create is None:
            return
        if not self._queues:
            loop = asyncio.get_running_loop()
            self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="rollguard-events")
            self._queues = [asyncio.Queue() for _ in range(self._workers)]
            self._tasks = [
                loop.create_task(self._run(queue), name=f"rollguard events {index}")
                for index, queue in enumerate(self._queues)
            ]
        meta = obj.get("metadata") or {}
        queue = self._queues[self.shard(str(meta.get("namespace")), str(meta.get("name")))]
        if queue.qsize() >= QUEUE_LIMIT // self._workers:
            self._dropped += 1
            if self._dropped == 1:
                log.warning("Events queue full, dropping Events", limit=QUEUE_LIMIT, reason=event.reason)
            return
        queue.put_nowait(event_body(obj, event, self._clock(), self._instance))

    def shard(self, namespace: str, name: str) -> int:
        """Which task posts this object's Events (always the same one: they stay in order)."""
        return zlib.crc32(f"{namespace}/{name}".encode()) % self._workers

    async def _run(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            body = await queue.get()
            await self._send(body)
            queue.task_done()

    async def _send(self, body: dict[str, Any]) -> None:
        assert self._create is not None
        namespace = body["metadata"]["namespace"]
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._create, namespace, body)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # Events are auxiliary: a failed post never fails a pass
            if namespace_going(error):
                log.debug("namespace being deleted, Event dropped", namespace=namespace, reason=body["reason"])
                return
            status = error.status if isinstance(error, ApiException) else None
            log.warning(
                "cannot post Event",
                namespace=namespace,
                name=body["involvedObject"].get("name"),
                reason=body["reason"],
                status=status,
                error=str(getattr(error, "body", None) or error)[:300],
            )

    async def drain(self) -> None:
        """Waits until every queued Event was posted (tests; a clean shutdown)."""
        await asyncio.gather(*(queue.join() for queue in self._queues))

    async def close(self, grace_seconds: float = 5.0) -> None:
        """Posts what is queued (for up to `grace_seconds`), then stops; a pass's Event lost here is
        re-announced after the next start (announcer.py)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), grace_seconds)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks, self._queues = [], []
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
