"""Built-in PromQL templates, metric presets, placeholder rendering, and what a round queries."""

from __future__ import annotations

from typing import Any

import pytest

from rollguard.api.spec import DriftGate, MetricCheck, ModelDeploymentSpec
from rollguard.core import builders, naming, plan
from rollguard.core.queries import KNOWN_PLACEHOLDERS, QueryError, Target, drift_query, metric_query, render

TARGET = Target(
    namespace="ml-prod",
    model="fraud-detector",
    version="1.4.0",
    deployment="fraud-detector-abc123",
    interval="2m",
    name="fraud",
)


def check(**fields: Any) -> MetricCheck:
    return MetricCheck.model_validate({"name": "c", "thresholdRange": {"max": 1}, **fields})


# -- rendering ---------------------------------------------------------------------------------
def test_every_placeholder_renders_to_its_target_value() -> None:
    query = "{{ namespace }}|{{ model }}|{{ version }}|{{ deployment }}|{{ interval }}|{{ name }}"
    assert render(query, TARGET) == "ml-prod|fraud-detector|1.4.0|fraud-detector-abc123|2m|fraud", (
        "each documented placeholder should be replaced by the target's value"
    )


@pytest.mark.parametrize("spelling", ["{{version}}", "{{ version }}", "{{   version\t}}"])
def test_placeholder_whitespace_is_optional(spelling: str) -> None:
    assert render(f"x{{v={spelling}}}", TARGET) == "x{v=1.4.0}", f"{spelling} should render like {{{{ version }}}}"


def test_promql_braces_and_regexes_are_left_alone() -> None:
    query = 'sum(rate(http_requests_total{job="m",code=~"5.."}[5m])) by (le)'
    assert render(query, TARGET) == query, "a query without placeholders should be returned unchanged"


def test_unknown_placeholder_names_itself_and_the_known_ones() -> None:
    with pytest.raises(QueryError) as error:
        render('rate(x{pod="{{ pod }}"}[1m])', TARGET)
    assert str(error.value) == (
        "unknown placeholder {{ pod }}; known: deployment, interval, model, name, namespace, version"
    ), f"the error should name the unknown placeholder and list the known ones, got {error.value}"


def test_known_placeholders_are_the_documented_ones() -> None:
    documented = MetricCheck.model_fields["query"].description or ""
    for placeholder in KNOWN_PLACEHOLDERS:
        assert f"{{{{ {placeholder} }}}}" in documented, f"{placeholder} is rendered but not documented on query"


# -- presets -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("preset", "errors_selector", "requests_metric"),
    [
        (
            "rollguard",
            'model_requests_total{namespace="ml-prod",model="fraud-detector",version="1.4.0",code=~"5.."}[2m]',
            "model_requests_total{",
        ),
        (
            "mlserver",
            'model_infer_request_failure{namespace="ml-prod",model_name="fraud-detector",model_version="1.4.0"}[2m]',
            "model_infer_request_success{",
        ),
        (
            "triton",
            'nv_inference_request_failure{namespace="ml-prod",model="fraud-detector",version="1.4.0"}[2m]',
            "nv_inference_request_success{",
        ),
    ],
)
def test_error_rate_per_preset(preset: Any, errors_selector: str, requests_metric: str) -> None:
    built = metric_query(check(template="error-rate"), preset)
    value = render(built.value, TARGET)
    assert errors_selector in value, f"{preset} error-rate should count {errors_selector}, got {value}"
    assert "or vector(0)) /" in value, f"no errors at all should read as 0, not as no data: {value}"
    assert requests_metric in value.split(") /", 1)[1], f"the denominator should be all requests: {value}"
    assert "{{" not in value, f"every placeholder should be rendered: {value}"
    samples = render(built.samples or "", TARGET)
    assert "increase(" in samples, f"the sample count should be requests over the window: {samples}"
    assert "rate(" not in samples.replace("increase(", ""), f"samples should count, not rate: {samples}"


def test_latency_uses_a_histogram_quantile_for_rollguard() -> None:
    value = render(metric_query(check(template="latency", quantile=0.95), "rollguard").value, TARGET)
    assert value.startswith("histogram_quantile(0.95, "), f"latency should be the configured quantile: {value}"
    assert "model_request_duration_seconds_bucket{" in value, f"latency should read the histogram: {value}"


def test_latency_for_triton_is_the_mean_in_seconds() -> None:
    value = render(metric_query(check(template="latency"), "triton").value, TARGET)
    assert "nv_inference_request_duration_us" in value, f"triton latency should use its duration counter: {value}"
    assert value.endswith("/ 1e6"), f"microseconds should be converted to seconds: {value}"


def test_latency_is_unsupported_for_mlserver_and_names_the_check() -> None:
    with pytest.raises(QueryError) as error:
        metric_query(check(name="p99-latency", template="latency"), "mlserver")
    message = str(error.value)
    assert message.startswith("check p99-latency:"), f"the error should name the check first, got {message!r}"
    assert "mlserver" in message, f"the error should name the preset, got {message!r}"
    assert "write the latency query yourself" in message, f"the error should say what to do, got {message!r}"


def test_request_rate_is_a_rate_of_requests() -> None:
    value = render(metric_query(check(template="request-rate"), "rollguard").value, TARGET)
    expected = 'sum(rate(model_requests_total{namespace="ml-prod",model="fraud-detector",version="1.4.0"}[2m]))'
    assert value == expected, f"request-rate should be the per-second rate of all requests, got {value}"


def test_custom_query_is_used_as_written_with_its_own_sample_query() -> None:
    built = metric_query(check(query="my_score{v='{{ version }}'}", sampleQuery="my_count"), "mlserver")
    assert (built.value, built.samples) == ("my_score{v='{{ version }}'}", "my_count"), (
        f"a custom query and sampleQuery should be kept as written, got {built}"
    )
    assert metric_query(check(query="q"), "rollguard").samples is None, "no sampleQuery means no sample count"


@pytest.mark.parametrize("kind", ["feature", "prediction"])
def test_drift_queries_average_the_score_and_count_scored_requests(kind: str) -> None:
    built = drift_query(DriftGate(name="drift", kind=kind, max_score=0.2))
    value = render(built.value, TARGET)
    assert f"avg_over_time(model_{kind}_drift_score{{" in value, f"{kind} drift should read its gauge: {value}"
    assert render(built.samples or "", TARGET).startswith("sum(increase(model_drift_samples_total{"), built.samples
    assert built.kind == "drift", f"a drift gate's query kind should be drift, got {built.kind}"


def test_drift_query_override_replaces_only_the_value() -> None:
    built = drift_query(DriftGate(name="drift", max_score=0.2, query="psi{model='{{ model }}'}"))
    assert built.value == "psi{model='{{ model }}'}", f"the override should be used as the value: {built.value}"
    assert built.samples is not None, "the sample count should still come from model_drift_samples_total"


# -- what one analysis round queries ---------------------------------------------------------
def spec_with(analysis: dict[str, Any], version: str = "2.0.0") -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "fraud-detector", "version": version, "uri": f"s3://models/fraud/{version}"},
            "runtime": {"image": "mlserver:1.6.1"},
            "analysis": analysis,
        }
    )


def ref(spec: ModelDeploymentSpec) -> Any:
    template = naming.template_of(spec)
    return builders.revision_ref(template, naming.revision_of(template))


def test_render_all_compares_with_stable_only_for_relative_checks() -> None:
    spec = spec_with(
        {
            "interval": "1m",
            "metrics": [
                {"name": "errors", "template": "error-rate", "relativeToStable": {"maxRatio": 1.5}},
                {"name": "absolute", "template": "error-rate", "thresholdRange": {"max": 0.01}, "interval": "5m"},
            ],
            "drift": [{"name": "drift", "maxScore": 0.2, "window": "10m"}],
        }
    )
    canary, stable = ref(spec), ref(spec_with({}, version="1.0.0"))
    planned = {p.check.name: p for p in plan.render_all(spec, "fraud", "ml-prod", canary, stable)}
    errors = planned["errors"]
    assert 'version="2.0.0"' in errors.query and "[1m]" in errors.query, f"canary side, analysis.interval: {errors}"
    assert errors.stable_query is not None and 'version="1.0.0"' in errors.stable_query, (
        f"a relativeToStable check should also query the stable version, got {errors.stable_query}"
    )
    assert planned["absolute"].stable_query is None, "a threshold-only check should not query the stable side"
    assert "[5m]" in planned["absolute"].query, f"a check's own interval should win: {planned['absolute'].query}"
    assert "[10m]" in planned["drift"].query, f"a drift gate should query over its window: {planned['drift'].query}"
    no_baseline = plan.render_all(spec, "fraud", "ml-prod", canary, None)
    assert no_baseline[0].stable_query is None, "without a stable version there is nothing to compare against"
