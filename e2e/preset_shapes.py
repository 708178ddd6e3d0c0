"""The series each model server really exports, for simulated pods (one shape per metric preset).

A pod's ``SIMULATED_METRIC_PRESET`` env picks whose names and labels it exports; the numbers come
from its other ``SIMULATED_*`` env (see ``e2e/traffic.py``). Every shape carries ``namespace`` and
``pod``, as a cluster's Prometheus would attach them (the simulator is scraped with honor_labels),
and the server's own model/version labels with the values the server would put there, which are
not rollguard's version: that is what the presets must not rely on. Sources, as cited next to
each preset in ``operator/rollguard/core/queries.py``:

* ``rollguard``: model_requests_total{code}, model_request_duration_seconds (histogram)
* ``mlserver`` (1.7.1): model_infer_request_success_total / _failure_total{model,version="None"},
  Summary model_infer_request_duration, and the REST middleware's histogram
  rest_server_request_duration_seconds{app_name,method,path,status_code}
* ``triton``: nv_inference_request_success / _failure{model,version="1"[,reason]} (no _total) and
  the counter nv_inference_request_duration_us
* ``kserve``: Histogram request_predict_seconds{model_name} (no error counter)
* ``vllm``: http_requests_total{handler,method,status="2xx"|"5xx"}, Histograms
  vllm:e2e_request_latency_seconds, vllm:time_to_first_token_seconds,
  vllm:inter_token_latency_seconds{model_name,engine}

Drift gauges (rollguard's own contract) are exported for every shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from e2e.traffic import TOKENS_PER_REQUEST, RequestCounters, SimulatedPod, histogram_buckets

POD_LABELS = ["namespace", "pod"]
Snapshot = Sequence[tuple[SimulatedPod, RequestCounters]]


class Families:
    """Metric families by name, created on first use so that each name is exported once."""

    def __init__(self) -> None:
        self.by_name: dict[str, Metric] = {}

    def get(self, name: str, make: Callable[[], Metric]) -> Metric:
        if name not in self.by_name:
            self.by_name[name] = make()
        return self.by_name[name]

    def counter(self, name: str, labels: list[str]) -> CounterMetricFamily:
        family = self.get(name, lambda: CounterMetricFamily(name, name, labels=labels))
        assert isinstance(family, CounterMetricFamily)
        return family

    def plain_counter(self, name: str) -> Metric:
        """A counter whose samples keep their exact name (Triton's have no _total suffix)."""
        return self.get(name, lambda: Metric(name, name, "unknown"))

    def histogram(self, name: str, labels: list[str]) -> HistogramMetricFamily:
        family = self.get(name, lambda: HistogramMetricFamily(name, name, labels=labels))
        assert isinstance(family, HistogramMetricFamily)
        return family

    def summary(self, name: str, labels: list[str]) -> SummaryMetricFamily:
        family = self.get(name, lambda: SummaryMetricFamily(name, name, labels=labels))
        assert isinstance(family, SummaryMetricFamily)
        return family

    def gauge(self, name: str, labels: list[str]) -> GaugeMetricFamily:
        family = self.get(name, lambda: GaugeMetricFamily(name, name, labels=labels))
        assert isinstance(family, GaugeMetricFamily)
        return family


def _histogram(family: HistogramMetricFamily, values: list[str], seconds: float, count: int) -> None:
    family.add_metric(values, histogram_buckets(seconds, count), count * seconds)


def _rollguard(out: Families, pod: SimulatedPod, counters: RequestCounters) -> None:
    labels = [*POD_LABELS, "model", "version"]
    values = [pod.namespace, pod.name, pod.model, pod.version]
    requests = out.counter("model_requests", [*labels, "code"])
    requests.add_metric([*values, "200"], counters.ok_total)
    requests.add_metric([*values, "500"], counters.error_total)
    _histogram(out.histogram("model_request_duration_seconds", labels), values, pod.latency_seconds, counters.total)


def _mlserver(out: Families, pod: SimulatedPod, counters: RequestCounters) -> None:
    labels = [*POD_LABELS, "model", "version"]
    values = [pod.namespace, pod.name, pod.model, "None"]  # clients call /v2/models/<name>/infer
    out.counter("model_infer_request_success", labels).add_metric(values, counters.ok_total)
    out.counter("model_infer_request_failure", labels).add_metric(values, counters.error_total)
    out.summary("model_infer_request_duration", labels).add_metric(
        values, count_value=counters.total, sum_value=counters.total * pod.latency_seconds
    )
    rest = out.histogram(
        "rest_server_request_duration_seconds", [*POD_LABELS, "app_name", "method", "path", "status_code"]
    )
    for code, count in (("200", counters.ok_total), ("500", counters.error_total)):
        path = "/v2/models/{model_name}/infer"
        _histogram(rest, [pod.namespace, pod.name, "mlserver", "POST", path, code], pod.latency_seconds, count)


def _triton(out: Families, pod: SimulatedPod, counters: RequestCounters) -> None:
    labels = {"namespace": pod.namespace, "pod": pod.name, "model": pod.model, "version": "1"}
    out.plain_counter("nv_inference_request_success").add_sample(
        "nv_inference_request_success", labels, counters.ok_total
    )
    out.plain_counter("nv_inference_request_failure").add_sample(
        "nv_inference_request_failure", {**labels, "reason": "BACKEND"}, counters.error_total
    )
    out.plain_counter("nv_inference_request_duration_us").add_sample(
        "nv_inference_request_duration_us", labels, round(counters.ok_total * pod.latency_seconds * 1e6)
    )


def _kserve(out: Families, pod: SimulatedPod, counters: RequestCounters) -> None:
    predict = out.histogram("request_predict_seconds", [*POD_LABELS, "model_name"])
    _histogram(predict, [pod.namespace, pod.name, pod.model], pod.latency_seconds, counters.total)


def _vllm(out: Families, pod: SimulatedPod, counters: RequestCounters) -> None:
    http = out.counter("http_requests", [*POD_LABELS, "handler", "method", "status"])
    for status, count in (("2xx", counters.ok_total), ("5xx", counters.error_total)):
        http.add_metric([pod.namespace, pod.name, "/v1/completions", "POST", status], count)
    labels, values = [*POD_LABELS, "model_name", "engine"], [pod.namespace, pod.name, pod.model, "0"]
    finished = counters.ok_total  # a request that failed never finishes generating
    for name, seconds, count in (
        ("vllm:e2e_request_latency_seconds", pod.latency_seconds, finished),
        ("vllm:time_to_first_token_seconds", pod.time_to_first_token_seconds, finished),
        ("vllm:inter_token_latency_seconds", pod.inter_token_seconds, finished * (TOKENS_PER_REQUEST - 1)),
    ):
        _histogram(out.histogram(name, labels), values, seconds, count)


SHAPES: dict[str, Callable[[Families, SimulatedPod, RequestCounters], None]] = {
    "rollguard": _rollguard,
    "mlserver": _mlserver,
    "triton": _triton,
    "kserve": _kserve,
    "vllm": _vllm,
}


def families(snapshot: Snapshot) -> Iterator[Metric]:
    """Every pod's series in the shape its preset names, plus rollguard's drift gauges."""
    out = Families()
    labels = [*POD_LABELS, "model", "version"]
    for pod, counters in snapshot:
        SHAPES[pod.metric_preset](out, pod, counters)
        values = [pod.namespace, pod.name, pod.model, pod.version]
        out.gauge("model_feature_drift_score", labels).add_metric(values, pod.feature_drift)
        out.gauge("model_prediction_drift_score", labels).add_metric(values, pod.prediction_drift)
        out.counter("model_drift_samples", labels).add_metric(values, counters.total)
    yield from out.by_name.values()
