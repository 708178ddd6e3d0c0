"""Built-in PromQL templates (the metric contract), metric presets and placeholder rendering.

A check reads exactly one ModelDeployment's one revision by selecting the pods rollguard owns:
every series is matched on `namespace` and `pod` (the labels every Kubernetes scrape setup
attaches, see the README's metric contract), never on model/version labels a server reports.
The pods of revision R of ModelDeployment M belong to Deployment `M-R`, so they are named
`M-R-<pod-template-hash>-<suffix>` (kube-controller-manager's ReplicaSet and Pod names).

Presets map the same checks onto each server's own metric names, read from its source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rollguard.api.spec import DriftGate, MetricCheck, MetricPreset, MetricTemplate

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
KNOWN_PLACEHOLDERS = frozenset({"namespace", "model", "version", "deployment", "pod_regex", "interval", "name"})

# The selector of one side (canary or stable): its namespace and the pods of its Deployment.
SELECTOR = 'namespace="{{ namespace }}",pod=~"{{ pod_regex }}"'
# Generated names are cut to 63 - 5 characters before the random suffix (apiserver's
# SimpleNameGenerator, k8s.io/apiserver/pkg/storage/names/generate.go).
MAX_GENERATED_NAME_BASE = 58
POD_SUFFIX = "[a-z0-9]{5}"
# A pod-template-hash is a uint32 in Kubernetes' safe alphabet: at most 10 characters.
MAX_TEMPLATE_HASH = 10


@dataclass(frozen=True)
class Preset:
    """PromQL fragments with {sel} for the label matchers, {w} for the window and {q} for a quantile.

    A fragment left None is a series the server does not export; a check that needs it is refused.
    """

    requests: str
    errors: str | None
    latency: str | None  # a quantile, from a histogram with the pod's own buckets
    mean_latency: str
    time_to_first_token: str | None = None
    inter_token_latency: str | None = None
    missing_hint: str = ""


def _quantile(histogram: str, extra: str = "") -> str:
    return f"histogram_quantile({{q}}, sum by (le) (rate({histogram}_bucket{{{{{{sel}}{extra}}}}}[{{w}}])))"


def _mean(histogram: str, extra: str = "") -> str:
    sel = f"{{{{{{sel}}{extra}}}}}"
    return f"(sum(rate({histogram}_sum{sel}[{{w}}])) / sum(rate({histogram}_count{sel}[{{w}}])))"


_MLSERVER_INFER = ',path=~"/v2/models/.+/infer"'
_VLLM_INFERENCE = ',handler=~"/v1/(chat/)?completions"'

PRESETS: dict[str, Preset] = {
    # rollguard's own contract (what e2e/simulator.py serves by default).
    "rollguard": Preset(
        requests="sum(rate(model_requests_total{{{sel}}}[{w}]))",
        errors='sum(rate(model_requests_total{{{sel},code=~"5.."}}[{w}]))',
        latency=_quantile("model_request_duration_seconds"),
        mean_latency=_mean("model_request_duration_seconds"),
    ),
    # MLServer 1.7.1, SeldonIO/MLServer@1d1f3ee mlserver/handlers/dataplane.py: Counters
    # model_infer_request_success / _failure (prometheus_client adds _total; a failure is an
    # exception in the handler) and the Summary model_infer_request_duration, labelled
    # model/version (version "None" when the URL has none). The Summary times every request,
    # failed ones too, so its _count is all requests. The only histogram is the REST
    # middleware's (mlserver/rest/app.py, starlette_exporter): per pod, so p99 comes from it.
    "mlserver": Preset(
        requests="sum(rate(model_infer_request_duration_count{{{sel}}}[{w}]))",
        errors="sum(rate(model_infer_request_failure_total{{{sel}}}[{w}]))",
        latency=_quantile("rest_server_request_duration_seconds", _MLSERVER_INFER),
        mean_latency=_mean("model_infer_request_duration"),
        missing_hint="MLServer exports no token timings",
    ),
    # Triton, triton-inference-server/server@e1db8a6 docs/user_guide/metrics.md: counters
    # nv_inference_request_success / _failure (no _total; failure also has `reason`) and the
    # cumulative nv_inference_request_duration_us (successful requests). No request histogram
    # by default, so Triton has a mean latency but no quantile.
    "triton": Preset(
        # Both counters exist once the model is loaded; a regex over both names would collide after rate().
        requests="(sum(rate(nv_inference_request_success{{{sel}}}[{w}])) "
        "+ (sum(rate(nv_inference_request_failure{{{sel}}}[{w}])) or vector(0)))",
        errors="sum(rate(nv_inference_request_failure{{{sel}}}[{w}]))",
        latency=None,
        mean_latency="((sum(rate(nv_inference_request_duration_us{{{sel}}}[{w}])) "
        "/ sum(rate(nv_inference_request_success{{{sel}}}[{w}]))) / 1e6)",
        missing_hint="Triton exports no latency histogram by default (use mean-latency)",
    ),
    # KServe's Python model server (sklearn, xgboost, huggingface ...), kserve/kserve@aaac4e2
    # python/kserve/kserve/metrics.py: only Histograms request_{pre,post}process/predict/explain_seconds
    # labelled model_name; a failed predict is timed too. It counts no errors.
    "kserve": Preset(
        requests="sum(rate(request_predict_seconds_count{{{sel}}}[{w}]))",
        errors=None,
        latency=_quantile("request_predict_seconds"),
        mean_latency=_mean("request_predict_seconds"),
        missing_hint="KServe's model server counts no errors (python/kserve/kserve/metrics.py); "
        "write the query yourself, e.g. from your ingress or queue-proxy",
    ),
    # vLLM's OpenAI server: vllm-project/vllm vllm/v1/metrics/loggers.py (histograms
    # vllm:e2e_request_latency_seconds, vllm:time_to_first_token_seconds,
    # vllm:inter_token_latency_seconds, labelled model_name/engine) and
    # vllm/entrypoints/serve/instrumentator/metrics.py (prometheus_fastapi_instrumentator:
    # http_requests_total{handler,method,status="2xx".."5xx"}).
    "vllm": Preset(
        requests=f"sum(rate(http_requests_total{{{{{{sel}}{_VLLM_INFERENCE}}}}}[{{w}}]))",
        errors=f'sum(rate(http_requests_total{{{{{{sel}}{_VLLM_INFERENCE},status="5xx"}}}}[{{w}}]))',
        latency=_quantile("vllm:e2e_request_latency_seconds"),
        mean_latency=_mean("vllm:e2e_request_latency_seconds"),
        time_to_first_token=_quantile("vllm:time_to_first_token_seconds"),
        inter_token_latency=_quantile("vllm:inter_token_latency_seconds"),
    ),
}


@dataclass(frozen=True)
class Target:
    """What the placeholders of a query stand for, for one side (canary or stable)."""

    namespace: str
    model: str
    version: str
    deployment: str
    interval: str
    name: str

    @property
    def pod_regex(self) -> str:
        return pod_regex(self.deployment)


@dataclass(frozen=True)
class CheckQuery:
    """A check's PromQL before rendering: the value, and optionally its sample count."""

    name: str
    kind: str
    value: str
    samples: str | None


class QueryError(ValueError):
    """A query the operator cannot build (unknown placeholder, template unsupported by preset)."""


def _escape(name: str) -> str:
    return name.replace(".", "\\\\.")  # the regex escape `\.`, written inside a PromQL string


def pod_regex(deployment: str) -> str:
    """A PromQL regex (for a double-quoted string) matching exactly the pods of `deployment`.

    `<deployment>-<hash>-<suffix>`: two dash-free segments after the name, so Deployment
    `fraud-abc` never matches the pods of `fraud-abc-def`. A long name is cut the way the
    apiserver cuts generateName, so its pods still match.
    """
    base = f"{deployment}-"
    room = MAX_GENERATED_NAME_BASE - len(base)  # characters of "<hash>-" left after the cut
    if room <= 0:  # the name alone fills the generated base
        return _escape(base[:MAX_GENERATED_NAME_BASE]) + POD_SUFFIX
    if room > MAX_TEMPLATE_HASH:  # "<hash>-" always fits
        return f"{_escape(base)}[a-z0-9]+-{POD_SUFFIX}"
    cut = [f"[a-z0-9]{{1,{room - 1}}}-"] if room > 1 else []
    return f"{_escape(base)}(?:{'|'.join([*cut, f'[a-z0-9]{{{room}}}'])}){POD_SUFFIX}"


def render(query: str, target: Target) -> str:
    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in KNOWN_PLACEHOLDERS:
            raise QueryError(f"unknown placeholder {{{{ {key} }}}}; known: " + ", ".join(sorted(KNOWN_PLACEHOLDERS)))
        return str(getattr(target, key))

    return PLACEHOLDER.sub(substitute, query)


def _unsupported(check: MetricCheck, preset_name: str, preset: Preset) -> QueryError:
    why = f" ({preset.missing_hint})" if preset.missing_hint else ""
    return QueryError(
        f"check {check.name}: preset {preset_name} has no series for template {check.template}{why}; "
        "write the query yourself (query, with {{ pod_regex }} to select the revision's pods)"
    )


def _template_value(template: MetricTemplate, preset: Preset) -> str | None:
    if template == "error-rate":
        if preset.errors is None:
            return None
        return f"({preset.errors} or vector(0)) / {preset.requests}"
    return {
        "request-rate": preset.requests,
        "latency": preset.latency,
        "mean-latency": preset.mean_latency,
        "time-to-first-token": preset.time_to_first_token,
        "inter-token-latency": preset.inter_token_latency,
    }[template]


def metric_query(check: MetricCheck, preset_name: MetricPreset) -> CheckQuery:
    """The (unrendered) PromQL of a metric check."""
    preset = PRESETS[preset_name]
    window = "{{ interval }}"
    samples = check.sample_query or preset.requests.format(sel=SELECTOR, w=window).replace("rate(", "increase(")
    if check.query is not None:
        return CheckQuery(check.name, "metric", check.query, check.sample_query)
    assert check.template is not None  # the model allows exactly one of query and template
    fragment = _template_value(check.template, preset)
    if fragment is None:
        raise _unsupported(check, preset_name, preset)
    return CheckQuery(check.name, "metric", fragment.format(sel=SELECTOR, w=window, q=check.quantile), samples)


def drift_query(gate: DriftGate) -> CheckQuery:
    if gate.query is not None:
        value = gate.query
    else:
        value = f"avg(avg_over_time(model_{gate.kind}_drift_score{{{SELECTOR}}}[{{{{ interval }}}}]))"
    samples = f"sum(increase(model_drift_samples_total{{{SELECTOR}}}[{{{{ interval }}}}]))"
    return CheckQuery(gate.name, "drift", value, samples)
