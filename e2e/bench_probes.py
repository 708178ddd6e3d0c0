"""What `make bench` measures with, outside the process measured: the API server's audit log,
Prometheus's own /metrics, /proc/<pid>, and watches recording when things appear.

Nothing here asks the operator to count itself (its own counters miss what kopf writes).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from e2e.waiting import http_get, prom_query

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class AuditCounts:
    """Requests one user made in a window, by verb and by resource, from the apiserver's audit log."""

    requests: int = 0
    writes: int = 0
    by_verb: Counter[str] = field(default_factory=Counter)
    writes_by_resource: Counter[str] = field(default_factory=Counter)
    user_agents: Counter[str] = field(default_factory=Counter)
    writes_by_object: Counter[str] = field(default_factory=Counter)

    def writes_outside(self, prefixes: Iterable[str]) -> int:
        """Writes to objects whose names start with none of `prefixes` (children and Events carry the parent's name)."""
        busy = tuple(prefixes)
        return sum(n for name, n in self.writes_by_object.items() if not (busy and name.startswith(busy)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "writes": self.writes,
            "by_verb": dict(self.by_verb.most_common()),
            "writes_by_resource": dict(self.writes_by_resource.most_common()),
            "user_agents": dict(self.user_agents.most_common(3)),
        }


class AuditLog:
    """Counts ResponseComplete events per user between two byte offsets of audit.log."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def count(self, user: str, since: int, until: int | None = None) -> AuditCounts:
        counts = AuditCounts()
        if not self.path.exists():
            return counts
        with self.path.open("rb") as f:
            f.seek(since)
            data = f.read() if until is None else f.read(max(0, until - since))
        for raw in data.splitlines():
            try:
                event = json.loads(raw)
            except json.JSONDecodeError:
                continue  # a line being written as we read
            if (event.get("user") or {}).get("username") != user:
                continue
            verb = str(event.get("verb", "?"))
            ref = event.get("objectRef") or {}
            resource = "/".join(filter(None, [ref.get("apiGroup"), ref.get("resource"), ref.get("subresource")]))
            counts.requests += 1
            counts.by_verb[verb] += 1
            counts.user_agents[str(event.get("userAgent", "?")).split(" ")[0]] += 1
            if verb in WRITE_VERBS:
                counts.writes += 1
                counts.writes_by_resource[f"{verb} {resource}"] += 1
                counts.writes_by_object[str(ref.get("name", ""))] += 1
        return counts


def settle(audit: AuditLog, user: str, quiet_seconds: float = 10.0, deadline: float = 300.0) -> dict[str, Any]:
    """Wait until `user` has written nothing at the API server for `quiet_seconds`: the work a burst gave it is done.

    Objects are seen Ready before the operator has posted the burst's last Events and finished its last passes;
    the idle window measures the steady state after that, and this measures the tail itself.
    """
    started, mark = time.monotonic(), audit.mark()
    quiet_since, last = started, mark
    while time.monotonic() - quiet_since < quiet_seconds:
        if time.monotonic() - started > deadline:
            break  # recorded below as not settled: a result, not an error
        time.sleep(1.0)
        now = audit.mark()
        written = audit.count(user, last, now)
        if written.writes:
            quiet_since = time.monotonic()
        last = now
    tail = audit.count(user, mark)
    settled = time.monotonic() - quiet_since >= quiet_seconds
    return {
        "settled": settled,
        "seconds_until_quiet": round(quiet_since - started, 1),
        "quiet_seconds": quiet_seconds,
        "writes": tail.writes,
        "writes_by_resource": dict(tail.writes_by_resource.most_common()),
    }


@dataclass(frozen=True)
class ProcSample:
    cpu_seconds: float
    rss_mib: float
    at: float


def proc_sample(pid: int) -> ProcSample:
    """utime+stime (fields 14, 15 of /proc/<pid>/stat) and VmRSS of one process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces; fields start after ')'
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    rss_kib = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return ProcSample(cpu, rss_kib / 1024, time.monotonic())


def cpu_percent(before: ProcSample, after: ProcSample) -> float:
    """Share of one core used between two samples, in percent."""
    return 100 * (after.cpu_seconds - before.cpu_seconds) / max(after.at - before.at, 1e-9)


def prometheus_queries(url: str) -> float:
    """Instant and range queries Prometheus has answered since it started, from its own /metrics."""
    status, body = http_get(f"{url.rstrip('/')}/metrics", timeout=5)
    if status != 200:
        raise RuntimeError(f"Prometheus /metrics answered {status}")
    total = 0.0
    for line in body.splitlines():
        if line.startswith("prometheus_http_requests_total{") and (
            'handler="/api/v1/query"' in line or 'handler="/api/v1/query_range"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def machine_facts() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu_model": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "?",
        ),
        "mem_total_mib": round(
            int(
                next(
                    li.split()[1] for li in Path("/proc/meminfo").read_text().splitlines() if li.startswith("MemTotal")
                )
            )
            / 1024
        ),
    }


class FirstSeen:
    """A background watch that records, per key, the monotonic time an event first matched.

    ``match(obj)`` returns a key (e.g. a name) or None; only the first time per key is kept.
    The watch restarts after the server closes it; the bench's own reads are the admin's, so
    they never count against the operator's identity.
    """

    def __init__(
        self,
        list_call: Callable[..., Any],
        match: Callable[[dict[str, Any]], str | None],
        **kwargs: Any,
    ) -> None:
        self.list_call, self.match, self.kwargs = list_call, match, kwargs
        self.seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-watch")

    def start(self) -> FirstSeen:
        self._thread.start()
        self._ready.wait(30)
        return self

    def stop(self) -> None:
        self._stop.set()

    def first(self, key: str) -> float | None:
        with self._lock:
            return self.seen.get(key)

    def forget(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self.seen.pop(key, None)

    def _record(self, obj: dict[str, Any]) -> None:
        key = self.match(obj)
        if key is not None:
            with self._lock:
                self.seen.setdefault(key, time.monotonic())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                listed = self.list_call(_preload_content=False, **self.kwargs)
                body = json.loads(listed.data)
                for item in body.get("items", []):
                    self._record(item)
                self._ready.set()
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self.list_call,
                    resource_version=body["metadata"]["resourceVersion"],
                    timeout_seconds=120,
                    _request_timeout=150,
                    **self.kwargs,
                )
                for event in stream:
                    raw = event.get("raw_object")
                    if isinstance(raw, dict):
                        self._record(raw)
                    if self._stop.is_set():
                        return
            except Exception:  # the apiserver closed or expired the watch: list and watch again
                time.sleep(0.5)


def model_deployments_watch(api: client.ApiClient, namespace: str) -> Callable[..., Any]:
    custom = client.CustomObjectsApi(api)

    def call(**kwargs: Any) -> Any:
        return custom.list_namespaced_custom_object("rollguard.io", "v1alpha1", namespace, "modeldeployments", **kwargs)

    return call


class PromCrossing:
    """Polls one grouped PromQL every `every` s; records per label value when it first exceeds `limit`.

    Its own queries are counted apart (``queries``), so Prometheus's totals can be corrected.
    """

    def __init__(self, url: str, promql: str, label: str, limit: float, every: float = 0.5) -> None:
        self.url, self.promql, self.label, self.limit, self.every = url, promql, label, limit, every
        self.seen: dict[str, float] = {}
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-crossing")

    def start(self) -> PromCrossing:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.queries += 1
                now = time.monotonic()
                for sample in prom_query(self.url, self.promql, timeout=2):
                    key = sample["metric"].get(self.label)
                    if key and float(sample["value"][1]) > self.limit:
                        self.seen.setdefault(key, now)
            except Exception:  # Prometheus busy or restarting: try again at the next tick
                pass
            self._stop.wait(self.every)
