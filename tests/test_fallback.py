"""spec.fallback, decided pass by pass: kept warm without traffic, takes the traffic when the serving
version has no ready pod (past activateAfter) or degrades with no known-good version, and gives it back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rollguard import reconciler
from rollguard.api.spec import ModelDeploymentSpec
from rollguard.cli_render import render_status
from rollguard.core import builders, clock, naming, policy, schedule
from rollguard.core.facts import RevisionObserved
from rollguard.core.rollout import Decision, Inputs, decide
from tests.test_rollout import NAME, NAMESPACE, WATCHED, Cluster, FakePrometheus, condition, reasons, spec_for

FALLBACK = {"model": {"name": "fraud-rules", "version": "0.9.0", "uri": "s3://models/fraud-rules/0.9.0/"}}
OWNER = builders.Owner(NAME, NAMESPACE, "uid-1")
UNREADY = "pod fraud-x: readiness probe failed"


@dataclass
class FallbackCluster(Cluster):
    """The rollout test cluster, plus the warm fallback Deployment's ready pods."""

    fallback_ready: int = 1

    def inputs(self, **changes: Any) -> Inputs:
        return super().inputs(**{"fallback_ready": self.fallback_ready, **changes})

    def apply(self, decision: Decision) -> None:
        super().apply(decision)
        for workload in decision.workloads:  # what kube._failure reads from the pods of a version never ready
            seen = self.revisions[workload.ref.revision]
            if workload.ref.version in self.never_ready:
                self.revisions[seen.revision] = RevisionObserved(seen.revision, seen.replicas, 0, failure=UNREADY)

    def lose_readiness(self, version: str) -> None:
        """The serving version's pods fail their readiness probes (they keep running)."""
        self.never_ready.add(version)
        self.revisions = {
            rev: RevisionObserved(rev, seen.replicas, 0, failure=UNREADY) for rev, seen in self.revisions.items()
        }

    def recover(self, version: str) -> None:
        self.never_ready.discard(version)
        self.revisions = {
            rev: RevisionObserved(rev, seen.replicas, seen.replicas) for rev, seen in self.revisions.items()
        }


def with_fallback(version: str = "1.0.0", fallback: dict[str, Any] | None = None, **fields: Any) -> ModelDeploymentSpec:
    return spec_for(version, fallback=fallback or FALLBACK, **fields)


def serving_with_fallback(version: str = "1.0.0", **fields: Any) -> FallbackCluster:
    cluster = FallbackCluster(with_fallback(version, **fields))
    cluster.run_until(lambda s: s.phase == "Ready", f"initial rollout of {version}")
    return cluster


def service_selects(service: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    return all(pod_labels.get(key) == value for key, value in service["spec"]["selector"].items())


def pods_of(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def test_a_declared_fallback_is_kept_warm_and_gets_no_traffic() -> None:
    cluster = serving_with_fallback()
    decision = cluster.reconcile()
    fallback = decision.fallback
    assert fallback is not None and (fallback.ref.version, fallback.replicas, fallback.active) == ("0.9.0", 1, False), (
        f"the fallback runs warm at 1 replica, inactive: {fallback}"
    )
    state = decision.status.fallback
    assert state is not None and not state.active and state.version == "0.9.0", f"status.fallback: {state}"
    assert condition(decision.status, "FallbackActive").status == "False", "FallbackActive=False while the model serves"
    assert condition(decision.status, "Ready").status == "True", "the model is Ready"
    assert not [e for e in decision.events if e.reason.startswith("Fallback")], f"no fallback event: {decision.events}"

    manifest = builders.fallback_deployment(OWNER, cluster.spec, fallback.ref, fallback.replicas)
    model_pods = pods_of(builders.deployment(OWNER, cluster.spec, decision.workloads[0].ref, 4, "stable"))
    idle_service = builders.service(OWNER, 8080)
    assert not service_selects(idle_service, pods_of(manifest)), "the model's Service must not select fallback pods"
    assert service_selects(idle_service, model_pods), "the model's Service selects the model's pods"
    switched = builders.service(OWNER, 8080, fallback=True)
    assert service_selects(switched, pods_of(manifest)) and not service_selects(switched, model_pods), (
        "switched, the Service selects the fallback's pods only"
    )


def test_the_fallback_deployment_is_owned_and_under_the_same_pod_policy() -> None:
    spec = with_fallback(fallback={**FALLBACK, "runtime": {"image": "example.com/fraud-rules:1", "port": 9000}})
    platform = policy.PodPolicy(default_service_account="models")
    ref = decide_once(spec).fallback
    assert ref is not None
    manifest = builders.fallback_deployment(OWNER, spec, ref.ref, 1, platform)
    model = builders.deployment(OWNER, spec, decide_once(spec).workloads[0].ref, 4, "stable", platform)
    assert manifest["metadata"]["name"] == naming.fallback_name(NAME) == "fraud-fallback", manifest["metadata"]["name"]
    assert manifest["metadata"]["ownerReferences"] == [OWNER.reference()], "owned (controller) by the ModelDeployment"
    assert naming.LABEL_ROLLOUT_ID not in manifest["metadata"]["labels"], "not a revision: never retired as one"
    pod, model_pod = manifest["spec"]["template"]["spec"], model["spec"]["template"]["spec"]
    for key in ("securityContext", "serviceAccountName", "automountServiceAccountToken"):
        assert pod.get(key) == model_pod.get(key), f"{key}: the platform's, as on the model's pods"
    container = pod["containers"][0]
    assert container["image"] == "example.com/fraud-rules:1" and container["ports"][0]["containerPort"] == 9000
    assert container["securityContext"] == model_pod["containers"][0]["securityContext"], "restricted, as the model"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["MODEL_NAME"], env["MODEL_VERSION"]) == ("fraud-rules", "0.9.0"), env


def decide_once(spec: ModelDeploymentSpec, pod_policy: policy.PodPolicy = policy.LOCKED_DOWN) -> Decision:
    cluster = FallbackCluster(spec)
    cluster.run_until(lambda s: s.phase == "Ready", "ready")
    return cluster.reconcile()


def test_a_fallback_runtime_outside_the_pod_policy_is_refused_naming_its_field() -> None:
    spec = with_fallback(fallback={**FALLBACK, "runtime": {"image": "rules:1", "serviceAccountName": "ops-admin"}})
    decision = decide(
        Inputs(
            name=NAME,
            namespace=NAMESPACE,
            generation=1,
            spec=spec,
            status=FallbackCluster(spec).status,
            annotations={},
            revisions={},
            now=FallbackCluster(spec).now,
        )
    )
    assert decision.invalid_reason == "PolicyViolation", decision.invalid
    assert any(
        p.startswith("spec.fallback.runtime.serviceAccountName: 'ops-admin' is not allowed") for p in decision.invalid
    ), f"the refusal names the fallback's field: {decision.invalid}"


def test_no_ready_pod_past_activate_after_switches_to_the_fallback_and_back() -> None:
    cluster = serving_with_fallback()
    cluster.lose_readiness("1.0.0")
    first = cluster.reconcile(after=1)
    state = first.status.fallback
    assert state is not None and state.unready_since is not None and not state.active, f"the clock starts: {state}"
    due = schedule.next_due(cluster.spec, first.status, cluster.now)
    assert due == cluster.now + timedelta(seconds=10), f"the next pass is due when activateAfter (10s) ends: {due}"

    active = cluster.reconcile(after=10)
    state = active.status.fallback
    assert active.fallback is not None and active.fallback.active, "the Services switch to the fallback"
    assert state is not None and (state.active, state.reason, state.cause) == (
        True,
        "ServingNotReady",
        "Infrastructure",
    )
    warnings = [e for e in active.events if e.reason == "FallbackActivated"]
    assert len(warnings) == 1 and warnings[0].type == "Warning", f"one Warning FallbackActivated: {active.events}"
    assert "no pod of version 1.0.0 ready" in warnings[0].message and "readiness probe failed" in warnings[0].message
    ready = condition(active.status, "Ready")
    assert (ready.status, ready.reason) == ("False", "FallbackActive"), f"Ready says the fallback serves: {ready}"
    assert condition(active.status, "FallbackActive").status == "True"
    assert active.status.message.startswith("fallback 0.9.0 serves the traffic"), active.status.message

    still = cluster.reconcile(after=30)
    assert still.fallback is not None and still.fallback.active and not still.events, "stays, once announced"
    assert still.status.fallback == active.status.fallback, "no status change while it serves (no write per pass)"

    cluster.recover("1.0.0")
    back = cluster.reconcile(after=5)
    assert back.fallback is not None and not back.fallback.active, "the Services select the model again"
    released = [e for e in back.events if e.reason == "FallbackReleased"]
    assert len(released) == 1 and released[0].type == "Normal", f"one Normal FallbackReleased: {back.events}"
    assert "after 35s" in released[0].message, released[0].message
    state = back.status.fallback
    assert state is not None and not state.active and (state.reason, state.cause) == (None, None), state
    assert (state.since, state.message) == (clock.iso(cluster.now), released[0].message), "the switch, to announce"
    assert condition(back.status, "Ready").status == "True", "Ready again"


def test_a_blip_shorter_than_activate_after_does_not_switch() -> None:
    cluster = serving_with_fallback()
    cluster.lose_readiness("1.0.0")
    cluster.reconcile(after=1)
    cluster.recover("1.0.0")
    after = cluster.reconcile(after=9)
    assert after.fallback is not None and not after.fallback.active, "9s < activateAfter 10s"
    assert after.status.fallback is not None and after.status.fallback.unready_since is None, "the clock resets"
    assert "FallbackActivated" not in reasons(cluster.events)


def test_without_a_fallback_nothing_changes() -> None:
    cluster = FallbackCluster(spec_for("1.0.0"))
    cluster.run_until(lambda s: s.phase == "Ready", "ready")
    cluster.lose_readiness("1.0.0")
    decision = cluster.reconcile(after=60)
    assert decision.fallback is None and decision.status.fallback is None, "nothing declared, nothing decided"
    assert all(c.type != "FallbackActive" for c in decision.status.conditions)


def test_a_degraded_version_with_no_known_good_hands_the_traffic_to_the_fallback_until_a_new_version() -> None:
    cluster = serving_with_fallback(analysis=WATCHED)
    cluster.prometheus = FakePrometheus(value=0.2)
    degraded = cluster.run_until(lambda s: s.watch is None, "post-promotion failure")
    assert "DegradedNoKnownGood" in reasons(degraded.events), degraded.events
    state = degraded.status.fallback
    assert state is not None and (state.active, state.reason, state.cause) == (
        True,
        "PostPromotionAnalysisFailed",
        "Model",
    ), f"the fallback serves at once (no grace: the model is bad, not starting): {state}"
    assert degraded.fallback is not None and degraded.fallback.active
    assert "FallbackActivated" in reasons(degraded.events, "Warning")

    cluster.set_spec(with_fallback("2.0.0", analysis=WATCHED))
    started = cluster.reconcile()
    assert started.status.rollout is not None and started.status.rollout.target.version == "2.0.0"
    assert started.fallback is not None and not started.fallback.active, "a new version needs real traffic"
    released = [e for e in started.events if e.reason == "FallbackReleased"]
    assert released and "2.0.0 rolling out" in released[0].message, started.events


def test_a_degraded_version_waits_for_a_ready_fallback_before_switching() -> None:
    cluster = serving_with_fallback(analysis=WATCHED)
    cluster.fallback_ready = 0
    cluster.prometheus = FakePrometheus(value=0.2)
    degraded = cluster.run_until(lambda s: s.watch is None, "post-promotion failure")
    assert degraded.fallback is not None and not degraded.fallback.active, "never trade a degraded model for nothing"
    cluster.fallback_ready = 1
    switched = cluster.reconcile()
    assert switched.fallback is not None and switched.fallback.active, "switches once the fallback is ready"


def test_a_degraded_version_with_a_known_good_rolls_back_instead() -> None:
    cluster = serving_with_fallback(analysis=WATCHED)
    cluster.set_spec(with_fallback("2.0.0", analysis=WATCHED))
    cluster.run_until(lambda s: s.stable is not None and s.stable.version == "2.0.0" and not s.retired, "2.0.0")
    cluster.prometheus = FakePrometheus(value=0.2)
    decision = cluster.run_until(lambda s: s.rollout is not None, "post-promotion failure")
    assert decision.status.rollout is not None and decision.status.rollout.kind == "Rollback"
    assert decision.fallback is not None and not decision.fallback.active, "a known-good version takes over"
    assert "FallbackActivated" not in reasons(cluster.events)


def test_removing_spec_fallback_while_it_serves_releases_it() -> None:
    cluster = serving_with_fallback()
    cluster.lose_readiness("1.0.0")
    cluster.reconcile(after=1)
    assert cluster.reconcile(after=10).status.fallback is not None
    cluster.set_spec(spec_for("1.0.0"))
    removed = cluster.reconcile()
    assert removed.fallback is None and removed.status.fallback is None, "no fallback to run or report"
    assert "FallbackReleased" in reasons(removed.events), removed.events
    assert all(c.type != "FallbackActive" for c in removed.status.conditions)


def test_the_status_view_says_whether_the_fallback_serves() -> None:
    cluster = serving_with_fallback()

    def view() -> str:
        body = {
            "metadata": {"name": NAME, "namespace": NAMESPACE, "generation": 1},
            "spec": cluster.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
            "status": cluster.status.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        return render_status(body, cluster.now)

    assert "Fallback:    0.9.0 kept warm (1 ready), no traffic" in view(), view()
    cluster.lose_readiness("1.0.0")
    cluster.reconcile(after=1)
    cluster.reconcile(after=10)
    cluster.reconcile(after=60)
    text = view()
    assert "Fallback:    0.9.0 serves the model's traffic, taken 1m ago (ServingNotReady, cause Infrastructure)" in text
    assert "FallbackActive" in text, "the conditions table shows it too"


def test_every_service_of_the_model_switches_to_the_fallback_with_gateway_api_routing_too() -> None:
    routing = {
        "type": "Canary",
        "canary": {"steps": [{"weight": 50}], "trafficRouting": {"type": "GatewayAPI", "httpRoute": {"name": "r"}}},
    }
    cluster = serving_with_fallback(strategy=routing)
    idle = reconciler._children(OWNER, cluster.spec, cluster.reconcile(), policy.LOCKED_DOWN)
    cluster.lose_readiness("1.0.0")
    cluster.reconcile(after=1)
    active = reconciler._children(OWNER, cluster.spec, cluster.reconcile(after=10), policy.LOCKED_DOWN)
    for children, selects_fallback in ((idle, False), (active, True)):
        services = {c["metadata"]["name"]: c["spec"]["selector"] for c in children if c["kind"] == "Service"}
        assert set(services) == {"fraud", "fraud-stable", "fraud-canary"}, services
        switched = {name for name, selector in services.items() if selector == {naming.LABEL_FALLBACK: NAME}}
        assert switched == (set(services) if selects_fallback else set()), f"active={selects_fallback}: {services}"
        deployments = [c["metadata"]["name"] for c in children if c["kind"] == "Deployment"]
        assert "fraud-fallback" in deployments, f"the fallback Deployment is applied either way: {deployments}"
