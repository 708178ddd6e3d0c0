"""The API server itself rejects bad ModelDeployments, naming the field and the rule.

No operator runs here: this is the CRD's structural schema and CEL rules at admission.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from e2e import md

MISTAKES: list[tuple[str, Any, str]] = [
    ("missing model", lambda s: s.pop("model"), "spec.model: Required value"),
    ("version with a space", lambda s: s["model"].update(version="1.0 beta"), "spec.model.version"),
    ("unknown URI scheme", lambda s: s["model"].update(uri="ftp://models/x"), "spec.model.uri"),
    ("port out of range", lambda s: s["runtime"].update(port=70000), "spec.runtime.port"),
    ("negative replicas", lambda s: s.update(replicas=-1), "spec.replicas"),
    (
        "canary weight of 100",
        lambda s: s.update(strategy={"type": "Canary", "canary": {"steps": [{"weight": 100}]}}),
        "spec.strategy.canary.steps[0].weight",
    ),
    (
        "canary block with Rolling",
        lambda s: s.update(strategy={"type": "Rolling", "canary": {"steps": [{"weight": 10}]}}),
        "strategy.canary is only allowed when strategy.type is Canary",
    ),
    ("unknown strategy", lambda s: s.update(strategy={"type": "BlueGreen"}), "spec.strategy.type"),
    ("bad duration", lambda s: s.update(analysis={"interval": "ten seconds"}), "spec.analysis.interval"),
    (
        "check with both template and query",
        lambda s: s.update(
            analysis={"metrics": [{"name": "e", "template": "error-rate", "query": "up", "thresholdRange": {"max": 1}}]}
        ),
        "set exactly one of template (a built-in check) or query (your PromQL)",
    ),
    (
        "check without a limit",
        lambda s: s.update(analysis={"metrics": [{"name": "e", "template": "error-rate"}]}),
        "a check needs thresholdRange, relativeToStable or both",
    ),
    (
        "min above max",
        lambda s: s.update(
            analysis={"metrics": [{"name": "e", "template": "error-rate", "thresholdRange": {"min": 2, "max": 1}}]}
        ),
        "thresholdRange.min must not exceed thresholdRange.max",
    ),
    (
        "autoscaling min above max",
        lambda s: s.update(autoscaling={"minReplicas": 5, "maxReplicas": 2}, replicas=3),
        "minReplicas must not exceed maxReplicas",
    ),
    (
        "replicas outside autoscaling range",
        lambda s: s.update(autoscaling={"minReplicas": 2, "maxReplicas": 4}, replicas=9),
        "replicas must lie within autoscaling.minReplicas..maxReplicas",
    ),
    (
        "GatewayAPI without a route",
        lambda s: s.update(strategy={"type": "Canary", "canary": {"trafficRouting": {"type": "GatewayAPI"}}}),
        "trafficRouting.httpRoute is required when type is GatewayAPI",
    ),
    ("misspelt field", lambda s: s.update(replica=3), 'unknown field "spec.replica"'),
]


@pytest.mark.parametrize(("mistake", "mutate", "expected"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_invalid_manifest_is_rejected_with_a_clear_message(
    control_plane: Any, namespace: str, crd: None, mistake: str, mutate: Any, expected: str
) -> None:
    body = md.manifest("invalid")
    mutate(body["spec"])
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
    assert result.returncode != 0, f"{mistake}: the API server should reject it, but kubectl apply succeeded"
    assert expected in result.stderr, f"{mistake}: expected {expected!r} in the error, got: {result.stderr}"
    assert md.get(control_plane.api_client(), namespace, "invalid") is None, "nothing is stored"


def test_too_long_name_is_rejected(control_plane: Any, namespace: str, crd: None) -> None:
    body = md.manifest("m" * 41)
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
    assert result.returncode != 0 and "metadata.name must be at most 40 characters" in result.stderr, result.stderr


def test_server_side_dry_run_accepts_every_example(control_plane: Any, namespace: str, crd: None) -> None:
    for example in sorted((md.REPO / "examples").glob("*.yaml")):
        result = control_plane.kubectl("apply", "-n", namespace, "--dry-run=server", "-f", str(example))
        assert result.returncode == 0, f"{example.name} should be valid: {result.stderr}"
