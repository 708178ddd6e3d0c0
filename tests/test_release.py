"""Static checks of what a release ships: the chart's Argo CD health check on edge cases the live
e2e test cannot hold still, the release workflow (actionlint) and the chart/image version contract."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.gitops import argocd_health, build_tool

REPO = Path(__file__).resolve().parents[1]


def _md(generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "m", "generation": generation}, "spec": {}}
    if status is not None:
        body["status"] = status
    return body


def _cond(type_: str, status: str, reason: str = "R", message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (_md(1, None), "Progressing"),
        (_md(3, {"observedGeneration": 2, "phase": "Ready", "conditions": [_cond("Ready", "True")]}), "Progressing"),
        (
            _md(2, {"observedGeneration": 2, "phase": "Failed", "conditions": [_cond("Stalled", "True", "Invalid")]}),
            "Degraded",
        ),
        (_md(2, {"observedGeneration": 2, "phase": "Ready", "conditions": []}), "Progressing"),
    ],
    ids=["no-status-yet", "generation-not-observed", "invalid-spec", "no-conditions"],
)
def test_argocd_health_edge_cases(obj: dict[str, Any], expected: str) -> None:
    assert argocd_health(obj)["status"] == expected


def test_release_workflow_passes_actionlint() -> None:
    if shutil.which("go") is None:
        pytest.fail("Go is needed to build actionlint (github.com/rhysd/actionlint) from its module")
    actionlint = build_tool("actionlint")
    workflows = sorted(str(p) for p in (REPO / ".github" / "workflows").glob("*.yml"))
    assert workflows, "the release workflow exists"
    linted = subprocess.run([str(actionlint), "-color=false", *workflows], capture_output=True, text=True, check=False)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_chart_image_tag_defaults_to_its_app_version_and_the_release_tags_the_image_with_it() -> None:
    chart = yaml.safe_load((REPO / "charts/rollguard/Chart.yaml").read_text())
    values = yaml.safe_load((REPO / "charts/rollguard/values.yaml").read_text())
    deployment = (REPO / "charts/rollguard/templates/deployment.yaml").read_text()
    assert values["image"]["tag"] == "", "an empty tag means the chart's appVersion"
    assert "{{ .Values.image.tag | default .Chart.AppVersion }}" in deployment
    release = yaml.safe_load((REPO / ".github/workflows/release.yml").read_text())
    push = next(s for s in release["jobs"]["image"]["steps"] if "build-push-action" in s.get("uses", ""))
    assert push["with"]["tags"].endswith(":${{ needs.version.outputs.app_version }}")
    assert "linux/arm64" in push["with"]["platforms"] and "linux/amd64" in push["with"]["platforms"]
    assert chart["appVersion"], "the chart names the image version it was released with"
