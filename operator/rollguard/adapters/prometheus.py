"""Prometheus queries behind a small interface, with retries and a circuit breaker.

An empty result or NaN is "no data" (None), never zero.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed
from urllib3.util.retry import Retry

from rollguard import metrics
from rollguard.settings import Settings


class PrometheusQueryError(Exception):
    """Prometheus could not answer (unreachable, error status, bad query, breaker open)."""


class MetricsProvider(Protocol):
    async def scalar(self, query: str) -> float | None: ...


@dataclass
class CircuitBreaker:
    """Stops hammering a Prometheus that is down; half-opens after `reset_seconds`."""

    failures_to_open: int
    reset_seconds: float
    consecutive_failures: int = 0
    opened_at: float | None = None

    def allow(self, now: float) -> bool:
        return self.opened_at is None or now - self.opened_at >= self.reset_seconds

    def record(self, ok: bool, now: float) -> None:
        if ok:
            self.consecutive_failures, self.opened_at = 0, None
        else:
            self.consecutive_failures += 1
            if self.consecutive_failures >= self.failures_to_open:
                self.opened_at = now
        metrics.BREAKER_OPEN.set(1 if self.opened_at is not None else 0)


class Prometheus:
    def __init__(self, settings: Settings) -> None:
        assert settings.prometheus_url
        headers = None
        if settings.prometheus_bearer_token_file:
            token = Path(settings.prometheus_bearer_token_file).read_text().strip()
            headers = {"Authorization": f"Bearer {token}"}
        auth = None
        if settings.prometheus_username and settings.prometheus_password_file:
            auth = (settings.prometheus_username, Path(settings.prometheus_password_file).read_text().strip())
        self._client = PrometheusConnect(
            url=settings.prometheus_url,
            headers=headers,
            auth=auth,
            disable_ssl=settings.prometheus_insecure_skip_verify,
            retry=Retry(total=0),
            timeout=math.ceil(settings.prometheus_timeout_seconds),
        )
        if settings.prometheus_ca_file:
            self._client._session.verify = settings.prometheus_ca_file
        self._breaker = CircuitBreaker(settings.prometheus_breaker_failures, settings.prometheus_breaker_reset_seconds)
        self.url = settings.prometheus_url

    @retry(
        retry=retry_if_exception_type(requests.ConnectionError),
        stop=stop_after_attempt(2),
        wait=wait_fixed(0.2),
        reraise=True,
    )
    def _query(self, query: str) -> list[dict[str, object]]:
        return list(self._client.custom_query(query))

    def _scalar_sync(self, query: str) -> float | None:
        now = time.monotonic()
        if not self._breaker.allow(now):
            raise PrometheusQueryError(f"circuit breaker open after {self._breaker.consecutive_failures} failures")
        started = time.perf_counter()
        try:
            result = self._query(query)
        except (requests.RequestException, PrometheusApiClientException, ValueError) as error:
            self._breaker.record(False, now)
            metrics.QUERY_ERRORS.inc()
            raise PrometheusQueryError(_short(error)) from error
        finally:
            metrics.QUERY_SECONDS.observe(time.perf_counter() - started)
        self._breaker.record(True, now)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusQueryError(f"query returned {len(result)} series; aggregate it to one (e.g. sum(...))")
        value = result[0].get("value")
        number = float(value[1]) if isinstance(value, list) and len(value) == 2 else float("nan")
        return None if math.isnan(number) or math.isinf(number) else number

    async def scalar(self, query: str) -> float | None:
        return await asyncio.to_thread(self._scalar_sync, query)


def _short(error: Exception) -> str:
    text = str(error)
    if isinstance(error, requests.ConnectionError):
        return "Prometheus unreachable (connection refused or timed out)"
    return text if len(text) < 300 else text[:300] + "..."
