"""The embedded Kubernetes types carry the real Kubernetes schema, and the models refuse what a child would.

Each mistake here is one a Pod, Service or Deployment write would refuse; the spec must refuse it
first (the CRD at admission, these models in the operator), naming the field.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from rollguard.api import kubegen, kubetypes
from rollguard.api.spec import ModelDeploymentSpec
from rollguard.core import naming

REPO = kubegen.OUT_PATH.parents[3]
INT32_OVERFLOW = 2**31


def valid() -> dict[str, Any]:
    return {
        "model": {"name": "fraud", "version": "1.0.0", "uri": "s3://models/fraud/1.0.0"},
        "runtime": {
            "image": "docker.io/seldonio/mlserver:1.6.1",
            "env": [{"name": "LEVEL", "value": "info"}],
            "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5},
            "livenessProbe": {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 30},
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            "nodeSelector": {"example.com/pool": "gpu-a100"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }


def test_the_base_spec_is_valid() -> None:
    ModelDeploymentSpec.model_validate(valid())


def test_the_runtime_template_keeps_the_kubernetes_shape() -> None:
    """Builders and the revision hash read the template: it must be exactly what the user wrote."""
    raw = valid()
    template = naming.template_of(ModelDeploymentSpec.model_validate(raw))
    assert template["runtime"] == {**raw["runtime"], "port": 8080, "command": [], "args": []}, template["runtime"]


def test_every_example_is_valid() -> None:
    for example in sorted((REPO / "examples").glob("*.yaml")):
        for document in yaml.safe_load_all(example.read_text()):
            ModelDeploymentSpec.model_validate(document["spec"])


def mutated(path: str, value: Any) -> dict[str, Any]:
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


MISTAKES = [
    # (id, field, bad value, what the message must say)
    ("env value and valueFrom", "runtime.env.0.valueFrom", {"fieldRef": {"fieldPath": "metadata.name"}}, "not both"),
    (
        "valueFrom with two sources",
        "runtime.env.0",
        {
            "name": "X",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}, "secretKeyRef": {"name": "s", "key": "k"}},
        },
        "exactly one of",
    ),
    (
        "secretKeyRef without a name",
        "runtime.env.0",
        {"name": "X", "valueFrom": {"secretKeyRef": {"key": "k"}}},
        "secretKeyRef.name: Required value",
    ),
    (
        "bad fieldPath",
        "runtime.env.0",
        {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.containers"}}},
        "fieldRef.fieldPath",
    ),
    ("bad quantity", "runtime.resources.limits", {"memory": "2 GB"}, "should match"),
    ("negative quantity", "runtime.resources.requests", {"cpu": "-1"}, "should match"),
    ("quantity with a huge exponent", "runtime.resources.requests", {"cpu": ".6e-6000943260064"}, "should match"),
    ("quantity as a number", "runtime.resources.requests", {"cpu": 1}, "string"),
    ("unknown resource name", "runtime.resources.limits", {"gpu": "1"}, "string_pattern_mismatch"),
    ("requests above limits", "runtime.resources.limits", {"memory": "512Mi"}, "must not exceed"),
    ("gpu request without limit", "runtime.resources.requests", {"nvidia.com/gpu": "1"}, "extended resource"),
    ("probe with two handlers", "runtime.readinessProbe.tcpSocket", {"port": 8080}, "exactly one of exec"),
    ("probe with no handler", "runtime.readinessProbe", {"periodSeconds": 5}, "exactly one of exec"),
    ("probe port 70000", "runtime.readinessProbe.httpGet.port", 70000, "port must be a number 1..65535"),
    ("probe port name too long", "runtime.readinessProbe.httpGet.port", "a-very-long-port-name", "port"),
    ("probe period int32 overflow", "runtime.readinessProbe.periodSeconds", INT32_OVERFLOW, "should be within"),
    ("probe negative delay", "runtime.livenessProbe.initialDelaySeconds", -1, "should be within"),
    ("probe unknown field", "runtime.readinessProbe.httpget", {"port": 1}, 'unknown field "httpget"'),
    ("probe bad scheme", "runtime.readinessProbe.httpGet.scheme", "FTP", "is not one of"),
    ("liveness success threshold 2", "runtime.livenessProbe.successThreshold", 2, "successThreshold must be 1"),
    ("toleration Exists with a value", "runtime.tolerations.0.value", "x", "value must be empty"),
    ("toleration bad operator", "runtime.tolerations.0.operator", "Gt", "is not one of"),
    ("toleration seconds without NoExecute", "runtime.tolerations.0.tolerationSeconds", 30, "NoExecute"),
    ("nodeSelector bad key", "runtime.nodeSelector", {"bad key!": "x"}, "string_pattern_mismatch"),
    ("nodeSelector bad value", "runtime.nodeSelector", {"gpu": "a100 pool"}, "string_pattern_mismatch"),
    ("maxUnavailable int32 overflow", "disruptionBudget.maxUnavailable", INT32_OVERFLOW, "less_than_equal"),
    ("maxSkew int32 overflow", "spread.maxSkew", INT32_OVERFLOW, "less_than_equal"),
    ("progressDeadlineSeconds overflow", "progressDeadlineSeconds", INT32_OVERFLOW, "less_than_equal"),
    ("topologyKey with a space", "spread.topologyKey", "my zone", "string_pattern_mismatch"),
    ("huge duration", "analysis.interval", "100000000h", "string_pattern_mismatch"),
    ("fractional duration", "analysis.interval", "1.5m", "string_pattern_mismatch"),
    ("sub-second fraction", "strategy.canary.scaleDownDelay", "0.5s", "string_pattern_mismatch"),
    ("zero interval", "analysis.interval", "0s", "from 1s to 24h"),
    ("interval above a day", "analysis.interval", "25h", "from 1s to 24h"),
    ("window above a week", "analysis.drift", [{"name": "d", "maxScore": 1, "window": "169h"}], "from 1s to 168h"),
    ("units out of order", "strategy.canary.scaleDownDelay", "30m1h", "string_pattern_mismatch"),
]


@pytest.mark.parametrize(("path", "value", "expected"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_a_child_refusal_is_refused_by_the_spec_at_its_field(path: str, value: Any, expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ModelDeploymentSpec.model_validate(mutated(path, value))
    errors = caught.value.errors()
    text = "; ".join(f"{'.'.join(str(p) for p in e['loc'])} [{e['type']}]: {e['msg']}" for e in errors)
    field = path.split(".")[1] if path.startswith("runtime.") else path.split(".", maxsplit=1)[0]
    assert field in text, f"error should name {field}: {text}"
    assert expected in text, f"expected {expected!r} in: {text}"


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for _ in range(depth):
        node = {"a": node}
    return node


@pytest.mark.parametrize("depth", [300, 1_000, 100_000])
def test_a_deeply_nested_probe_is_refused_quickly_without_recursion(depth: int) -> None:
    raw = mutated("runtime.readinessProbe", {"httpGet": {"port": 8080}, "exec": nested(depth)})
    started = time.perf_counter()
    with pytest.raises(ValidationError) as caught:
        ModelDeploymentSpec.model_validate(raw)
    elapsed = time.perf_counter() - started
    message = str(caught.value)
    assert "runtime.readinessProbe" in message and 'unknown field "a"' in message, message
    assert elapsed < 0.5, f"refusing a {depth}-deep object took {elapsed:.2f}s"


def test_every_cel_rule_has_a_python_twin() -> None:
    def rules(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [rule["rule"] for rule in node.get("x-kubernetes-validations", [])]
            return own + [r for key, value in node.items() if key != "x-kubernetes-validations" for r in rules(value)]
        return [r for item in node for r in rules(item)] if isinstance(node, list) else []

    missing = sorted(set(rules(kubetypes.SCHEMAS)) - set(kubetypes.PY_RULES))
    assert not missing, f"CEL rules in kube_schemas.json without a Python twin in kubetypes.PY_RULES: {missing}"


def test_committed_kube_schemas_are_what_the_pinned_openapi_generates() -> None:
    openapi_dir = kubegen.default_openapi_dir()
    assert openapi_dir.exists(), f"{openapi_dir} is missing: run `make control-plane` (it downloads Kubernetes)"
    generated = json.dumps(kubegen.extract(openapi_dir), indent=1, sort_keys=True) + "\n"
    assert kubegen.OUT_PATH.read_text() == generated, "kube_schemas.json drifted: run `python -m rollguard.api.kubegen`"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("500m", 0.5),
        ("1Gi", 2**30),
        ("2k", 2000),
        ("1e3", 1000),
        ("+1.5", 1.5),
        (".5", 0.5),
        ("+.5E", 5e17),  # exa, found by e2e/test_fuzz.py: an "E" without digits is a suffix, not an exponent
        ("1E2", 100),
        ("0.", 0),
    ],
)
def test_quantity(text: str, value: float) -> None:
    assert float(kubetypes.quantity(text)) == pytest.approx(value), f"{text} should be {value}"
