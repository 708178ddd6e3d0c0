"""The chart's podPolicy values reach the operator as the PodPolicy it enforces (helm template, no cluster)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.binaries import cache_dir
from rollguard.core.policy import PodPolicy
from rollguard.settings import Settings

CHART = Path(__file__).resolve().parents[1] / "charts" / "rollguard"


@pytest.fixture(scope="module")
def helm_bin() -> Path:
    path = cache_dir() / "bin" / "helm"
    if not os.access(path, os.X_OK):
        pytest.fail(f"helm is missing at {path}: run `bash e2e/build-control-plane.sh` (or `make control-plane`)")
    return path


def _policy_from_chart(helm_bin: Path, monkeypatch: pytest.MonkeyPatch, *values: str) -> PodPolicy:
    argv = [str(helm_bin), "template", "rollguard", str(CHART), "--namespace=rollguard-system", *values]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"helm template {' '.join(values)} failed: {result.stderr}"
    docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(result.stdout) if d]
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    pod_env = {e["name"]: e["value"] for e in env if e["name"].startswith("ROLLGUARD_POD_")}
    for name in [n for n in os.environ if n.startswith("ROLLGUARD_")]:
        monkeypatch.delenv(name)
    for name, value in pod_env.items():
        monkeypatch.setenv(name, value)
    return Settings().pod_policy()


def test_chart_defaults_are_the_locked_down_policy(helm_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _policy_from_chart(helm_bin, monkeypatch) == PodPolicy()


def test_chart_values_become_the_operator_policy(helm_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = _policy_from_chart(
        helm_bin,
        monkeypatch,
        "--set=podPolicy.defaultServiceAccount=models",
        "--set=podPolicy.serviceAccounts={fraud-*,ranker}",
        "--set=podPolicy.automountServiceAccountToken=true",
        "--set=podPolicy.secrets={model-store-*}",
        "--set=podPolicy.configMaps={*}",
        "--set=podPolicy.persistentVolumeClaims={weights}",
        "--set=podPolicy.tolerationKeys={nvidia.com/gpu}",
        "--set=podPolicy.nodeSelectorKeys={gpu,cloud.google.com/gke-accelerator}",
        "--set=podPolicy.restrictedSecurityContext=false",
    )
    assert policy == PodPolicy(
        default_service_account="models",
        service_accounts=("fraud-*", "ranker"),
        automount_service_account_token=True,
        secrets=("model-store-*",),
        config_maps=("*",),
        persistent_volume_claims=("weights",),
        toleration_keys=("nvidia.com/gpu",),
        node_selector_keys=("gpu", "cloud.google.com/gke-accelerator"),
        restricted_security_context=False,
    )


def test_schema_refuses_an_unknown_policy_key(helm_bin: Path) -> None:
    argv = [str(helm_bin), "template", "rollguard", str(CHART), "--set=podPolicy.allowEverything=true"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "allowEverything" in result.stderr, result.stderr
