"""Waiting on conditions with deadlines, and querying Prometheus: helpers for e2e tests.

Never sleep and hope: poll a predicate until it holds or the deadline passes, then fail with
what was expected and what was last seen.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class _Missing:
    def __repr__(self) -> str:
        return "<nothing observed yet>"


def wait_for(
    probe: Callable[[], T],
    timeout: float,
    interval: float = 0.5,
    message: str = "condition",
    *,
    until: Callable[[T], bool] = bool,
) -> T:
    """Call ``probe`` every ``interval`` s until ``until(value)`` is true; return that value.

    By default a truthy value ends the wait, so ``probe`` may be a plain predicate or a getter
    that returns ``None`` until the thing exists. Exceptions raised by ``probe`` count as "not
    yet" (the API may still be starting) and are reported if the deadline passes. On timeout
    raises AssertionError: ``"<message>: not true after <timeout>s; last observed: <value>"``.
    """
    deadline = time.monotonic() + timeout
    last: object = _Missing()
    while True:
        try:
            value = probe()
            if until(value):
                return value
            last = value
        except Exception as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message}: not true after {timeout:g}s; last observed: {last!r}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET ``url`` (loopback only in tests), returning (status, body); HTTP errors are not raised.

    TLS certificates are not verified: the test apiserver's certificate is self-signed.
    """
    request = urllib.request.Request(url, headers=headers or {})
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode(errors="replace")


def prom_query(url: str, promql: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Run an instant query against Prometheus at ``url``; return ``data.result`` (a vector).

    Raises RuntimeError with Prometheus's own error text if the query is rejected.
    """
    status, body = http_get(f"{url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': promql})}", timeout)
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as e:
        raise RuntimeError(f"Prometheus at {url} answered HTTP {status} with non-JSON: {body[:300]!r}") from e
    if payload.get("status") != "success":
        raise RuntimeError(f"Prometheus rejected {promql!r}: {payload.get('errorType')}: {payload.get('error')}")
    result: list[dict[str, Any]] = payload["data"]["result"]
    return result


def prom_scalar(url: str, promql: str) -> float | None:
    """The single value of a query that yields one sample (e.g. a ``sum(...)``), else None."""
    result = prom_query(url, promql)
    if len(result) != 1:
        return None
    return float(result[0]["value"][1])
