"""Prometheus queries behind a small interface: errors told apart by kind, retries with back-off,
and one circuit breaker per Prometheus endpoint.

What a query can end in (Prometheus HTTP API, docs/querying/api.md "Format overview": 400 Bad
Request for bad parameters, 422 for an expression that cannot be executed, 503 on timeout):
- one number, or None for "no data" (an empty result or NaN is never zero);
- PrometheusBadQueryError: 400/422 (`bad_data`, `execution`), the check's own query is wrong. Never
  retried and never counted by the breaker: one object's typo cannot stop another's analysis;
- PrometheusUnavailableError: no answer (connection, timeout), 5xx, or another 4xx (credentials, wrong
  URL, throttling). Transient ones are retried with back-off; all count toward the endpoint's breaker;
- PrometheusBadAnswerError: a 200 that is not exactly one number (several series, a matrix or string,
  a non-numeric value, not the query API's JSON). That round cannot measure the check.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import requests
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from rollguard import metrics
from rollguard.settings import Settings


class PrometheusQueryError(Exception):
    """Prometheus gave no usable number for a query (the check cannot be measured this round)."""


class PrometheusBadQueryError(PrometheusQueryError):
    """Prometheus refused the query itself (HTTP 400/422): only a spec change can fix it."""


class PrometheusUnavailableError(PrometheusQueryError):
    """The endpoint did not answer properly (unreachable, timeout, 5xx, auth): an outage."""

    def __init__(self, message: str, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class PrometheusBadAnswerError(PrometheusQueryError):
    """Prometheus answered, but not with exactly one number."""


class MetricsProvider(Protocol):
    async def scalar(self, query: str) -> float | None: ...


@dataclass
class CircuitBreaker:
    """Stops hammering a Prometheus endpoint that is down; half-opens after `reset_seconds`."""

    failures_to_open: int
    reset_seconds: float
    endpoint: str = ""
    consecutive_failures: int = 0
    opened_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def allow(self, now: float) -> bool:
        with self._lock:
            return self.opened_at is None or now - self.opened_at >= self.reset_seconds

    def record(self, ok: bool, now: float) -> None:
        with self._lock:
            if ok:
                self.consecutive_failures, self.opened_at = 0, None
            else:
                self.consecutive_failures += 1
                if self.consecutive_failures >= self.failures_to_open:
                    self.opened_at = now
            metrics.BREAKER_OPEN.labels(self.endpoint).set(1 if self.opened_at is not None else 0)


_BREAKERS: dict[str, CircuitBreaker] = {}
_BREAKERS_LOCK = threading.Lock()


def breaker_for(endpoint: str, failures_to_open: int, reset_seconds: float) -> CircuitBreaker:
    """The one breaker of a Prometheus endpoint, shared by every client of that endpoint."""
    with _BREAKERS_LOCK:
        breaker = _BREAKERS.get(endpoint)
        if breaker is None:
            breaker = _BREAKERS[endpoint] = CircuitBreaker(failures_to_open, reset_seconds, endpoint)
            metrics.BREAKER_OPEN.labels(endpoint).set(0)
        return breaker


def endpoint_of(url: str) -> str:
    """The URL without credentials or query: safe for a metric label and a status message."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _clip(text: object, limit: int = 300) -> str:
    value = str(text)
    return value if len(value) <= limit else value[:limit] + "..."


def _refusal(response: requests.Response) -> str:
    """Prometheus' own words for an error answer: `errorType: error`, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        return _clip(f"{body.get('errorType', 'error')}: {body['error']}", 600)
    return _clip(f"HTTP {response.status_code}: {response.text.strip()}")


def _number(sample: object) -> float | None:
    if not (isinstance(sample, list) and len(sample) == 2):
        raise PrometheusBadAnswerError(f"sample {_clip(sample)} is not [time, value]")
    raw = sample[1]
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise PrometheusBadAnswerError(f"value {_clip(raw)!r} is not a number")
    try:
        number = float(raw)
    except ValueError:
        raise PrometheusBadAnswerError(f"value {_clip(raw)!r} is not a number") from None
    return None if math.isnan(number) or math.isinf(number) else number


def parse_scalar(payload: Any) -> float | None:
    """One number from an /api/v1/query answer; None for no data; PrometheusBadAnswerError for anything else."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(payload, dict) or payload.get("status") != "success" or not isinstance(data, dict):
        raise PrometheusBadAnswerError(f"not a Prometheus query answer: {_clip(payload)}")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return _number(result)
    if kind in ("matrix", "string"):
        raise PrometheusBadAnswerError(
            f"the query returns a {kind}; a check needs one number (a scalar or a vector of one series)"
        )
    if kind != "vector" or not isinstance(result, list):
        raise PrometheusBadAnswerError(f"unexpected result of type {_clip(kind)!r}: {_clip(result)}")
    if not result:
        return None
    if len(result) > 1:
        raise PrometheusBadAnswerError(f"the query returns {len(result)} series; aggregate it to one (e.g. sum(...))")
    series = result[0]
    return _number(series.get("value") if isinstance(series, dict) else None)


class Prometheus:
    """Instant queries with a requests session of our own: prometheus-api-client's custom_query
    (prometheus_connect.py) folds every non-200 into one exception text and drops resultType."""

    def __init__(self, settings: Settings) -> None:
        assert settings.prometheus_url
        self.url = settings.prometheus_url.rstrip("/")
        self.endpoint = endpoint_of(self.url)
        self._session = requests.Session()
        if settings.prometheus_bearer_token_file:
            token = Path(settings.prometheus_bearer_token_file).read_text().strip()
            self._session.headers["Authorization"] = f"Bearer {token}"
        if settings.prometheus_username and settings.prometheus_password_file:
            password = Path(settings.prometheus_password_file).read_text().strip()
            self._session.auth = (settings.prometheus_username, password)
        self._session.verify = settings.prometheus_ca_file or not settings.prometheus_insecure_skip_verify
        self._timeout = settings.prometheus_timeout_seconds
        self._breaker = breaker_for(
            self.endpoint, settings.prometheus_breaker_failures, settings.prometheus_breaker_reset_seconds
        )
        # Queries wait in their own threads: a slow Prometheus never delays Kubernetes API calls.
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, settings.prometheus_max_concurrent_queries), thread_name_prefix="prometheus"
        )
        self._retrying = Retrying(
            retry=retry_if_exception(lambda error: isinstance(error, PrometheusUnavailableError) and error.transient),
            stop=stop_after_attempt(max(1, settings.prometheus_query_attempts)),
            wait=wait_exponential_jitter(multiplier=0.2, max=settings.prometheus_retry_max_seconds),
            reraise=True,
        )

    def _get(self, query: str) -> Any:
        """One attempt: the decoded JSON of a 200 answer, or the error of its kind."""
        try:
            response = self._session.get(
                f"{self.url}/api/v1/query",
                params={"query": query, "timeout": f"{self._timeout:g}s"},
                timeout=self._timeout,
            )
        except requests.Timeout:
            raise PrometheusUnavailableError(
                f"Prometheus {self.endpoint} did not answer within {self._timeout:g}s"
            ) from None
        except requests.RequestException as error:
            raise PrometheusUnavailableError(
                f"Prometheus {self.endpoint} unreachable ({type(error).__name__}: {_clip(error, 200)})"
            ) from None
        status = response.status_code
        if status in (400, 422):
            raise PrometheusBadQueryError(_refusal(response))
        if status != 200:
            transient = status >= 500 or status == 429
            raise PrometheusUnavailableError(f"Prometheus {self.endpoint} answered {_refusal(response)}", transient)
        try:
            return response.json()
        except ValueError:
            raise PrometheusBadAnswerError(f"the answer is not JSON: {_clip(response.text.strip())}") from None

    def _scalar_sync(self, query: str) -> float | None:
        breaker = self._breaker
        if not breaker.allow(time.monotonic()):
            metrics.QUERY_ERRORS.inc()
            raise PrometheusUnavailableError(
                f"Prometheus {self.endpoint}: circuit breaker open after {breaker.consecutive_failures} failures "
                f"in a row; trying again {breaker.reset_seconds:g}s after it opened",
                transient=False,
            )
        started = time.perf_counter()
        try:
            payload = self._retrying(self._get, query)
        except PrometheusUnavailableError:
            breaker.record(False, time.monotonic())
            metrics.QUERY_ERRORS.inc()
            raise
        except PrometheusQueryError:
            metrics.QUERY_ERRORS.inc()  # the endpoint answered: no news for the breaker
            raise
        finally:
            metrics.QUERY_SECONDS.observe(time.perf_counter() - started)
        breaker.record(True, time.monotonic())
        try:
            return parse_scalar(payload)
        except PrometheusBadAnswerError:
            metrics.QUERY_ERRORS.inc()
            raise

    async def scalar(self, query: str) -> float | None:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._scalar_sync, query)
