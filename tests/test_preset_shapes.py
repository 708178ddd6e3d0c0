"""The simulator's per-preset metric shapes meet the queries each preset renders (no cluster)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, get_args

import pytest
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from e2e import preset_shapes
from e2e.traffic import METRIC_PRESETS, RequestCounters, pod_from_env
from rollguard.api.spec import MetricCheck, MetricPreset, MetricTemplate
from rollguard.core.queries import QueryError, Target, metric_query, render

PROMQL_FUNCTIONS = {"sum", "rate", "increase", "histogram_quantile", "vector", "by", "avg", "avg_over_time"}


class _Snapshot(Collector):
    def __init__(self, snapshot: preset_shapes.Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from preset_shapes.families(self.snapshot)


def scrape(preset: str, error_rate: float = 0.25, requests: float = 100.0) -> dict[str, list[Any]]:
    """The text a scrape of one simulated pod returns, parsed: sample name -> samples."""
    pod = pod_from_env(
        uid="u",
        namespace="ml",
        name="fraud-0123abcdef-7d9f8b6c5d-x2k4p",
        labels={"rollguard.io/model-deployment": "fraud"},
        env={"MODEL_NAME": "fraud", "MODEL_VERSION": "1.1.0", "SIMULATED_METRIC_PRESET": preset},
    )
    counters = RequestCounters()
    counters.advance(rps=requests, error_rate=error_rate, seconds=1.0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot([(pod, counters)]))
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def series_names(query: str) -> tuple[set[str], set[str]]:
    """(metric names, __name__ regexes) a PromQL query selects."""
    names = {n for n in re.findall(r"([A-Za-z_:][\w:]*)\{", query) if n not in PROMQL_FUNCTIONS}
    return names, set(re.findall(r'__name__=~"([^"]+)"', query))


def test_the_simulator_speaks_every_preset() -> None:
    assert set(METRIC_PRESETS) == set(get_args(MetricPreset)) == set(preset_shapes.SHAPES), (
        "every analysis.metricPreset needs a simulated shape, and no shape is for an unknown preset"
    )


def _supported() -> list[tuple[Any, Any]]:
    """(preset, template) pairs a preset renders; the others are refused (tested in test_queries.py)."""
    pairs = []
    for preset in get_args(MetricPreset):
        for template in get_args(MetricTemplate):
            try:
                metric_query(MetricCheck(name="c", template=template, threshold_range={"max": 1}), preset)
            except QueryError:
                continue
            pairs.append((preset, template))
    return pairs


@pytest.mark.parametrize(("preset", "template"), _supported())
def test_every_series_a_preset_queries_is_in_its_shape_with_namespace_and_pod(preset: Any, template: Any) -> None:
    built = metric_query(MetricCheck(name="c", template=template, threshold_range={"max": 1}), preset)
    target = Target("ml", "fraud", "1.1.0", "fraud-0123abcdef", "1m", "fraud")
    exported = scrape(preset)
    for query in (built.value, built.samples or ""):
        names, patterns = series_names(render(query, target))
        for name in names:
            assert name in exported, f"{preset} {template} queries {name}, the shape exports {sorted(exported)}"
            assert all({"namespace", "pod"} <= set(s.labels) for s in exported[name]), f"{name} lacks namespace/pod"
        for pattern in patterns:
            assert any(re.fullmatch(pattern, n) for n in exported), f"nothing exported matches {pattern}"


@pytest.mark.parametrize(
    ("preset", "failures", "failure_labels"),
    [
        ("rollguard", "model_requests_total", {"code": "500"}),
        ("mlserver", "model_infer_request_failure_total", {"model": "fraud", "version": "None"}),
        ("triton", "nv_inference_request_failure", {"reason": "BACKEND", "version": "1"}),
        ("vllm", "http_requests_total", {"status": "5xx"}),
    ],
)
def test_failed_requests_are_counted_where_the_server_counts_them(
    preset: str, failures: str, failure_labels: dict[str, str]
) -> None:
    found = [s for s in scrape(preset)[failures] if failure_labels.items() <= s.labels.items()]
    assert [s.value for s in found] == [25.0], f"25 of 100 requests failed; {failures}: {found}"


def test_kserve_counts_every_predict_and_no_errors() -> None:
    exported = scrape("kserve")
    assert [s.value for s in exported["request_predict_seconds_count"]] == [100.0], "every predict is timed"
    assert not [n for n in exported if "error" in n or "fail" in n], f"KServe exports no error counter: {exported}"
