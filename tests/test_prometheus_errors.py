"""The Prometheus adapter against a local HTTP server speaking the query API, errors told apart by kind.

A real Prometheus answers a mistyped query with 400 `bad_data` (the check's own fault), and is
unreachable or answers 5xx in an outage; only the second kind may open the endpoint's circuit
breaker. The server also answers in shapes a real Prometheus never uses (a proxy or a stand-in
could), each of which must be "cannot measure" for that round, never an exception out of a pass.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import REGISTRY

from rollguard import reconciler
from rollguard.adapters.prometheus import (
    Prometheus,
    PrometheusBadAnswerError,
    PrometheusBadQueryError,
    PrometheusUnavailableError,
    endpoint_of,
)
from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import CheckResult, RevisionRef
from rollguard.core import clock, plan
from rollguard.core.builders import revision_ref
from rollguard.core.naming import revision_of, template_of
from rollguard.settings import Settings
from tests.test_rollout import Cluster, condition, reach_weight, reasons, spec_for

GOOD = json.dumps(
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.25"]}]}}
)
PARSE_ERROR = 'invalid parameter "query": 1:30: parse error: unexpected end of input inside brackets'


def refusal(error_type: str, error: str) -> str:
    return json.dumps({"status": "error", "errorType": error_type, "error": error})


def vector(*values: Any) -> str:
    result = [{"metric": {"pod": f"p{i}"}, "value": [1, v]} for i, v in enumerate(values)]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})


@dataclass
class Reply:
    status: int = 200
    body: str = GOOD
    delay_seconds: float = 0.0


@dataclass
class FakePrometheusServer:
    """Answers /api/v1/query from a table keyed by the query; records every query it gets."""

    replies: dict[str, Reply] = field(default_factory=dict)
    default: Reply = field(default_factory=Reply)
    queries: list[str] = field(default_factory=list)

    def start(self) -> FakePrometheusServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                params = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                query = params.get("query", [""])[0]
                fake.queries.append(query)
                reply = fake.replies.get(query, fake.default)
                time.sleep(reply.delay_seconds)
                body = reply.body.encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (a timeout test)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakePrometheusServer]:
    server = FakePrometheusServer().start()
    yield server
    server.stop()


def client(url: str, **overrides: Any) -> Prometheus:
    fields: dict[str, Any] = {
        "prometheus_url": url,
        "prometheus_timeout_seconds": 0.5,
        "prometheus_breaker_failures": 3,
        "prometheus_breaker_reset_seconds": 60.0,
        "prometheus_query_attempts": 3,
        "prometheus_retry_max_seconds": 0.02,
        **overrides,
    }
    return Prometheus(Settings(**fields))


def breaker_open(url: str) -> float | None:
    return REGISTRY.get_sample_value("rollguard_prometheus_circuit_open", {"endpoint": endpoint_of(url)})


def scalar(prometheus: Prometheus, query: str) -> float | None:
    return asyncio.run(prometheus.scalar(query))


# -- the check's own fault ----------------------------------------------------------------------
def test_a_refused_query_names_prometheus_reason_and_never_opens_the_breaker(fake: FakePrometheusServer) -> None:
    fake.replies["sum(rate(x["] = Reply(400, refusal("bad_data", PARSE_ERROR))
    prometheus = client(fake.url)
    for _ in range(10):  # far beyond the 3 failures that open the breaker
        with pytest.raises(PrometheusBadQueryError) as refused:
            scalar(prometheus, "sum(rate(x[")
    assert str(refused.value) == f"bad_data: {PARSE_ERROR}", f"Prometheus' own words: {refused.value}"
    assert fake.queries.count("sum(rate(x[") == 10, "a refused query is asked once per round, never retried"
    assert breaker_open(fake.url) == 0, "refused queries are the check's fault, not an outage"
    assert scalar(prometheus, "up") == 0.25, "another check's query still gets its answer"


def test_an_unexecutable_query_422_is_refused_too(fake: FakePrometheusServer) -> None:
    fake.default = Reply(422, refusal("execution", "many-to-many matching not allowed"))
    with pytest.raises(PrometheusBadQueryError, match="execution: many-to-many matching not allowed"):
        scalar(client(fake.url), "a / on() b")
    assert breaker_open(fake.url) == 0


# -- outages --------------------------------------------------------------------------------------
def test_5xx_is_retried_with_back_off_then_counts_toward_the_breaker(fake: FakePrometheusServer) -> None:
    fake.default = Reply(503, refusal("unavailable", "TSDB not ready"))
    prometheus = client(fake.url)
    for failure in range(1, 4):
        with pytest.raises(PrometheusUnavailableError, match="answered unavailable: TSDB not ready"):
            scalar(prometheus, "up")
        assert len(fake.queries) == 3 * failure, f"3 attempts per query, got {len(fake.queries)} after {failure}"
    assert breaker_open(fake.url) == 1, "3 failed queries in a row open the breaker"
    with pytest.raises(PrometheusUnavailableError, match="circuit breaker open after 3 failures"):
        scalar(prometheus, "up")
    assert len(fake.queries) == 9, "an open breaker does not ask Prometheus"


def test_connection_refused_opens_the_breaker_of_that_endpoint_only(fake: FakePrometheusServer) -> None:
    down = FakePrometheusServer().start()
    down_url = down.url
    down.stop()  # nothing listens there any more
    unreachable = client(down_url, prometheus_query_attempts=1)
    for _ in range(3):
        with pytest.raises(PrometheusUnavailableError, match="unreachable"):
            scalar(unreachable, "up")
    assert breaker_open(down_url) == 1, "connection errors are an outage of that endpoint"
    assert breaker_open(fake.url) in (0, None), "another endpoint's breaker is untouched"
    assert scalar(client(fake.url), "up") == 0.25, "and its queries still run"


def test_a_timeout_is_an_outage(fake: FakePrometheusServer) -> None:
    fake.default = Reply(delay_seconds=1.0)
    with pytest.raises(PrometheusUnavailableError, match=r"did not answer within 0.2s"):
        scalar(client(fake.url, prometheus_timeout_seconds=0.2, prometheus_query_attempts=1), "up")


def test_refused_credentials_are_an_outage_not_retried(fake: FakePrometheusServer) -> None:
    fake.default = Reply(401, "Unauthorized")
    with pytest.raises(PrometheusUnavailableError, match="answered HTTP 401: Unauthorized"):
        scalar(client(fake.url), "up")
    assert len(fake.queries) == 1, "retrying refused credentials cannot help"


def test_a_success_closes_the_breaker_again(fake: FakePrometheusServer) -> None:
    fake.default = Reply(500, "boom")
    prometheus = client(fake.url, prometheus_breaker_reset_seconds=0.0, prometheus_query_attempts=1)
    for _ in range(3):
        with pytest.raises(PrometheusUnavailableError):
            scalar(prometheus, "up")
    assert breaker_open(fake.url) == 1
    fake.default = Reply()
    assert scalar(prometheus, "up") == 0.25, "half-open after reset: one query goes through"
    assert breaker_open(fake.url) == 0, "and its success closes the breaker"


def test_the_endpoint_label_carries_no_credentials() -> None:
    assert (
        endpoint_of("https://user:secret@prom.example:9090/prometheus/?x=1") == "https://prom.example:9090/prometheus"
    )


# -- answers that are not one number -------------------------------------------------------------
STRANGE = {
    "a matrix": (json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}), "returns a matrix"),
    "a string": (json.dumps({"status": "success", "data": {"resultType": "string", "result": [1, "a"]}}), "a string"),
    "two series": (vector("1", "2"), "returns 2 series; aggregate it"),
    "a non-numeric value": (vector("fast"), "value 'fast' is not a number"),
    "a boolean value": (vector(True), "value 'True' is not a number"),
    "a sample without a value": (
        json.dumps({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}}),
        "is not [time, value]",
    ),
    "no data key": (json.dumps({"status": "success"}), "not a Prometheus query answer"),
    "result not a list": (
        json.dumps({"status": "success", "data": {"resultType": "vector", "result": {"a": 1}}}),
        "unexpected result",
    ),
    "an unknown result type": (
        json.dumps({"status": "success", "data": {"resultType": "table", "result": []}}),
        "unexpected result of type 'table'",
    ),
    "an error status on HTTP 200": (refusal("bad_data", "odd"), "not a Prometheus query answer"),
    "a JSON list": ("[1, 2]", "not a Prometheus query answer"),
    "HTML": ("<html>login</html>", "the answer is not JSON: <html>login</html>"),
}


@pytest.mark.parametrize("shape", list(STRANGE))
def test_an_answer_that_is_not_one_number_cannot_be_measured(fake: FakePrometheusServer, shape: str) -> None:
    body, says = STRANGE[shape]
    fake.default = Reply(200, body)
    prometheus = client(fake.url)
    for _ in range(5):
        with pytest.raises(PrometheusBadAnswerError) as error:
            scalar(prometheus, "q")
    assert says in str(error.value), f"{shape}: {error.value}"
    assert breaker_open(fake.url) == 0, "Prometheus answered: its breaker stays closed"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (vector("0.5"), 0.5),
        (vector(3), 3.0),
        (json.dumps({"status": "success", "data": {"resultType": "scalar", "result": [1, "7"]}}), 7.0),
        (vector(), None),
        (vector("NaN"), None),
        (vector("+Inf"), None),
    ],
)
def test_one_number_or_no_data(fake: FakePrometheusServer, body: str, expected: float | None) -> None:
    fake.default = Reply(200, body)
    assert scalar(client(fake.url), "q") == expected


# -- a whole analysis round through the reconciler -------------------------------------------------
ANALYSIS = {
    "interval": "30s",
    "metricsUnavailable": {"deadline": "10m", "action": "Rollback"},
    "metrics": [
        {"name": "error-rate", "template": "error-rate", "thresholdRange": {"max": 0.01}, "minSampleCount": 10_000_000},
        {
            "name": "vs-stable",
            "query": 'avg(model_latency_seconds{version="{{ version }}"})',
            "relativeToStable": {"maxRatio": 1.2, "minAbsolute": 0.0},
        },
        {
            "name": "typo",
            "query": 'sum(rate(model_requests_total{version="{{ version }}"}[',
            "thresholdRange": {"max": 1},
        },
    ],
}


def planned_round() -> tuple[list[plan.PlannedCheck], RevisionRef, RevisionRef]:
    def spec(version: str) -> ModelDeploymentSpec:
        return ModelDeploymentSpec.model_validate(
            {
                "model": {"name": "fraud", "version": version, "uri": f"s3://m/{version}"},
                "runtime": {"image": "docker.io/seldonio/mlserver:1.6.1"},
                "analysis": ANALYSIS,
            }
        )

    canary, stable = (revision_ref(template_of(spec(v)), revision_of(template_of(spec(v)))) for v in ("2.0.0", "1.0.0"))
    return plan.render_all(spec("2.0.0"), "fraud", "ml", canary, stable), canary, stable


def test_a_round_with_failed_side_queries_and_strange_answers_is_not_judged(fake: FakePrometheusServer) -> None:
    planned, _, _ = planned_round()
    error_rate, latency, typo = planned
    assert error_rate.samples_query and latency.stable_query, "the round asks for samples and the stable side"
    fake.default = Reply(200, vector("9.9"))  # every value is far worse than every limit
    fake.replies[error_rate.samples_query] = Reply(503, refusal("timeout", "query timed out"))
    fake.replies[latency.stable_query] = Reply(200, vector("slow"))
    fake.replies[typo.query] = Reply(400, refusal("bad_data", PARSE_ERROR))
    prometheus = client(fake.url, prometheus_query_attempts=1)
    now = clock.iso(datetime.now(UTC))
    results = asyncio.run(reconciler._measure(prometheus, planned, [], now))
    by_name = {r.name: r for r in results}
    assert (by_name["error-rate"].phase, by_name["vs-stable"].phase, by_name["typo"].phase) == (
        "Error",
        "Error",
        "Invalid",
    ), [(r.name, r.phase, r.message) for r in results]
    assert "sample-count query failed, so the check is not judged" in by_name["error-rate"].message
    assert "query timed out" in by_name["error-rate"].message, by_name["error-rate"].message
    assert "stable-side query failed, so the check is not judged" in by_name["vs-stable"].message
    assert "value 'slow' is not a number" in by_name["vs-stable"].message, by_name["vs-stable"].message
    assert PARSE_ERROR in by_name["typo"].message, by_name["typo"].message
    assert all(r.failures == 0 for r in results), "nothing was measured bad"


@dataclass
class MeasuredCluster(Cluster):
    """The simulated cluster of test_rollout, its rounds measured by the reconciler through the real adapter."""

    adapter: Prometheus | None = None

    def analysis(self) -> list[CheckResult] | None:
        due = plan.due(self.spec, self.status, self.now, paused=False)
        if due is None or self.adapter is None:
            return None
        self.rounds += 1
        planned = plan.render_all(self.spec, "fraud", "ml-prod", *due)
        tracked = self.status.rollout or self.status.watch
        previous = tracked.checks if tracked else []
        return asyncio.run(reconciler._measure(self.adapter, planned, previous, clock.iso(self.now)))


def test_strange_answers_every_round_make_metrics_unavailable_not_a_crash(fake: FakePrometheusServer) -> None:
    checks = {
        "interval": "30s",
        "metrics": [{"name": "error-rate", "template": "error-rate", "thresholdRange": {"max": 1}}],
    }
    cluster = MeasuredCluster(spec_for("1.0.0", analysis=checks), adapter=client(fake.url))
    cluster.run_until(lambda s: s.phase == "Ready", "1.0.0 serving")
    cluster.set_spec(spec_for("2.0.0", analysis=checks))
    reach_weight(cluster)
    fake.default = Reply(200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}))
    cluster.run_until(lambda s: cluster.rounds >= 3, "three rounds of matrix answers")
    metrics = condition(cluster.status, "MetricsAvailable")
    assert (metrics.status, metrics.reason) == ("False", "QueryFailed"), metrics
    assert "error-rate" in metrics.message and "returns a matrix" in metrics.message, metrics.message
    rollout = cluster.status.rollout
    assert rollout is not None and (rollout.step_index, rollout.failures) == (0, 0), "held in place, nothing judged"
    assert "MetricsUnavailable" in reasons(cluster.events, "Warning"), reasons(cluster.events)
