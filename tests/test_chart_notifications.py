"""The chart's notifications values: endpoints reach the operator's settings, secrets are mounted
(no RBAC on Secrets), and a json endpoint without a secret is refused at render time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rollguard.settings import Settings
from tests.test_chart_static import CHART, env_of, helm, helm_bin, only, render

__all__ = ["helm_bin"]  # the fixture, shared with the static chart tests

ENDPOINTS = [
    {
        "name": "team-a",
        "url": "https://hooks.example.com/rollguard",
        "secret": {"name": "rollguard-webhooks", "key": "team-a"},
        "namespaces": ["team-a", "ml-*"],
    },
    {"name": "chat", "url": "https://hooks.slack.com/services/T/B/X", "format": "slack", "timeoutSeconds": 3},
]


def test_endpoints_reach_the_settings_and_their_secrets_are_mounted(
    helm_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(helm_bin, f"--set-json=notifications.endpoints={json.dumps(ENDPOINTS)}")
    for name, value in env_of(docs).items():
        if name.startswith("ROLLGUARD_") and isinstance(value, str):
            monkeypatch.setenv(name, value)
    endpoints = Settings().notifications_endpoints
    assert [(e.name, e.format, e.secret_file, e.namespaces, e.timeout_seconds) for e in endpoints] == [
        ("team-a", "json", "/etc/rollguard/notifications/team-a/team-a", ["team-a", "ml-*"], 5),
        ("chat", "slack", None, [], 3),
    ]
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    assert volumes == {
        "notify-team-a": {
            "secretName": "rollguard-webhooks",
            "defaultMode": 0o440,
            "items": [{"key": "team-a", "path": "team-a"}],
        }
    }
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["notify-team-a"] == "/etc/rollguard/notifications/team-a"
    rules = [rule for doc in docs if doc["kind"] in ("Role", "ClusterRole") for rule in doc.get("rules") or []]
    assert not [rule for rule in rules if "secrets" in rule.get("resources", [])], "the kubelet mounts; no RBAC"


def test_defaults_define_no_endpoint(helm_bin: Path) -> None:
    assert env_of(render(helm_bin))["ROLLGUARD_NOTIFICATIONS_ENDPOINTS"] == "[]"


def test_a_json_endpoint_without_a_secret_is_refused(helm_bin: Path) -> None:
    unsigned = [{"name": "team-a", "url": "https://hooks.example.com/x"}]
    result = helm(helm_bin, "template", "r", str(CHART), f"--set-json=notifications.endpoints={json.dumps(unsigned)}")
    assert result.returncode != 0
    assert "notifications.endpoints[name=team-a]: format json needs secret {name, key}" in result.stderr


def test_the_schema_refuses_a_url_that_is_not_http(helm_bin: Path) -> None:
    bad = [{"name": "x", "url": "file:///etc/passwd", "format": "slack"}]
    result = helm(helm_bin, "template", "r", str(CHART), f"--set-json=notifications.endpoints={json.dumps(bad)}")
    assert result.returncode != 0 and "/notifications/endpoints/0/url" in result.stderr, result.stderr
