"""Built-in PromQL templates, metric presets, placeholder rendering, and what a round queries."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from rollguard.api.spec import DriftGate, MetricCheck, MetricPreset, MetricTemplate, ModelDeploymentSpec
from rollguard.core import builders, naming, plan
from rollguard.core.queries import (
    KNOWN_PLACEHOLDERS,
    PRESETS,
    QueryError,
    Target,
    drift_query,
    metric_query,
    pod_regex,
    render,
)

TARGET = Target(
    namespace="ml-prod",
    model="fraud-detector",
    version="1.4.0",
    deployment="fraud-detector-abc1234567",
    interval="2m",
    name="fraud",
)
CANARY_PODS = 'pod=~"fraud-detector-abc1234567-[a-z0-9]+-[a-z0-9]{5}"'
SIDE = f'namespace="ml-prod",{CANARY_PODS}'


def check(**fields: Any) -> MetricCheck:
    return MetricCheck.model_validate({"name": "c", "thresholdRange": {"max": 1}, **fields})


def rendered(preset: Any, **fields: Any) -> str:
    return render(metric_query(check(**fields), preset).value, TARGET)


def promql_regex_matches(regex_in_promql_string: str, value: str) -> bool:
    """What Prometheus does with pod=~"...": unescape the string, then match the whole value."""
    return re.fullmatch(regex_in_promql_string.replace("\\\\", "\\"), value) is not None


def pod_name(deployment: str, template_hash: str, suffix: str = "x2k4p") -> str:
    """How kube-controller-manager and the apiserver name a Deployment's pods (generateName cut at 58)."""
    return f"{deployment}-{template_hash}-"[:58] + suffix


# -- rendering ---------------------------------------------------------------------------------
def test_every_placeholder_renders_to_its_target_value() -> None:
    query = "{{ namespace }}|{{ model }}|{{ version }}|{{ deployment }}|{{ interval }}|{{ name }}|{{ pod_regex }}"
    assert render(query, TARGET) == (
        "ml-prod|fraud-detector|1.4.0|fraud-detector-abc1234567|2m|fraud|fraud-detector-abc1234567-[a-z0-9]+-[a-z0-9]{5}"
    ), "each documented placeholder should be replaced by the target's value"


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
        "unknown placeholder {{ pod }}; known: deployment, interval, model, name, namespace, pod_regex, version"
    ), f"the error should name the unknown placeholder and list the known ones, got {error.value}"


def test_known_placeholders_are_the_documented_ones() -> None:
    documented = MetricCheck.model_fields["query"].description or ""
    for placeholder in KNOWN_PLACEHOLDERS:
        assert f"{{{{ {placeholder} }}}}" in documented, f"{placeholder} is rendered but not documented on query"


# -- which pods a side reads ---------------------------------------------------------------------
@pytest.mark.parametrize("template_hash", ["7d9f8b6c5d", "5b4d9c7f8", "6c8f9"])
def test_pod_regex_matches_every_pod_of_its_deployment(template_hash: str) -> None:
    deployment = "fraud-0123abcdef"
    name = pod_name(deployment, template_hash)
    assert promql_regex_matches(pod_regex(deployment), name), f"{name} is a pod of {deployment}"


@pytest.mark.parametrize(
    ("other_pod", "why"),
    [
        ("fraud-us-0123abcdef-7d9f8b6c5d-x2k4p", "a pod of fraud-us with the same revision"),
        ("fraud-9999abcdef-7d9f8b6c5d-x2k4p", "a pod of another revision of fraud"),
        ("fraud-0123abcdef-eu-7d9f8b6c5d-x2k4p", "a pod of ModelDeployment fraud-0123abcdef-eu"),
        ("fraud-0123abcdef", "the Deployment's name itself"),
        ("fraud-0123abcdef-7d9f8b6c5d-x2k4p-debug", "a longer name that starts like a pod"),
    ],
)
def test_pod_regex_never_matches_another_deployments_pods(other_pod: str, why: str) -> None:
    assert not promql_regex_matches(pod_regex("fraud-0123abcdef"), other_pod), f"should not match {why}"


@pytest.mark.parametrize("name_length", range(1, 62))
def test_pod_regex_follows_the_apiservers_name_cut_for_long_names(name_length: int) -> None:
    model_deployment = ("m" * name_length)[:name_length]
    deployment = naming.deployment_name(model_deployment, "0123abcdef")
    for template_hash in ("7d9f8b6c5d", "5b4d9c7f8"):
        name = pod_name(deployment, template_hash)
        assert len(name) <= 63, name
        assert promql_regex_matches(pod_regex(deployment), name), f"{name} is a pod of {deployment}"
    if len(deployment) + 1 < 58:  # while the revision survives the cut, another revision never matches
        other = pod_name(naming.deployment_name(model_deployment, "9999abcdef"), "7d9f8b6c5d")
        assert not promql_regex_matches(pod_regex(deployment), other), f"{other} belongs to another revision"


def test_dots_in_a_name_are_literal() -> None:
    regex = pod_regex("fraud.v2-0123abcdef")
    assert regex.startswith("fraud\\\\.v2-"), f"a dot is escaped for a PromQL string: {regex}"
    assert not promql_regex_matches(regex, "fraudXv2-0123abcdef-7d9f8b6c5d-x2k4p"), "a dot matches only a dot"


# -- presets -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("preset", "errors", "requests"),
    [
        ("rollguard", f'model_requests_total{{{SIDE},code=~"5.."}}[2m]', f"model_requests_total{{{SIDE}}}[2m]"),
        (
            "mlserver",
            f"model_infer_request_failure_total{{{SIDE}}}[2m]",
            f"model_infer_request_duration_count{{{SIDE}}}[2m]",
        ),
        (
            "triton",
            f"nv_inference_request_failure{{{SIDE}}}[2m]",
            f"nv_inference_request_success{{{SIDE}}}[2m])) + (sum(rate(nv_inference_request_failure{{{SIDE}}}[2m]",
        ),
        (
            "vllm",
            f'http_requests_total{{{SIDE},handler=~"/v1/(chat/)?completions",status="5xx"}}[2m]',
            f'http_requests_total{{{SIDE},handler=~"/v1/(chat/)?completions"}}[2m]',
        ),
    ],
)
def test_error_rate_per_preset_reads_the_servers_own_counters_of_the_sides_pods(
    preset: Any, errors: str, requests: str
) -> None:
    built = metric_query(check(template="error-rate"), preset)
    value = render(built.value, TARGET)
    numerator, denominator = value.split(" or vector(0)) / ", 1)
    assert errors in numerator, f"{preset} error-rate should count {errors}, got {value}"
    assert requests in denominator, f"the denominator should be every request, {requests}: {value}"
    for server_label in ("model=", "version=", "model_name=", "model_version="):
        assert server_label not in value, f"a server-reported label must not select the side: {value}"
    samples = render(built.samples or "", TARGET)
    assert requests.replace("rate(", "increase(") in samples and "rate(" not in samples.replace("increase(", ""), (
        f"the sample count should be requests over the window: {samples}"
    )


def test_mlserver_latency_is_the_rest_histogram_quantile_and_the_mean_is_the_summary() -> None:
    p99 = rendered("mlserver", template="latency", quantile=0.99)
    assert p99 == (
        "histogram_quantile(0.99, sum by (le) (rate(rest_server_request_duration_seconds_bucket"
        f'{{{SIDE},path=~"/v2/models/.+/infer"}}[2m])))'
    ), f"MLServer's only histogram is per pod (REST middleware), inference paths only: {p99}"
    mean = rendered("mlserver", template="mean-latency")
    assert mean == (
        f"(sum(rate(model_infer_request_duration_sum{{{SIDE}}}[2m])) "
        f"/ sum(rate(model_infer_request_duration_count{{{SIDE}}}[2m])))"
    ), f"the mean comes from the Summary model_infer_request_duration: {mean}"


def test_triton_mean_latency_is_in_seconds_and_a_quantile_is_refused() -> None:
    mean = rendered("triton", template="mean-latency")
    assert f"nv_inference_request_duration_us{{{SIDE}}}" in mean and mean.endswith("/ 1e6)"), mean
    with pytest.raises(QueryError) as error:
        metric_query(check(name="p99", template="latency"), "triton")
    assert str(error.value).startswith("check p99: preset triton has no series for template latency"), error.value
    assert "use mean-latency" in str(error.value), f"the error should say what to use instead: {error.value}"


def test_kserve_has_latency_but_no_error_counter() -> None:
    p95 = rendered("kserve", template="latency", quantile=0.95)
    assert p95.startswith(f"histogram_quantile(0.95, sum by (le) (rate(request_predict_seconds_bucket{{{SIDE}}}")
    assert rendered("kserve", template="request-rate") == f"sum(rate(request_predict_seconds_count{{{SIDE}}}[2m]))"
    with pytest.raises(QueryError) as error:
        metric_query(check(name="errors", template="error-rate"), "kserve")
    message = str(error.value)
    assert message.startswith("check errors: preset kserve has no series for template error-rate"), message
    assert "write the query yourself" in message and "{{ pod_regex }}" in message, f"what to do next: {message}"


@pytest.mark.parametrize(
    ("template", "histogram"),
    [
        ("latency", "vllm:e2e_request_latency_seconds_bucket"),
        ("time-to-first-token", "vllm:time_to_first_token_seconds_bucket"),
        ("inter-token-latency", "vllm:inter_token_latency_seconds_bucket"),
    ],
)
def test_vllm_token_timings_are_quantiles_of_its_histograms(template: str, histogram: str) -> None:
    value = rendered("vllm", template=template, quantile=0.9)
    assert value == f"histogram_quantile(0.9, sum by (le) (rate({histogram}{{{SIDE}}}[2m])))", value


@pytest.mark.parametrize("template", ["time-to-first-token", "inter-token-latency"])
@pytest.mark.parametrize("preset", ["rollguard", "mlserver", "triton", "kserve"])
def test_token_timings_are_refused_where_the_server_has_none(preset: Any, template: str) -> None:
    with pytest.raises(QueryError, match=f"preset {preset} has no series for template {template}"):
        metric_query(check(name="ttft", template=template), preset)


def test_every_rendered_preset_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run `bash e2e/install-deps.sh` (Debian's prometheus package)"
    rules = []
    for preset in get_args(MetricPreset):
        for template in get_args(MetricTemplate):
            try:
                built = metric_query(check(template=template), preset)
            except QueryError:
                continue
            for query in (built.value, built.samples):
                rules.append({"record": f"{preset}:{template.replace('-', '_')}", "expr": render(query or "", TARGET)})
    for gate in (DriftGate(name="d", max_score=0.2), DriftGate(name="p", kind="prediction", max_score=0.2)):
        built = drift_query(gate)
        rules += [{"record": "drift", "expr": render(q or "", TARGET)} for q in (built.value, built.samples)]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "presets", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"promtool rejected a preset query: {result.stdout}{result.stderr}"
    assert len(rules) >= 2 * 20, f"every supported preset/template pair should be checked, got {len(rules)}"


def test_no_preset_rates_several_metric_names_at_once() -> None:
    # rate() drops the name: success and failure series would collide ("same labelset").
    for preset in PRESETS:
        for template in get_args(MetricTemplate):
            try:
                value = rendered(preset, template=template)
            except QueryError:
                continue
            assert "__name__" not in value, f"{preset} {template}: {value}"


def test_every_preset_supports_request_rate_and_mean_latency() -> None:
    for preset in PRESETS:
        for template in ("request-rate", "mean-latency"):
            assert rendered(preset, template=template), f"{preset} should support {template}"


def test_custom_query_is_used_as_written_with_its_own_sample_query() -> None:
    built = metric_query(check(query="my_score{v='{{ version }}'}", sampleQuery="my_count"), "mlserver")
    assert (built.value, built.samples) == ("my_score{v='{{ version }}'}", "my_count"), (
        f"a custom query and sampleQuery should be kept as written, got {built}"
    )
    assert metric_query(check(query="q"), "rollguard").samples is None, "no sampleQuery means no sample count"


def test_custom_query_can_select_the_revisions_pods() -> None:
    built = metric_query(check(query='sum(rate(my_errors_total{pod=~"{{ pod_regex }}"}[{{ interval }}]))'), "vllm")
    assert render(built.value, TARGET) == f"sum(rate(my_errors_total{{{CANARY_PODS}}}[2m]))", built.value


@pytest.mark.parametrize("kind", ["feature", "prediction"])
def test_drift_queries_average_the_score_of_the_sides_pods_and_count_scored_requests(kind: str) -> None:
    built = drift_query(DriftGate(name="drift", kind=kind, max_score=0.2))
    value = render(built.value, TARGET)
    assert value == f"avg(avg_over_time(model_{kind}_drift_score{{{SIDE}}}[2m]))", f"{kind} drift: {value}"
    assert render(built.samples or "", TARGET) == f"sum(increase(model_drift_samples_total{{{SIDE}}}[2m]))"
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
    assert f'pod=~"fraud-{canary.revision}-' in errors.query and "[1m]" in errors.query, (
        f"the canary's pods, over analysis.interval: {errors}"
    )
    assert errors.stable_query is not None and f'pod=~"fraud-{stable.revision}-' in errors.stable_query, (
        f"a relativeToStable check should also query the stable revision's pods, got {errors.stable_query}"
    )
    absolute = planned["absolute"]
    assert absolute.stable_evidence_only and f'pod=~"fraud-{stable.revision}-' in (absolute.stable_query or ""), (
        f"a threshold-only check queries stable only as shared-outage evidence (dependencyHold): {absolute}"
    )
    assert planned["drift"].stable_query is None, "a drift gate never queries the stable side"
    assert "[5m]" in planned["absolute"].query, f"a check's own interval should win: {planned['absolute'].query}"
    assert "[10m]" in planned["drift"].query, f"a drift gate should query over its window: {planned['drift'].query}"
    no_baseline = plan.render_all(spec, "fraud", "ml-prod", canary, None)
    assert no_baseline[0].stable_query is None, "without a stable version there is nothing to compare against"


def test_two_model_deployments_serving_one_model_name_never_share_a_selector() -> None:
    spec = spec_with({"metrics": [{"name": "errors", "template": "error-rate", "thresholdRange": {"max": 0.05}}]})
    canary = ref(spec)
    us = plan.render_all(spec, "fraud-us", "ml-prod", canary, None)[0].query
    eu = plan.render_all(spec, "fraud-eu", "ml-prod", canary, None)[0].query
    assert us != eu, "same model name and version, different ModelDeployments: different pods"
    us_regex = re.search(r'pod=~"([^"]+)"', us)
    assert us_regex is not None, us
    eu_pod = pod_name(naming.deployment_name("fraud-eu", canary.revision), "7d9f8b6c5d")
    assert not promql_regex_matches(us_regex.group(1), eu_pod), f"fraud-us must not read {eu_pod}"
