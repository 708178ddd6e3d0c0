"""Built-in PromQL templates (the metric contract) and placeholder rendering.

The contract a model server meets for the built-in checks, preset `rollguard`:
  model_requests_total{namespace, model, version, code}         counter
  model_request_duration_seconds_bucket{namespace, model, version, le}  histogram
  model_feature_drift_score / model_prediction_drift_score{namespace, model, version}  gauges
  model_drift_samples_total{namespace, model, version}           counter of scored requests
Presets map the same checks onto other servers' own metric names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rollguard.api.spec import DriftGate, MetricCheck, MetricPreset

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
KNOWN_PLACEHOLDERS = frozenset({"namespace", "model", "version", "deployment", "interval", "name"})


@dataclass(frozen=True)
class Preset:
    """PromQL fragments with {sel} for the label matchers and {w} for the window."""

    requests: str
    errors: str
    latency: str | None
    model_label: str
    version_label: str


PRESETS: dict[str, Preset] = {
    "rollguard": Preset(
        requests="sum(rate(model_requests_total{{{sel}}}[{w}]))",
        errors='sum(rate(model_requests_total{{{sel},code=~"5.."}}[{w}]))',
        latency="histogram_quantile({q}, sum by (le) (rate(model_request_duration_seconds_bucket{{{sel}}}[{w}])))",
        model_label="model",
        version_label="version",
    ),
    "mlserver": Preset(
        requests="(sum(rate(model_infer_request_success{{{sel}}}[{w}])) "
        "+ (sum(rate(model_infer_request_failure{{{sel}}}[{w}])) or vector(0)))",
        errors="sum(rate(model_infer_request_failure{{{sel}}}[{w}]))",
        latency=None,
        model_label="model_name",
        version_label="model_version",
    ),
    "triton": Preset(
        requests="(sum(rate(nv_inference_request_success{{{sel}}}[{w}])) "
        "+ (sum(rate(nv_inference_request_failure{{{sel}}}[{w}])) or vector(0)))",
        errors="sum(rate(nv_inference_request_failure{{{sel}}}[{w}]))",
        # Triton exports a duration counter, not a histogram: the check is the mean, in seconds.
        latency="(sum(rate(nv_inference_request_duration_us{{{sel}}}[{w}])) "
        "/ sum(rate(nv_inference_request_success{{{sel}}}[{w}]))) / 1e6",
        model_label="model",
        version_label="version",
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


@dataclass(frozen=True)
class CheckQuery:
    """A check's PromQL before rendering: the value, and optionally its sample count."""

    name: str
    kind: str
    value: str
    samples: str | None


class QueryError(ValueError):
    """A query the operator cannot build (unknown placeholder, template unsupported by preset)."""


def render(query: str, target: Target) -> str:
    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in KNOWN_PLACEHOLDERS:
            raise QueryError(f"unknown placeholder {{{{ {key} }}}}; known: " + ", ".join(sorted(KNOWN_PLACEHOLDERS)))
        return str(getattr(target, key))

    return PLACEHOLDER.sub(substitute, query)


def _selector(preset: Preset) -> str:
    return (
        'namespace="{{ namespace }}",'
        f'{preset.model_label}="{{{{ model }}}}",{preset.version_label}="{{{{ version }}}}"'
    )


def metric_query(check: MetricCheck, preset_name: MetricPreset) -> CheckQuery:
    """The (unrendered) PromQL of a metric check."""
    preset = PRESETS[preset_name]
    sel, window = _selector(preset), "{{ interval }}"
    samples = check.sample_query or preset.requests.format(sel=sel, w=window).replace("rate(", "increase(")
    if check.query is not None:
        return CheckQuery(check.name, "metric", check.query, check.sample_query)
    if check.template == "error-rate":
        errors = preset.errors.format(sel=sel, w=window)
        requests = preset.requests.format(sel=sel, w=window)
        return CheckQuery(check.name, "metric", f"({errors} or vector(0)) / {requests}", samples)
    if check.template == "request-rate":
        return CheckQuery(check.name, "metric", preset.requests.format(sel=sel, w=window), samples)
    if preset.latency is None:
        raise QueryError(
            f"check {check.name}: preset {preset_name} has no latency metric; write the latency query yourself"
        )
    latency = preset.latency.format(sel=sel, w=window, q=check.quantile)
    return CheckQuery(check.name, "metric", latency, samples)


def drift_query(gate: DriftGate) -> CheckQuery:
    sel = 'namespace="{{ namespace }}",model="{{ model }}",version="{{ version }}"'
    if gate.query is not None:
        value = gate.query
    else:
        value = f"avg(avg_over_time(model_{gate.kind}_drift_score{{{sel}}}[{{{{ interval }}}}]))"
    samples = f"sum(increase(model_drift_samples_total{{{sel}}}[{{{{ interval }}}}]))"
    return CheckQuery(gate.name, "drift", value, samples)
