"""Unit tests of the simulated data plane's pure logic (e2e/traffic.py); no cluster needed."""

from __future__ import annotations

import pytest

from e2e.traffic import (
    MODEL_DEPLOYMENT_LABEL,
    Backend,
    RequestCounters,
    Route,
    SimulatedPod,
    histogram_buckets,
    pod_from_env,
    traffic_shares,
)


def pod(name: str, *, md: str = "demo", ns: str = "ns", rps: float = 20.0, **labels: str) -> SimulatedPod:
    return SimulatedPod(
        uid=f"{ns}/{name}",
        namespace=ns,
        name=name,
        model_deployment=md,
        model="m",
        version=labels.get("track", "v1"),
        labels={MODEL_DEPLOYMENT_LABEL: md, **labels},
        total_rps=rps,
    )


def test_env_is_read_with_defaults_and_label_fallbacks() -> None:
    p = pod_from_env(
        uid="u",
        namespace="ns",
        name="p",
        labels={MODEL_DEPLOYMENT_LABEL: "demo", "rollguard.io/model": "iris", "rollguard.io/version": "v7"},
        env={"SIMULATED_ERROR_RATE": "0.25", "SIMULATED_LATENCY_SECONDS": "bogus", "SIMULATED_TOTAL_RPS": "40"},
    )
    assert (p.model_deployment, p.model, p.version) == ("demo", "iris", "v7")
    assert p.error_rate == 0.25
    assert p.latency_seconds == 0.05, "an unparsable latency falls back to the default"
    assert p.total_rps == 40.0
    assert (p.feature_drift, p.prediction_drift) == (0.0, 0.0)


def test_env_model_and_version_win_over_labels_and_error_rate_is_clamped() -> None:
    p = pod_from_env(
        uid="u",
        namespace="ns",
        name="p",
        labels={"rollguard.io/model": "label-model"},
        env={"MODEL_NAME": "env-model", "MODEL_VERSION": "v2", "SIMULATED_ERROR_RATE": "3"},
    )
    assert (p.model, p.version, p.error_rate) == ("env-model", "v2", 1.0)


def test_without_routes_traffic_is_split_by_ready_replicas() -> None:
    shares = traffic_shares([pod("a"), pod("b"), pod("c"), pod("d")])
    assert shares == pytest.approx({"ns/a": 5.0, "ns/b": 5.0, "ns/c": 5.0, "ns/d": 5.0})


def test_total_rps_is_the_max_over_the_group_and_groups_are_independent() -> None:
    shares = traffic_shares([pod("a", rps=10), pod("b", rps=30), pod("x", md="other", rps=7)])
    assert shares == pytest.approx({"ns/a": 15.0, "ns/b": 15.0, "ns/x": 7.0})


def test_same_name_in_another_namespace_is_another_group() -> None:
    shares = traffic_shares([pod("a", ns="one"), pod("b", ns="two")])
    assert shares == pytest.approx({"one/a": 20.0, "two/b": 20.0})


def test_route_weights_override_replica_counts() -> None:
    pods = [pod("s0", track="stable"), pod("c0", track="canary"), pod("c1", track="canary"), pod("c2", track="canary")]
    route = Route(
        "ns",
        "demo",
        [Backend("ns", "stable", {"track": "stable"}, 80), Backend("ns", "canary", {"track": "canary"}, 20)],
    )
    shares = traffic_shares(pods, [route])
    assert shares["ns/s0"] == pytest.approx(16.0)
    assert [shares[f"ns/c{i}"] for i in range(3)] == pytest.approx([4 / 3] * 3)


def test_backend_without_ready_pods_loses_its_share_and_unselected_pods_get_nothing() -> None:
    pods = [pod("s0", track="stable"), pod("other", track="shadow")]
    route = Route(
        "ns",
        "demo",
        [Backend("ns", "stable", {"track": "stable"}, 50), Backend("ns", "canary", {"track": "canary"}, 50)],
    )
    assert traffic_shares(pods, [route]) == pytest.approx({"ns/s0": 10.0, "ns/other": 0.0})


def test_routes_in_other_namespaces_or_selecting_nothing_are_ignored() -> None:
    pods = [pod("a", track="stable"), pod("b", track="stable")]
    elsewhere = Route("other-ns", "r", [Backend("other-ns", "s", {"track": "stable"}, 1)])
    empty_selector = Route("ns", "r", [Backend("ns", "missing-service", {}, 1)])
    assert traffic_shares(pods, [elsewhere, empty_selector]) == pytest.approx({"ns/a": 10.0, "ns/b": 10.0})


def test_all_zero_weights_send_no_traffic() -> None:
    route = Route("ns", "r", [Backend("ns", "s", {"track": "stable"}, 0)])
    assert traffic_shares([pod("a", track="stable")], [route]) == {"ns/a": 0.0}


def test_counters_carry_fractions_forward_and_match_the_error_rate() -> None:
    c = RequestCounters()
    for _ in range(1000):  # 1000 ticks of 7 ms at 13 rps, 20% errors: 91 requests in all
        c.advance(rps=13.0, error_rate=0.2, seconds=0.007)
    assert c.total in (90, 91), "fractions must not be lost between ticks"
    assert c.error_total == 18  # 18.2 errors so far
    assert c.ok_total == 72  # 72.8 successes so far


def test_exported_counters_never_decrease() -> None:
    c = RequestCounters()
    seen = (0, 0)
    for step in range(500):
        c.advance(rps=3.3, error_rate=0.37, seconds=0.01 * (step % 7))
        now = (c.ok_total, c.error_total)
        assert now[0] >= seen[0] and now[1] >= seen[1], f"counter went backwards at step {step}: {seen} -> {now}"
        seen = now


def test_no_time_or_no_traffic_counts_nothing() -> None:
    c = RequestCounters()
    c.advance(rps=10, error_rate=0.5, seconds=0)
    c.advance(rps=0, error_rate=0.5, seconds=10)
    assert c.total == 0


def test_histogram_buckets_put_every_request_at_the_pod_latency() -> None:
    buckets = dict(histogram_buckets(0.07, 12))
    assert buckets["0.05"] == 0 and buckets["0.1"] == 12 and buckets["10.0"] == 12 and buckets["+Inf"] == 12
    assert list(dict(histogram_buckets(0.07, 1)))[-1] == "+Inf"
