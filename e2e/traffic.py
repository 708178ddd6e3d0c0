"""Pure model of the simulated data plane: who gets how much traffic, and what it counts.

No I/O here (the simulator in ``e2e/simulator.py`` reads the cluster and serves the metrics),
so everything below can be unit tested without a cluster (``tests/test_simulator.py``).

The rules, in the words a model server would use:

* A *ModelDeployment* is the group of ready pods sharing one ``rollguard.io/model-deployment``
  label value in a namespace. Its total traffic is ``SIMULATED_TOTAL_RPS`` (max over its pods).
* By default that traffic is split equally over its ready pods (so by ready replica counts).
* If a Gateway API HTTPRoute in the namespace sends traffic to Services that select the group's
  pods, each backend gets ``weight / sum(weights)`` of it, split equally over the ready pods its
  Service selects. A backend whose Service selects no ready pod loses its share (the gateway
  would answer 503; no pod counts those requests).
* Counters advance with elapsed time, deterministically: fractions of requests are carried
  forward, never rounded away, so rates over any window match the configured error rate.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

MODEL_DEPLOYMENT_LABEL = "rollguard.io/model-deployment"
MODEL_LABEL = "rollguard.io/model"
VERSION_LABEL = "rollguard.io/version"

DEFAULT_ERROR_RATE = 0.0
DEFAULT_LATENCY_SECONDS = 0.05
DEFAULT_TOTAL_RPS = 20.0
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Whose metric names and labels a pod exports (SIMULATED_METRIC_PRESET): analysis.metricPreset's values.
METRIC_PRESETS = ("rollguard", "mlserver", "triton", "kserve", "vllm")
DEFAULT_TTFT_SECONDS = 0.04
DEFAULT_INTER_TOKEN_SECONDS = 0.02
TOKENS_PER_REQUEST = 16


@dataclass(frozen=True)
class SimulatedPod:
    """A ready pod as the simulator sees it, with the behaviour its env asks for."""

    uid: str
    namespace: str
    name: str
    model_deployment: str
    model: str
    version: str
    labels: Mapping[str, str]
    error_rate: float = DEFAULT_ERROR_RATE
    latency_seconds: float = DEFAULT_LATENCY_SECONDS
    feature_drift: float = 0.0
    prediction_drift: float = 0.0
    total_rps: float = DEFAULT_TOTAL_RPS
    metric_preset: str = "rollguard"
    time_to_first_token_seconds: float = DEFAULT_TTFT_SECONDS
    inter_token_seconds: float = DEFAULT_INTER_TOKEN_SECONDS

    @property
    def group(self) -> tuple[str, str]:
        """(namespace, ModelDeployment name): the unit that shares one stream of traffic."""
        return (self.namespace, self.model_deployment)


@dataclass(frozen=True)
class Backend:
    """One weighted backendRef of an HTTPRoute, resolved to its Service's pod selector."""

    namespace: str
    service: str
    selector: Mapping[str, str]
    weight: int = 1


@dataclass(frozen=True)
class Route:
    """An HTTPRoute reduced to what routing needs: its name and its weighted backends."""

    namespace: str
    name: str
    backends: Sequence[Backend]


def _float_env(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        return default


def pod_from_env(
    *, uid: str, namespace: str, name: str, labels: Mapping[str, str], env: Mapping[str, str]
) -> SimulatedPod:
    """Build a SimulatedPod from a pod's labels and its first container's env.

    Unparsable numbers fall back to the defaults; the error rate is clamped to [0, 1]; an unknown
    SIMULATED_METRIC_PRESET falls back to rollguard's own series.
    """
    preset = env.get("SIMULATED_METRIC_PRESET", "rollguard")
    return SimulatedPod(
        uid=uid,
        namespace=namespace,
        name=name,
        model_deployment=labels.get(MODEL_DEPLOYMENT_LABEL, ""),
        model=env.get("MODEL_NAME") or labels.get(MODEL_LABEL, ""),
        version=env.get("MODEL_VERSION") or labels.get(VERSION_LABEL, ""),
        labels=dict(labels),
        error_rate=min(1.0, max(0.0, _float_env(env, "SIMULATED_ERROR_RATE", DEFAULT_ERROR_RATE))),
        latency_seconds=max(0.0, _float_env(env, "SIMULATED_LATENCY_SECONDS", DEFAULT_LATENCY_SECONDS)),
        feature_drift=_float_env(env, "SIMULATED_DRIFT_SCORE", 0.0),
        prediction_drift=_float_env(env, "SIMULATED_PREDICTION_DRIFT_SCORE", 0.0),
        total_rps=max(0.0, _float_env(env, "SIMULATED_TOTAL_RPS", DEFAULT_TOTAL_RPS)),
        metric_preset=preset if preset in METRIC_PRESETS else "rollguard",
        time_to_first_token_seconds=max(0.0, _float_env(env, "SIMULATED_TTFT_SECONDS", DEFAULT_TTFT_SECONDS)),
        inter_token_seconds=max(0.0, _float_env(env, "SIMULATED_INTER_TOKEN_SECONDS", DEFAULT_INTER_TOKEN_SECONDS)),
    )


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Service semantics: a non-empty selector matches when every key/value is on the pod."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _route_for_group(pods: Sequence[SimulatedPod], routes: Iterable[Route]) -> Route | None:
    """The first route (by name) in the group's namespace with a backend selecting one of its pods."""
    namespace = pods[0].namespace
    candidates = sorted((r for r in routes if r.namespace == namespace), key=lambda r: r.name)
    for route in candidates:
        if any(selects(b.selector, p.labels) for b in route.backends for p in pods):
            return route
    return None


def traffic_shares(pods: Iterable[SimulatedPod], routes: Iterable[Route] = ()) -> dict[str, float]:
    """Requests per second for each ready pod, keyed by pod uid.

    Pods of a ModelDeployment that no backend of its route selects get 0.
    """
    routes = list(routes)
    groups: dict[tuple[str, str], list[SimulatedPod]] = defaultdict(list)
    for pod in pods:
        groups[pod.group].append(pod)

    rps: dict[str, float] = {}
    for members in groups.values():
        total = max(p.total_rps for p in members)
        route = _route_for_group(members, routes)
        if route is None:
            for pod in members:
                rps[pod.uid] = total / len(members)
            continue
        for pod in members:
            rps[pod.uid] = 0.0
        weight_sum = sum(max(0, b.weight) for b in route.backends)
        if weight_sum == 0:
            continue
        for backend in route.backends:
            served = [p for p in members if p.namespace == backend.namespace and selects(backend.selector, p.labels)]
            for pod in served:
                rps[pod.uid] += total * max(0, backend.weight) / weight_sum / len(served)
    return rps


@dataclass
class RequestCounters:
    """Requests one pod has answered, as exact fractions; exported values are whole requests.

    ``ok`` and ``errors`` are accumulated separately so that each exported counter only ever
    grows (flooring a difference could go backwards and look like a counter reset).
    """

    ok: float = 0.0
    errors: float = 0.0

    def advance(self, rps: float, error_rate: float, seconds: float) -> None:
        """Add the requests of ``seconds`` at ``rps``, ``error_rate`` of them answered with 500."""
        if seconds <= 0 or rps <= 0:
            return
        requests = rps * seconds
        self.errors += requests * error_rate
        self.ok += requests * (1.0 - error_rate)

    @property
    def ok_total(self) -> int:
        return math.floor(self.ok)

    @property
    def error_total(self) -> int:
        return math.floor(self.errors)

    @property
    def total(self) -> int:
        return self.ok_total + self.error_total


def histogram_buckets(latency_seconds: float, count: int) -> list[tuple[str, float]]:
    """Cumulative buckets for ``count`` requests that each took ``latency_seconds``."""
    buckets = [(repr(le), float(count if latency_seconds <= le else 0)) for le in LATENCY_BUCKETS]
    buckets.append(("+Inf", float(count)))
    return buckets
