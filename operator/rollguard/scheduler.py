"""One task that decides when each ModelDeployment gets a pass: when it or a child changed, or when
its own next due time (core/schedule.py) or its jittered safety resync comes.

Passes run concurrently across objects up to a bound, never two at once for one object, and a
changed object always goes before one that is merely due. Shaped after controller-runtime's
workqueue with `Result{RequeueAfter}` (kubernetes-sigs/controller-runtime pkg/reconcile/reconcile.go).
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections.abc import Awaitable, Callable

import structlog

Key = tuple[str, str]
# A pass returns in how many seconds it next wants to run (None: only on change or safety resync).
Pass = Callable[[Key], Awaitable[float | None]]

log = structlog.get_logger("rollguard")


class Scheduler:
    def __init__(
        self,
        run_pass: Pass,
        max_concurrent: int,
        resync_seconds: float,
        *,
        retry_seconds: float = 5.0,
        jitter: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._run_pass = run_pass
        self._max_concurrent = max(1, max_concurrent)
        self._resync_seconds = resync_seconds
        self._retry_seconds = retry_seconds
        self._jitter = jitter
        self._clock = clock
        self._rng = rng
        self._known: set[Key] = set()
        self._changed: dict[Key, None] = {}  # an ordered set: first changed, first run
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []  # entries not matching _due are stale and skipped
        self._running: set[Key] = set()
        self._again: set[Key] = set()  # changed while its pass ran: run once more right after
        self._tasks: set[asyncio.Task[None]] = set()
        # The loop sleeps on one future: a burst of watch events costs one wake-up, not one per event.
        self._waiter: asyncio.Future[None] | None = None
        self.turns = 0  # loop turns (wake-ups) so far: a burst of changes costs one

    # -- what the watch handlers call ---------------------------------------------------------
    def changed(self, key: Key) -> None:
        """The object, a child or its route changed: a pass as soon as a slot is free."""
        self._known.add(key)
        if key in self._running:
            self._again.add(key)
        else:
            self._changed[key] = None
        if len(self._running) < self._max_concurrent:  # else the next pass to finish wakes the loop
            self._wake()

    def forget(self, key: Key) -> None:
        """The object is gone: no more passes for it."""
        self._known.discard(key)
        self._changed.pop(key, None)
        self._due.pop(key, None)
        self._again.discard(key)

    def due_in(self, key: Key) -> float | None:
        """Seconds until the next pass that is not caused by a change (for tests and logs)."""
        when = self._due.get(key)
        return None if when is None else when - self._clock()

    @property
    def running(self) -> int:
        return len(self._running)

    # -- the loop -----------------------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                self.turns += 1
                self._start_ready()
                timer = None
                self._waiter = loop.create_future()
                if self._heap and len(self._running) < self._max_concurrent:
                    timer = loop.call_later(max(0.0, self._heap[0][0] - self._clock()), self._wake)
                try:
                    await self._waiter
                finally:
                    self._waiter = None
                    if timer is not None:
                        timer.cancel()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _next_ready(self) -> Key | None:
        for key in self._changed:
            if key not in self._running:
                del self._changed[key]
                return key
        now = self._clock()
        while self._heap and self._heap[0][0] <= now:
            when, key = heapq.heappop(self._heap)
            if self._due.get(key) != when:
                continue  # superseded by a later answer, or forgotten
            del self._due[key]
            if key in self._running:
                continue  # its pass is running now and will say when it next wants one
            return key
        return None

    def _start_ready(self) -> None:
        while len(self._running) < self._max_concurrent:
            key = self._next_ready()
            if key is None:
                return
            self._changed.pop(key, None)
            self._due.pop(key, None)
            self._running.add(key)
            task = asyncio.create_task(self._pass(key), name=f"rollguard pass {key[0]}/{key[1]}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pass(self, key: Key) -> None:
        wanted: float | None
        try:
            wanted = await self._run_pass(key)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # an outage (API server, network): retried, as kopf would have
            log.warning("pass failed, retrying", namespace=key[0], name=key[1], error=repr(error)[:500])
            wanted = self._retry_seconds
        finally:
            self._running.discard(key)
            self._wake()
        if key not in self._known:
            return
        if key in self._again:
            self._again.discard(key)
            self._changed[key] = None
        resync = self._resync_seconds * (1 + self._jitter * (2 * self._rng() - 1))
        delay = resync if wanted is None else min(resync, max(0.0, wanted))
        self.schedule(key, delay)

    def schedule(self, key: Key, delay_seconds: float) -> None:
        """A pass for `key` in `delay_seconds` (replacing the time asked for before)."""
        when = self._clock() + delay_seconds
        self._due[key] = when
        heapq.heappush(self._heap, (when, key))
        self._wake()
