"""Issue 9 with the simulator: every preset against its server's real metric shapes, and isolation.

Each pod's SIMULATED_METRIC_PRESET makes the simulator export the series that server exports
(e2e/preset_shapes.py), labelled with what that server reports (MLServer's version "None",
Triton's "1"), plus the namespace and pod a cluster's Prometheus attaches.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from e2e import md
from e2e.rollguard_process import RollguardProcess
from e2e.waiting import wait_for

# Every check each preset supports, with limits a healthy simulated pod meets (latency 0.05 s,
# time to first token 0.04 s, 0.02 s between tokens, no errors).
CHECKS = {
    "error-rate": {"template": "error-rate", "thresholdRange": {"max": 0.05}},
    "latency": {"template": "latency", "quantile": 0.99, "thresholdRange": {"max": 0.5}},
    "mean-latency": {"template": "mean-latency", "thresholdRange": {"max": 0.5}},
    "request-rate": {"template": "request-rate", "thresholdRange": {"min": 1}},
    "time-to-first-token": {"template": "time-to-first-token", "quantile": 0.9, "thresholdRange": {"max": 0.5}},
    "inter-token-latency": {"template": "inter-token-latency", "quantile": 0.9, "thresholdRange": {"max": 0.2}},
}
# Which checks each server's metrics support (the others are refused at admission-time validation).
SUPPORTED = {
    "rollguard": ["error-rate", "latency", "mean-latency", "request-rate"],
    "mlserver": ["error-rate", "latency", "mean-latency", "request-rate"],
    "triton": ["error-rate", "mean-latency", "request-rate"],
    "kserve": ["latency", "mean-latency", "request-rate"],
    "vllm": ["error-rate", "latency", "mean-latency", "request-rate", "time-to-first-token", "inter-token-latency"],
}
# How a bad canary shows on each server, and the checks that catch it.
REGRESSIONS = {
    "rollguard": ({"SIMULATED_ERROR_RATE": "0.3"}, {"error-rate"}),
    "mlserver": ({"SIMULATED_ERROR_RATE": "0.3"}, {"error-rate"}),
    "triton": ({"SIMULATED_ERROR_RATE": "0.3"}, {"error-rate"}),
    "kserve": ({"SIMULATED_LATENCY_SECONDS": "2"}, {"latency", "mean-latency"}),
    "vllm": ({"SIMULATED_TTFT_SECONDS": "2"}, {"time-to-first-token"}),
}


def model_deployment(
    name: str, version: str, preset: str, env: dict[str, str], model: str | None = None
) -> dict[str, Any]:
    body = md.manifest(
        name,
        version=version,
        replicas=2,
        env={"SIMULATED_METRIC_PRESET": preset, **env},
        strategy={
            "type": "Canary",
            "canary": {"steps": [{"weight": 50, "pause": {"duration": "4s"}}], "scaleDownDelay": "2s"},
        },
        analysis={
            "interval": "3s",
            "failureLimit": 0,
            "consecutiveErrorLimit": 0,
            "metricPreset": preset,
            "metrics": [{"name": check, **CHECKS[check], "minSampleCount": 5} for check in SUPPORTED[preset]],
        },
    )
    if model is not None:
        body["spec"]["model"]["name"] = model
    return body


def serve_stable(cp: Any, api: client.ApiClient, namespace: str, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        md.apply(cp, namespace, body)
    versions = {body["metadata"]["name"]: body["spec"]["model"]["version"] for body in bodies}
    wait_for(
        lambda: all(md.serving(api, namespace, name, version) for name, version in versions.items()),
        90,
        message=f"{versions} serving",
    )


def test_every_preset_promotes_a_healthy_canary_and_rolls_back_a_bad_one_on_its_own_series(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    presets = list(SUPPORTED)
    names = {(preset, health): f"{preset}-{health}" for preset in presets for health in ("good", "bad")}
    serve_stable(
        control_plane,
        kube_api,
        namespace,
        [model_deployment(name, "1.0.0", preset, {}) for (preset, _), name in names.items()],
    )
    for (preset, health), name in names.items():
        env = REGRESSIONS[preset][0] if health == "bad" else {}
        md.apply(control_plane, namespace, model_deployment(name, "1.1.0", preset, env))

    def outcomes() -> dict[str, str]:
        return {name: md.status(kube_api, namespace, name).get("phase", "") for name in names.values()}

    expected = {name: "Ready" if health == "good" else "RolledBack" for (_, health), name in names.items()}
    wait_for(
        outcomes,
        180,
        interval=1,
        message="every healthy canary promoted and every bad one rolled back, on its preset's series",
        until=lambda seen: (
            seen == expected and all(md.serving(kube_api, namespace, names[(p, "good")], "1.1.0") for p in presets)
        ),
    )
    for preset in presets:
        promoted = md.status(kube_api, namespace, names[(preset, "good")])["history"][-1]
        assert (promoted["version"], promoted["outcome"]) == ("1.1.0", "Promoted"), promoted
        assert set(promoted["metrics"]) == set(SUPPORTED[preset]), (
            f"{preset}: every supported check had data and passed at promotion: {promoted['metrics']}"
        )
        rejected = md.status(kube_api, namespace, names[(preset, "bad")])["rejected"]
        assert rejected["version"] == "1.1.0" and rejected["reason"] == "AnalysisFailed", rejected
        assert rejected["check"] in REGRESSIONS[preset][1], f"{preset}: the regression's own check failed: {rejected}"
        assert f'pod=~"{names[(preset, "bad")]}-{rejected["revision"]}-' in rejected["query"], rejected["query"]


def test_same_model_name_in_one_namespace_each_judged_on_its_own_pods(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    twins = {"fraud-us": {}, "fraud-eu": {"SIMULATED_ERROR_RATE": "0.3"}}
    serve_stable(
        control_plane,
        kube_api,
        namespace,
        [model_deployment(name, "1.0.0", "mlserver", {}, model="fraud") for name in twins],
    )
    for name, env in twins.items():
        md.apply(control_plane, namespace, model_deployment(name, "1.1.0", "mlserver", env, model="fraud"))

    wait_for(
        lambda: (
            md.serving(kube_api, namespace, "fraud-us", "1.1.0"),
            md.status(kube_api, namespace, "fraud-eu").get("phase"),
        ),
        120,
        interval=1,
        message="fraud-us (healthy) promoted and fraud-eu (30% errors) rolled back",
        until=lambda seen: seen == (True, "RolledBack"),
    )
    promoted = md.status(kube_api, namespace, "fraud-us")["history"][-1]
    assert (promoted["version"], promoted["outcome"]) == ("1.1.0", "Promoted"), promoted
    assert promoted["metrics"]["error-rate"] == 0, f"fraud-us had no errors of its own: {promoted['metrics']}"
    rejected = md.status(kube_api, namespace, "fraud-eu")["rejected"]
    assert rejected["check"] == "error-rate" and abs(rejected["value"] - 0.3) < 0.05, (
        f"fraud-eu is judged on its own error rate (0.3, not halved by its twin's traffic): {rejected}"
    )
