"""What the spec models reject (each error names the field), their defaults, and duration parsing.

CEL rules (x-kubernetes-validations) are enforced by the API server, not by pydantic; these tests
cover what the models themselves enforce, which is also what the operator reports for a spec that
an older CRD let through.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from rollguard.api.base import duration_seconds
from rollguard.api.spec import ModelDeploymentSpec


def valid() -> dict[str, Any]:
    return {
        "model": {"name": "fraud-detector", "version": "1.4.0", "uri": "s3://models/fraud-detector/1.4.0/"},
        "runtime": {"image": "docker.io/seldonio/mlserver:1.6.1", "env": [{"name": "LOG_LEVEL", "value": "info"}]},
        "replicas": 3,
        "autoscaling": {"minReplicas": 2, "maxReplicas": 6},
        "strategy": {"canary": {"steps": [{"weight": 20, "pause": {"duration": "1m"}}]}},
        "analysis": {
            "metrics": [{"name": "error-rate", "template": "error-rate", "thresholdRange": {"max": 0.01}}],
            "metricsUnavailable": {"deadline": "5m", "action": "Hold"},
        },
    }


def with_value(path: str, value: Any) -> dict[str, Any]:
    """A valid spec with one field (dotted path, list indexes as numbers) set to `value`."""
    raw = copy.deepcopy(valid())
    *parents, last = path.split(".")
    node: Any = raw
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return raw


def errors_of(raw: dict[str, Any]) -> list[tuple[str, str, str]]:
    with pytest.raises(ValidationError) as caught:
        ModelDeploymentSpec.model_validate(raw)
    return [(".".join(str(p) for p in e["loc"]), e["type"], e["msg"]) for e in caught.value.errors()]


def test_the_base_spec_is_valid() -> None:
    ModelDeploymentSpec.model_validate(valid())  # the mistakes below are each one change away from this


MISTAKES = [
    # (id, field path, bad value, error type)
    ("version with a space", "model.version", "1.4.0 beta", "string_pattern_mismatch"),
    ("version starting with a dot", "model.version", ".1.4", "string_pattern_mismatch"),
    ("version with a slash", "model.version", "release/1.4", "string_pattern_mismatch"),
    ("version too long for a label", "model.version", "v" * 64, "string_too_long"),
    ("model name with capitals", "model.name", "Fraud_Detector", "string_pattern_mismatch"),
    ("uri scheme ftp", "model.uri", "ftp://models/fraud", "string_pattern_mismatch"),
    ("uri without scheme", "model.uri", "/mnt/models/fraud.json", "string_pattern_mismatch"),
    ("empty image", "runtime.image", "", "string_too_short"),
    ("port zero", "runtime.port", 0, "greater_than_equal"),
    ("port too high", "runtime.port", 70000, "less_than_equal"),
    ("env name starting with a digit", "runtime.env.0.name", "1_LEVEL", "string_pattern_mismatch"),
    ("negative replicas", "replicas", -1, "greater_than_equal"),
    ("replicas as text", "replicas", "three", "int_parsing"),
    ("autoscaling min zero", "autoscaling.minReplicas", 0, "greater_than_equal"),
    ("weight 0", "strategy.canary.steps.0.weight", 0, "greater_than_equal"),
    ("weight 100", "strategy.canary.steps.0.weight", 100, "less_than_equal"),
    ("no steps", "strategy.canary.steps", [], "too_short"),
    ("duration without unit", "strategy.canary.steps.0.pause.duration", "60", "string_pattern_mismatch"),
    ("duration in days", "strategy.canary.scaleDownDelay", "1d", "string_pattern_mismatch"),
    ("duration in words", "analysis.interval", "5 minutes", "string_pattern_mismatch"),
    ("unknown strategy", "strategy.type", "BlueGreen", "literal_error"),
    ("unknown template", "analysis.metrics.0.template", "p99", "literal_error"),
    ("unknown preset", "analysis.metricPreset", "torchserve", "literal_error"),
    ("quantile of 1", "analysis.metrics.0.quantile", 1.0, "less_than"),
    ("ratio of zero", "analysis.metrics.0.relativeToStable", {"maxRatio": 0}, "greater_than"),
    ("negative failure limit", "analysis.failureLimit", -1, "greater_than_equal"),
    ("unknown metrics-unavailable action", "analysis.metricsUnavailable.action", "Ignore", "literal_error"),
    ("progress deadline below 10s", "progressDeadlineSeconds", 5, "greater_than_equal"),
    ("history limit zero", "historyLimit", 0, "greater_than_equal"),
]


@pytest.mark.parametrize(("path", "value", "error_type"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_a_mistake_is_reported_at_its_field(path: str, value: Any, error_type: str) -> None:
    errors = errors_of(with_value(path, value))
    located = [(loc, kind) for loc, kind, _ in errors]
    expected_loc = path + (".maxRatio" if path.endswith("relativeToStable") else "")
    assert (expected_loc, error_type) in located, f"expected {error_type} at {expected_loc}, got {errors}"
    assert len(errors) == 1, f"one mistake should give one error, got {errors}"


@pytest.mark.parametrize(
    ("path", "value", "expected_loc"),
    [
        ("replica", 3, "replica"),  # typo of replicas
        ("runtime.imagePullPolicy", "Always", "runtime.imagePullPolicy"),
        ("strategy.canary.steps.0.pause.seconds", 60, "strategy.canary.steps.0.pause.seconds"),
        ("analysis.metrics.0.threshold", 0.01, "analysis.metrics.0.threshold"),
    ],
)
def test_unknown_fields_are_rejected_not_ignored(path: str, value: Any, expected_loc: str) -> None:
    errors = errors_of(with_value(path, value))
    assert (expected_loc, "extra_forbidden") in [(loc, kind) for loc, kind, _ in errors], (
        f"an unknown field should be rejected at {expected_loc} (typos must not be dropped silently), got {errors}"
    )


def test_required_fields_are_named_when_missing() -> None:
    raw = valid()
    del raw["model"]["uri"]
    del raw["runtime"]
    errors = {(loc, kind) for loc, kind, _ in errors_of(raw)}
    assert errors == {("model.uri", "missing"), ("runtime", "missing")}, f"got {errors}"


def test_error_messages_show_the_rule() -> None:
    [(_, _, message)] = errors_of(with_value("model.uri", "ftp://x"))
    assert "(s3|gs|pvc|https|oci|hf)" in message, f"the message should show the accepted schemes, got {message!r}"


@pytest.mark.parametrize(
    "uri",
    ["s3://b/m", "gs://b/m", "pvc://claim/path", "https://host/m.onnx", "oci://registry/m:1", "hf://org/model"],
)
def test_every_documented_uri_scheme_is_accepted(uri: str) -> None:
    spec = ModelDeploymentSpec.model_validate(with_value("model.uri", uri))
    assert spec.model.uri == uri, f"{uri} should be accepted unchanged"


def test_defaults_are_the_documented_ones() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {"model": {"name": "iris", "version": "1", "uri": "gs://b/iris"}, "runtime": {"image": "img:1"}}
    )
    assert (spec.replicas, spec.runtime.port, spec.progress_deadline_seconds, spec.history_limit) == (
        1,
        8080,
        600,
        10,
    ), "expected the documented defaults: replicas 1, port 8080, progressDeadlineSeconds 600, historyLimit 10"
    assert spec.strategy.type == "Canary", f"default strategy: {spec.strategy}"
    canary = spec.strategy.canary
    assert canary is not None, "strategy type Canary without `canary` should get the default steps"
    assert [(s.weight, s.pause.duration) for s in canary.steps] == [(20, "1m"), (50, "1m")], f"{canary.steps}"
    assert (canary.scale_down_delay, canary.traffic_routing.type) == ("30s", "ReplicaRatio"), f"{canary}"
    analysis = spec.analysis
    assert (analysis.interval, analysis.metric_preset, analysis.failure_limit) == ("30s", "rollguard", 1), (
        "expected the documented defaults: analysis interval 30s, preset rollguard, failureLimit 1"
    )
    assert (analysis.metrics_unavailable.deadline, analysis.metrics_unavailable.action) == ("10m", "Hold"), (
        "expected the documented defaults: metricsUnavailable: Hold after 10m"
    )
    assert spec.disruption_budget.enabled and spec.spread is not None, "PDB and spreading are on by default"


def test_canary_settings_without_a_type_are_kept() -> None:
    spec = ModelDeploymentSpec.model_validate(valid())
    assert spec.strategy.canary is not None and [s.weight for s in spec.strategy.canary.steps] == [20], (
        f"strategy.canary without strategy.type should be a Canary with the given steps, got {spec.strategy}"
    )


def test_rolling_strategy_has_no_canary_settings() -> None:
    spec = ModelDeploymentSpec.model_validate(with_value("strategy", {"type": "Rolling"}))
    assert spec.strategy.canary is None, f"a Rolling strategy should not get canary steps, got {spec.strategy}"


def test_snake_case_is_accepted_for_python_callers() -> None:
    raw = valid()
    raw["progress_deadline_seconds"] = 120
    spec = ModelDeploymentSpec.model_validate(raw)
    assert spec.progress_deadline_seconds == 120, "snake_case field names should also be accepted"


def test_the_spec_is_immutable() -> None:
    spec = ModelDeploymentSpec.model_validate(valid())
    with pytest.raises(ValidationError):
        spec.replicas = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("1h30m", 5400.0),
        ("2h45m10s", 9910.0),
        ("0s", 0.0),
        ("1s500ms", 1.5),
    ],
)
def test_duration_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds), f"{text} should be {seconds}s"


@pytest.mark.parametrize(
    "text",
    ["", "30", "1d", "5 m", "-1s", "1h 30m", "m", "1.s", "PT5M", "30S", "1.5h", "0.25s", "30m1h", "100000000h"],
)
def test_duration_seconds_rejects_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration such as 30s, 5m, 1h30m") as error:
        duration_seconds(text)
    assert repr(text) in str(error.value), f"the error should quote the bad text {text!r}, got {error.value}"
