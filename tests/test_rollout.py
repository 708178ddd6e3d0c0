"""The rollout state machine, driven pass by pass through decide() against a tiny simulated cluster.

Time never passes by itself: every pass says how far `now` moves. The simulated cluster applies each
decision's workloads (pods become ready at once, or never for versions listed in `never_ready`),
deletes Deployments the decision no longer keeps, and answers analysis rounds from a fake Prometheus.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import CheckResult, Condition, ModelDeploymentStatus
from rollguard.core import actions, clock, plan
from rollguard.core.analysis import Measurement, judge
from rollguard.core.facts import Event, RevisionObserved
from rollguard.core.rollout import Decision, Inputs, canary_replicas, decide

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NAME, NAMESPACE = "fraud", "ml-prod"
REPLICAS = 4

CANARY = {
    "type": "Canary",
    "canary": {
        "steps": [{"weight": 20, "pause": {"duration": "1m"}}, {"weight": 50, "pause": {"duration": "1m"}}],
        "scaleDownDelay": "30s",
    },
}
ERROR_RATE = {
    "interval": "30s",
    "failureLimit": 1,
    "metrics": [{"name": "error-rate", "template": "error-rate", "thresholdRange": {"max": 0.01}}],
}


def spec_for(version: str, **fields: Any) -> ModelDeploymentSpec:
    raw: dict[str, Any] = {
        "model": {"name": "fraud-detector", "version": version, "uri": f"s3://models/fraud-detector/{version}/"},
        "runtime": {"image": "docker.io/seldonio/mlserver:1.6.1"},
        "replicas": REPLICAS,
        "strategy": CANARY,
        "analysis": ERROR_RATE,
    }
    raw.update(fields)
    return ModelDeploymentSpec.model_validate(raw)


@dataclass
class FakePrometheus:
    """What every check reads this round, for the canary (and the same for stable)."""

    value: float | None = 0.001
    samples: float | None = 1000.0
    error: str | None = None
    stable_value: float | None = 0.001  # stable's own reading of threshold-only checks: healthy unless set

    def measure(self, planned: plan.PlannedCheck) -> Measurement:
        value = None if self.error else self.value
        stable = value if planned.stable_query else None
        if planned.stable_evidence_only:
            stable = None if self.error else self.stable_value
        return Measurement(planned.check.name, planned.query, value, self.samples, stable, self.error)


@dataclass
class Cluster:
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)
    revisions: dict[str, RevisionObserved] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    never_ready: set[str] = field(default_factory=set)
    prometheus: FakePrometheus | None = field(default_factory=FakePrometheus)
    generation: int = 1
    now: datetime = T0
    events: list[Event] = field(default_factory=list)
    rounds: int = 0

    def set_spec(self, spec: ModelDeploymentSpec) -> None:
        self.spec = spec
        self.generation += 1

    def annotate(self, action: str, value: str) -> None:
        self.annotations[actions.ANNOTATION_PREFIX + action] = value

    def analysis(self) -> list[CheckResult] | None:
        """What the reconciler measures this pass: a round only when plan.due says one is due."""
        paused = self.spec.paused or actions.paused_by_annotation(self.annotations)
        due = plan.due(self.spec, self.status, self.now, paused)
        if due is None or self.prometheus is None:
            return None
        self.rounds += 1
        subject, baseline = due
        tracked = self.status.rollout or self.status.watch
        previous = {r.name: r for r in tracked.checks} if tracked else {}
        return [
            judge(p.check, self.prometheus.measure(p), previous.get(p.check.name), clock.iso(self.now))
            for p in plan.render_all(self.spec, NAME, NAMESPACE, subject, baseline)
        ]

    def inputs(self, **changes: Any) -> Inputs:
        """This pass's Inputs from the cluster's state, `changes` replacing fields (no round measured if given)."""
        if "analysis" not in changes:
            changes["analysis"] = self.analysis()
        current = Inputs(
            name=NAME,
            namespace=NAMESPACE,
            generation=self.generation,
            spec=self.spec,
            status=self.status,
            annotations=dict(self.annotations),
            revisions=dict(self.revisions),
            now=self.now,
            metrics_configured=self.prometheus is not None,
        )
        return replace(current, **changes)

    def reconcile(self, after: float = 10) -> Decision:
        self.now += timedelta(seconds=after)
        decision = decide(self.inputs())
        self.status = decision.status
        self.events += decision.events
        self.apply(decision)
        return decision

    def apply(self, decision: Decision) -> None:
        assert {w.ref.revision for w in decision.workloads} <= decision.keep_revisions, (
            "every revision the decision runs should also be kept"
        )
        applied: dict[str, RevisionObserved] = {}
        for workload in decision.workloads:
            seen = self.revisions.get(workload.ref.revision)
            replicas = workload.replicas
            if replicas is None:  # the autoscaler's: keeps its count, within its bounds
                bounds = self.spec.autoscaling
                current = seen.replicas if seen else 1
                replicas = min(max(current, bounds.min_replicas), bounds.max_replicas) if bounds else current
            ready = 0 if workload.ref.version in self.never_ready else replicas
            applied[workload.ref.revision] = RevisionObserved(workload.ref.revision, replicas, ready)
        kept = {rev: seen for rev, seen in self.revisions.items() if rev in decision.keep_revisions}
        self.revisions = {**kept, **applied}

    def run_until(self, done: Callable[[ModelDeploymentStatus], bool], what: str, passes: int = 100) -> Decision:
        for _ in range(passes):
            decision = self.reconcile()
            if done(self.status):
                return decision
        pytest.fail(f"not reached after {passes} passes: {what}; phase {self.status.phase}: {self.status.message}")


def reasons(events: list[Event], type_: str | None = None) -> list[str]:
    return [e.reason for e in events if type_ is None or e.type == type_]


def condition(status: ModelDeploymentStatus, type_: str) -> Condition:
    found = next((c for c in status.conditions if c.type == type_), None)
    assert found is not None, f"condition {type_} should be set, got {[c.type for c in status.conditions]}"
    return found


def kstatus(status: ModelDeploymentStatus) -> tuple[str, str, str]:
    return tuple(condition(status, t).status for t in ("Ready", "Reconciling", "Stalled"))  # type: ignore[return-value]


def serving(version: str, **fields: Any) -> Cluster:
    """A cluster already serving `version` (Ready), with the spec asking for it."""
    cluster = Cluster(spec_for(version, **fields))
    cluster.run_until(lambda s: s.phase == "Ready", f"initial rollout of {version}")
    return cluster


def reach_weight(cluster: Cluster, step: int = 0) -> None:
    cluster.run_until(
        lambda s: s.rollout is not None and s.rollout.step_index == step and s.rollout.weight_reached_at is not None,
        f"canary pods ready at step {step + 1}",
    )


# -- first version -----------------------------------------------------------------------------
def test_first_version_rolls_out_and_becomes_ready() -> None:
    cluster = Cluster(spec_for("1.0.0"))
    first = cluster.reconcile()
    assert first.status.rollout is not None and first.status.rollout.kind == "Initial", "the first version is Initial"
    assert [(w.ref.version, w.replicas) for w in first.workloads] == [("1.0.0", REPLICAS)], (
        f"the Initial rollout should run the spec's replicas, got {first.workloads}"
    )
    assert (first.status.phase, kstatus(first.status)) == ("Progressing", ("False", "True", "False")), (
        "while pods start: Progressing, Ready False, Reconciling True; "
        f"got {first.status.phase} {kstatus(first.status)}"
    )
    assert "RolloutStarted" in reasons(first.events), f"events: {first.events}"

    second = cluster.reconcile()
    assert second.status.phase == "Ready", f"all pods ready should make it Ready, got {second.status.message}"
    assert kstatus(second.status) == ("True", "False", "False"), f"Ready True only: {kstatus(second.status)}"
    assert second.status.serving_version == "1.0.0", f"serving: {second.status.serving_version}"
    assert [(h.version, h.outcome) for h in second.status.history] == [("1.0.0", "Promoted")], "history"
    assert "Promoted" in reasons(second.events), f"events: {second.events}"
    assert [(w.ref.version, w.role, w.replicas) for w in second.workloads] == [("1.0.0", "stable", REPLICAS)], (
        f"once promoted the version runs as the stable workload, got {second.workloads}"
    )
    assert second.status.selector == "rollguard.io/model-deployment=fraud", "the scale subresource's selector"
    assert (second.status.replicas, second.status.ready_replicas) == (REPLICAS, REPLICAS), "replica counts"


def test_conditions_carry_the_observed_generation() -> None:
    cluster = serving("1.0.0")
    cluster.set_spec(spec_for("2.0.0"))
    cluster.set_spec(spec_for("2.0.0"))  # generation 3
    decision = cluster.reconcile()
    assert decision.status.observed_generation == 3, f"observedGeneration: {decision.status.observed_generation}"
    stale = [(c.type, c.observed_generation) for c in decision.status.conditions if c.observed_generation != 3]
    assert not stale, f"every condition should carry observedGeneration 3, got {stale}"


def test_last_transition_time_moves_only_when_a_condition_flips() -> None:
    cluster = Cluster(spec_for("1.0.0"))
    cluster.reconcile()
    became_ready = cluster.reconcile()
    ready_since = condition(became_ready.status, "Ready").last_transition_time
    assert ready_since == clock.iso(cluster.now), "Ready flipped to True on this pass"
    later = cluster.reconcile(after=300)
    assert condition(later.status, "Ready").last_transition_time == ready_since, (
        "an unchanged Ready=True should keep its lastTransitionTime"
    )


def test_ready_only_while_every_replica_of_the_serving_version_is_ready() -> None:
    cluster = serving("1.0.0")
    stable = cluster.status.stable
    assert stable is not None, "1.0.0 should be serving"
    cluster.revisions[stable.revision] = RevisionObserved(stable.revision, REPLICAS, REPLICAS - 1)
    decision = cluster.reconcile()  # decides on what it sees (3/4 ready), then the simulation re-applies
    assert decision.status.phase == "Progressing", f"3/4 ready is not Ready, got {decision.status.phase}"
    assert kstatus(decision.status) == ("False", "True", "False"), f"got {kstatus(decision.status)}"
    assert condition(decision.status, "Ready").reason == "ScalingUp", condition(decision.status, "Ready")


# -- canary walk-through ----------------------------------------------------------------------
def test_healthy_canary_walks_its_steps_and_is_promoted() -> None:
    cluster = serving("1.0.0")
    old = cluster.status.stable
    assert old is not None, "1.0.0 should be serving"
    cluster.set_spec(spec_for("2.0.0"))

    started = cluster.reconcile()
    rollout = started.status.rollout
    assert rollout is not None and (rollout.kind, rollout.step_index) == ("Canary", 0), f"got {rollout}"
    assert [(w.ref.version, w.role, w.replicas) for w in started.workloads] == [
        ("1.0.0", "stable", REPLICAS),
        ("2.0.0", "canary", canary_replicas(REPLICAS, 20)),
    ], f"step 1 should add a 20% canary next to the full stable (maxSurge 25%: 1 pod), got {started.workloads}"
    assert kstatus(started.status) == ("False", "True", "False"), "a rollout in progress is Reconciling"

    shrinking = cluster.reconcile()
    assert [(w.ref.version, w.replicas) for w in shrinking.workloads] == [("1.0.0", REPLICAS - 1), ("2.0.0", 1)], (
        f"once the canary's pod is ready, stable gives one up: {shrinking.workloads}"
    )
    assert shrinking.status.rollout and shrinking.status.rollout.weight_reached_at is None, "not reached yet"
    reached = cluster.reconcile()
    assert reached.status.rollout and reached.status.rollout.weight == 20, "canary pods ready: weight 20 reached"
    assert reached.status.canary_weight == 25, f"1 of 4 ready pods is 25%, got {reached.status.canary_weight}"
    weight_at = cluster.now

    before_pause = cluster.run_until(lambda s: cluster.rounds >= 1, "first analysis round")
    assert before_pause.status.rollout and before_pause.status.rollout.step_index == 0, "pause 1m not over yet"
    checks = before_pause.status.rollout.checks
    assert [(c.name, c.phase) for c in checks] == [("error-rate", "Passed")], f"checks: {checks}"
    canary_pods = f'pod=~"{NAME}-{started.status.rollout.target.revision}-'
    assert canary_pods in checks[0].query, f"the canary's own pods are judged: {checks[0].query}"

    cluster.run_until(lambda s: s.rollout is not None and s.rollout.step_index == 1, "step 2")
    assert cluster.now - weight_at >= timedelta(minutes=1), "step 1 should be held for its 1m pause"
    assert "StepAdvanced" in reasons(cluster.events), f"events: {reasons(cluster.events)}"

    promoted = cluster.run_until(lambda s: s.rollout is None, "promotion")
    assert promoted.status.stable and promoted.status.stable.version == "2.0.0", "2.0.0 should be stable"
    assert {"Promoting", "Promoted"} <= set(reasons(cluster.events)), f"events: {reasons(cluster.events)}"
    assert (promoted.status.history[-1].version, promoted.status.history[-1].outcome) == ("2.0.0", "Promoted"), (
        f"history should end with 2.0.0 Promoted, got {promoted.status.history[-1]}"
    )
    assert promoted.status.history[-1].metrics == {"error-rate": 0.001}, "history keeps the evidence of promotion"
    assert promoted.status.phase == "Ready" and kstatus(promoted.status) == ("True", "False", "False"), (
        f"serving the spec's version on every pod: Ready, got {promoted.status.phase} {kstatus(promoted.status)}"
    )

    assert old.revision in promoted.keep_revisions, "the old version keeps its pods for scaleDownDelay"
    assert old.revision not in {w.ref.revision for w in promoted.workloads}, "but is no longer a workload"
    cluster.reconcile(after=20)
    assert old.revision in cluster.revisions, "still kept 20s after promotion (scaleDownDelay 30s)"
    gone = cluster.reconcile(after=10)
    assert old.revision not in gone.keep_revisions, "30s after promotion the old version is released"
    assert old.revision not in cluster.revisions and not gone.status.retired, "and its Deployment deleted"


def test_a_canary_step_waits_for_a_passing_round_not_just_the_pause() -> None:
    tolerant = {**ERROR_RATE, "failureLimit": 100}
    cluster = serving("1.0.0", analysis=tolerant)
    cluster.set_spec(spec_for("2.0.0", analysis=tolerant))
    reach_weight(cluster)
    cluster.prometheus = FakePrometheus(value=0.5)
    for _ in range(20):
        cluster.reconcile()
    rollout = cluster.status.rollout
    assert rollout is not None and rollout.step_index == 0, "a failing (not yet fatal) check should block the step"
    assert rollout.failures > 1, f"failed rounds should be counted, got {rollout.failures}"


def test_steps_without_checks_advance_when_the_pause_elapses() -> None:
    cluster = serving("1.0.0", analysis={})
    cluster.set_spec(spec_for("2.0.0", analysis={}))
    reach_weight(cluster)
    cluster.reconcile(after=50)
    assert cluster.status.rollout and cluster.status.rollout.step_index == 0, "pause of 1m not over after 50s"
    cluster.reconcile(after=10)
    assert cluster.status.rollout and cluster.status.rollout.step_index == 1, "1m after reaching 20% it moves on"
    assert cluster.rounds == 0, "without checks no analysis round is ever due"


def test_a_step_without_duration_waits_for_a_human() -> None:
    steps = {"type": "Canary", "canary": {"steps": [{"weight": 30, "pause": {}}]}}
    cluster = serving("1.0.0", strategy=steps)
    cluster.set_spec(spec_for("2.0.0", strategy=steps))
    reach_weight(cluster)
    cluster.reconcile(after=24 * 3600)
    assert cluster.status.rollout and not cluster.status.rollout.promoting, "pause {} holds until promoted"
    waiting = condition(cluster.status, "Reconciling")
    assert (cluster.status.phase, waiting.reason) == ("Holding", "AwaitingPromotion"), waiting
    assert "step 1 waits for a human: `kubectl rollguard promote fraud`" in cluster.status.message
    cluster.annotate("promote", "go")
    cluster.reconcile()
    assert cluster.status.rollout and cluster.status.rollout.promoting, "promote on the last step starts promotion"


# -- rollback on failed analysis --------------------------------------------------------------
def failing_canary() -> Cluster:
    cluster = serving("1.0.0")
    cluster.set_spec(spec_for("2.0.0"))
    reach_weight(cluster)
    cluster.prometheus = FakePrometheus(value=0.05)
    return cluster


def test_failing_analysis_rolls_back_after_failure_limit() -> None:
    cluster = failing_canary()
    canary = cluster.status.rollout
    assert canary is not None, "a canary should be in progress"
    cluster.run_until(lambda s: cluster.rounds == 1, "first failing round")
    assert cluster.status.rollout and cluster.status.rollout.failures == 1, "one failure is within failureLimit 1"

    decision = cluster.run_until(lambda s: s.rollout is None, "rollback")
    rejected = decision.status.rejected
    assert rejected is not None, "the rolled back version should be recorded in status.rejected"
    assert (rejected.version, rejected.reason, rejected.check) == ("2.0.0", "AnalysisFailed", "error-rate"), rejected
    assert (rejected.value, rejected.limit) == (0.05, "<= 0.01"), f"evidence value/limit: {rejected}"
    assert rejected.query and f'pod=~"{NAME}-{canary.target.revision}-' in rejected.query, rejected.query
    warnings = [e for e in decision.events if e.type == "Warning" and e.reason == "RolledBack"]
    assert len(warnings) == 1 and "2.0.0" in warnings[0].message and "serving 1.0.0" in warnings[0].message, (
        f"a Warning RolledBack event should name the version and what serves now, got {decision.events}"
    )
    assert (decision.status.history[-1].version, decision.status.history[-1].outcome) == ("2.0.0", "RolledBack"), (
        f"history should end with 2.0.0 RolledBack, got {decision.status.history[-1]}"
    )
    assert [w.ref.version for w in decision.workloads] == ["1.0.0"], "only the known-good version runs"
    assert canary.target.revision not in decision.keep_revisions, "the canary's Deployment is deleted"
    assert decision.status.phase == "RolledBack", f"phase: {decision.status.phase}"
    assert kstatus(decision.status) == ("False", "False", "True"), (
        "rolled back: not Ready (not the spec's version), Stalled until the spec changes; "
        f"got {kstatus(decision.status)}"
    )
    assert "kubectl rollguard retry fraud" in decision.status.message, decision.status.message

    for _ in range(5):
        again = cluster.reconcile(after=60)
        assert again.status.rollout is None, "the same spec should not be rolled out again"
        assert "RolloutStarted" not in reasons(again.events), f"nothing should start: {again.events}"


def test_new_version_after_a_rejection_starts_a_new_canary() -> None:
    cluster = failing_canary()
    cluster.run_until(lambda s: s.rejected is not None, "rollback")
    cluster.set_spec(spec_for("2.0.1"))
    decision = cluster.reconcile()
    rollout = decision.status.rollout
    assert rollout is not None and (rollout.kind, rollout.target.version) == ("Canary", "2.0.1"), f"got {rollout}"
    assert decision.status.rejected is None, "a new version clears the old rejection"


def test_reverting_the_spec_to_the_serving_version_clears_the_rejection() -> None:
    cluster = failing_canary()
    cluster.run_until(lambda s: s.rejected is not None, "rollback")
    cluster.set_spec(spec_for("1.0.0"))
    decision = cluster.reconcile()
    assert decision.status.rejected is None and decision.status.rollout is None, "nothing to do: 1.0.0 serves"
    assert decision.status.phase == "Ready", f"serving the spec's version again: {decision.status.message}"


# -- pods that never become ready -------------------------------------------------------------
@pytest.mark.parametrize("strategy", [CANARY, {"type": "Rolling"}], ids=["canary", "rolling"])
def test_never_ready_version_is_rolled_back_after_the_progress_deadline(strategy: dict[str, Any]) -> None:
    cluster = serving("1.0.0", strategy=strategy, progressDeadlineSeconds=60)
    cluster.never_ready.add("2.0.0")
    cluster.set_spec(spec_for("2.0.0", strategy=strategy, progressDeadlineSeconds=60))
    cluster.reconcile()
    cluster.reconcile(after=50)
    assert cluster.status.rollout is not None, "within progressDeadlineSeconds the rollout keeps waiting"
    decision = cluster.reconcile(after=15)
    rejected = decision.status.rejected
    assert rejected is not None and rejected.reason == "ProgressDeadlineExceeded", f"rejected: {rejected}"
    assert "0/" in rejected.message and "after 60s" in rejected.message, f"message: {rejected.message}"
    assert "RolledBack" in reasons(decision.events, "Warning"), f"events: {decision.events}"
    assert decision.status.stable and decision.status.stable.version == "1.0.0", "1.0.0 keeps serving"


def test_never_ready_first_version_holds_with_nothing_to_go_back_to() -> None:
    cluster = Cluster(spec_for("1.0.0", progressDeadlineSeconds=60))
    cluster.never_ready.add("1.0.0")
    cluster.reconcile()
    held = cluster.reconcile(after=61)
    assert held.status.rollout and held.status.rollout.paused_reason == "ProgressDeadlineExceeded", held.status
    assert held.status.phase == "Holding", f"phase: {held.status.phase}"
    assert kstatus(held.status) == ("False", "False", "True"), f"kstatus: {kstatus(held.status)}"
    assert condition(held.status, "Stalled").reason == "ProgressDeadlineExceeded", condition(held.status, "Stalled")
    assert reasons(held.events, "Warning") == ["ProgressDeadlineExceeded"], f"events: {held.events}"
    again = cluster.reconcile(after=60)
    assert "ProgressDeadlineExceeded" not in reasons(again.events), "the warning should not repeat every pass"
    cluster.never_ready.clear()
    cluster.reconcile()
    ready = cluster.reconcile()
    assert ready.status.phase == "Ready", f"pods that become ready late still promote: {ready.status.message}"


# -- metrics unavailable ----------------------------------------------------------------------
def unavailable(action: str = "Hold", **analysis: Any) -> Cluster:
    settings = {**ERROR_RATE, "metricsUnavailable": {"deadline": "2m", "action": action}, **analysis}
    cluster = serving("1.0.0", analysis=settings)
    cluster.set_spec(spec_for("2.0.0", analysis=settings))
    reach_weight(cluster)
    cluster.prometheus = FakePrometheus(error="connection refused")
    return cluster


def test_unavailable_metrics_hold_the_step_and_count_nothing() -> None:
    cluster = unavailable()
    cluster.run_until(lambda s: cluster.rounds == 1, "first unavailable round")
    first_error_at = clock.iso(cluster.now)
    rollout = cluster.status.rollout
    assert rollout is not None and rollout.metrics_unavailable_since == first_error_at, f"rollout: {rollout}"
    assert all(c.type != "MetricsAvailable" or c.status != "False" for c in cluster.status.conditions), (
        "one error is within consecutiveErrorLimit 2: MetricsAvailable should not be False yet"
    )
    cluster.run_until(lambda s: cluster.rounds == 3, "third unavailable round")
    rollout = cluster.status.rollout
    assert rollout is not None and rollout.step_index == 0, "no step advance without measurements (pause is over)"
    assert (rollout.failures, rollout.inconclusive) == (0, 0), "cannot-measure must not count as a failure"
    assert rollout.metrics_unavailable_since == first_error_at, "the start of the outage is kept"
    metrics = condition(cluster.status, "MetricsAvailable")
    assert (metrics.status, metrics.reason) == ("False", "QueryFailed"), f"after 3 errors: {metrics}"
    assert "connection refused" in metrics.message, f"the condition should say why: {metrics.message}"
    assert "MetricsUnavailable" in reasons(cluster.events, "Warning"), f"events: {reasons(cluster.events)}"
    assert cluster.status.phase == "Holding", "before the deadline the canary waits in place, and says so"
    waiting = condition(cluster.status, "Reconciling")
    assert (waiting.status, waiting.reason) == ("True", "WaitingForMetrics"), waiting
    assert "after analysis.metricsUnavailable.deadline (2m) it will hold for a human" in waiting.message, waiting
    assert condition(cluster.status, "Stalled").status == "False", "waiting on metrics is not stuck yet"


def test_metrics_coming_back_resume_analysis() -> None:
    cluster = unavailable()
    cluster.run_until(lambda s: cluster.rounds == 3, "three unavailable rounds")
    cluster.prometheus = FakePrometheus()
    cluster.run_until(lambda s: cluster.rounds == 4, "a good round")
    assert condition(cluster.status, "MetricsAvailable").status == "True", "data again: MetricsAvailable True"
    assert cluster.status.rollout and cluster.status.rollout.metrics_unavailable_since is None, "outage over"
    assert "MetricsAvailable" in reasons(cluster.events, "Normal"), f"events: {reasons(cluster.events)}"
    cluster.run_until(lambda s: s.rollout is not None and s.rollout.step_index == 1, "step 2 after recovery")


def test_unavailable_past_the_deadline_holds_for_a_human() -> None:
    cluster = unavailable("Hold")
    held = cluster.run_until(lambda s: condition(s, "Stalled").status == "True", "hold after the deadline")
    rollout = held.status.rollout
    assert rollout is not None and rollout.paused_reason == "MetricsUnavailable", f"rollout: {rollout}"
    since = clock.parse(rollout.metrics_unavailable_since or "")
    assert cluster.now - since > timedelta(minutes=2), "the hold starts only after the 2m deadline"
    assert kstatus(held.status) == ("False", "False", "True"), f"Holding is Stalled: {kstatus(held.status)}"
    assert condition(held.status, "Stalled").reason == "MetricsUnavailable", condition(held.status, "Stalled")
    rounds = cluster.rounds
    for _ in range(10):
        cluster.reconcile(after=60)
    assert cluster.rounds == rounds, "a held canary is not analysed until released"
    assert cluster.status.phase == "Holding" and cluster.status.rejected is None, "Hold never rolls back by itself"

    cluster.prometheus = FakePrometheus()
    cluster.annotate("resume", "r1")
    resumed = cluster.reconcile()
    assert resumed.status.rollout and resumed.status.rollout.paused_reason is None, "resume releases the hold"
    assert "Resumed" in reasons(resumed.events), f"events: {resumed.events}"
    cluster.run_until(lambda s: s.rollout is not None and s.rollout.step_index == 1, "step 2 after resume")


def test_unavailable_past_the_deadline_rolls_back_when_asked_to() -> None:
    cluster = unavailable("Rollback")
    decision = cluster.run_until(lambda s: s.rollout is None, "rollback after the deadline")
    rejected = decision.status.rejected
    assert rejected is not None and rejected.reason == "MetricsUnavailable", f"rejected: {rejected}"
    assert "RolledBack" in reasons(decision.events, "Warning"), f"events: {decision.events}"


def test_promote_releases_a_metrics_hold_for_good() -> None:
    cluster = unavailable("Hold")
    cluster.run_until(lambda s: s.phase == "Holding", "hold")
    cluster.prometheus = FakePrometheus()
    cluster.annotate("promote", "p1")
    cluster.reconcile()
    assert cluster.status.rollout and cluster.status.rollout.step_index == 1, "promote moves to the next step"
    for _ in range(3):
        cluster.reconcile()
    assert cluster.status.phase != "Holding", (
        "after a human promoted past the hold, the next step should be analysed afresh, not held on the old outage"
    )
    cluster.run_until(lambda s: s.rollout is None, "promotion after fresh passing rounds")


def test_too_many_inconclusive_rounds_hold_the_canary() -> None:
    checks = {**ERROR_RATE, "inconclusiveLimit": 2, "metrics": [{**ERROR_RATE["metrics"][0], "minSampleCount": 100}]}
    cluster = serving("1.0.0", analysis=checks)
    cluster.set_spec(spec_for("2.0.0", analysis=checks))
    reach_weight(cluster)
    cluster.prometheus = FakePrometheus(value=0.5, samples=3.0)
    held = cluster.run_until(lambda s: s.phase == "Holding", "inconclusive hold")
    rollout = held.status.rollout
    assert rollout is not None and (rollout.paused_reason, rollout.inconclusive) == ("InconclusiveAnalysis", 3), (
        f"the 3rd inconclusive round (limit 2) should hold the canary, got {rollout}"
    )
    assert rollout.failures == 0, "a bad value on too few samples is not a failure"
    assert "InconclusiveAnalysis" in reasons(cluster.events, "Warning"), f"events: {reasons(cluster.events)}"


# -- supersede --------------------------------------------------------------------------------
def test_new_version_mid_canary_supersedes_it_and_starts_at_step_one() -> None:
    cluster = serving("1.0.0")
    cluster.set_spec(spec_for("2.0.0"))
    cluster.run_until(lambda s: s.rollout is not None and s.rollout.step_index == 1, "step 2 of 2.0.0")
    old_canary = cluster.status.rollout
    assert old_canary is not None, "2.0.0 should be in progress"
    cluster.set_spec(spec_for("3.0.0"))
    decision = cluster.reconcile()
    rollout = decision.status.rollout
    assert rollout is not None and rollout.target.version == "3.0.0", f"rollout: {rollout}"
    assert (rollout.step_index, rollout.weight, rollout.failures, rollout.checks) == (0, 0, 0, []), (
        f"the new canary starts from scratch, got {rollout}"
    )
    last = decision.status.history[-1]
    assert (last.version, last.outcome) == ("2.0.0", "Superseded"), f"history: {last}"
    assert "3.0.0" in last.reason, f"the entry should say what replaced it: {last.reason}"
    assert "Superseded" in reasons(decision.events), f"events: {decision.events}"
    assert old_canary.target.revision not in decision.keep_revisions, "the superseded canary is removed"
    assert decision.status.stable and decision.status.stable.version == "1.0.0", "1.0.0 still serves"


# -- manual actions ---------------------------------------------------------------------------
def held_step(version: str = "2.0.0") -> Cluster:
    """A canary at step 1 whose pause (1h) keeps it there unless a human acts."""
    steps = {"type": "Canary", "canary": {"steps": [{"weight": 20, "pause": {"duration": "1h"}}, {"weight": 50}]}}
    cluster = serving("1.0.0", strategy=steps)
    cluster.set_spec(spec_for(version, strategy=steps))
    reach_weight(cluster)
    return cluster


def test_promote_advances_one_step_once_per_token() -> None:
    cluster = held_step()
    cluster.annotate("promote", "t1")
    decision = cluster.reconcile()
    assert decision.status.rollout and decision.status.rollout.step_index == 1, "promote advances one step"
    assert decision.status.handled_actions == {"promote": "t1"}, f"handled: {decision.status.handled_actions}"
    assert any("promoted by a user" in e.message for e in decision.events), f"events: {decision.events}"
    for _ in range(3):
        cluster.reconcile()
    assert cluster.status.rollout and not cluster.status.rollout.promoting, "the same token acts only once"
    cluster.annotate("promote", "t2")
    promoted = cluster.reconcile()
    assert "Promoting" in reasons(promoted.events), "a new token advances past the last step"
    # The canary first grows to full size within the surge budget; promotion completes once those pods are ready.
    assert promoted.status.rollout and promoted.status.rollout.promoting, "promoting: canary scaled to full size"
    completed = cluster.run_until(lambda s: s.rollout is None, "promotion")
    assert completed.status.stable and completed.status.stable.version == "2.0.0", "2.0.0 promoted"


def test_promote_full_skips_the_remaining_steps() -> None:
    cluster = held_step()
    cluster.annotate("promote-full", "now")
    decision = cluster.reconcile()
    rollout = decision.status.rollout
    assert rollout is not None and rollout.promoting, "promote-full goes straight to promotion"
    assert [(w.ref.version, w.replicas) for w in decision.workloads] == [("1.0.0", 3), ("2.0.0", 2)], (
        f"the canary grows toward full size into the surge budget (4 + 1 pods), got {decision.workloads}"
    )
    assert decision.status.phase == "Promoting", f"phase: {decision.status.phase}"
    promoted = cluster.run_until(lambda s: s.rollout is None, "promotion")
    assert promoted.status.stable and promoted.status.stable.version == "2.0.0", "promoted once all pods ready"


def test_abort_rolls_the_canary_back_and_retry_rolls_it_out_again() -> None:
    cluster = held_step()
    cluster.annotate("abort", "a1")
    aborted = cluster.reconcile()
    assert aborted.status.rollout is None, "abort ends the rollout"
    rejected = aborted.status.rejected
    assert rejected is not None and (rejected.version, rejected.reason) == ("2.0.0", "Aborted"), f"{rejected}"
    assert "RolledBack" in reasons(aborted.events, "Warning"), f"events: {aborted.events}"
    assert cluster.reconcile().status.rollout is None, "an aborted version is not retried by itself"

    cluster.annotate("retry", "r1")
    retried = cluster.reconcile()
    assert retried.status.rejected is None, "retry clears the rejection"
    assert retried.status.rollout and retried.status.rollout.target.version == "2.0.0", "and rolls it out again"
    assert retried.status.rollout.step_index == 0, "from the first step"
    assert "Retry" in reasons(retried.events), f"events: {retried.events}"
    assert cluster.status.handled_actions == {"abort": "a1", "retry": "r1"}, cluster.status.handled_actions
    cluster.reconcile()
    assert cluster.status.rollout is not None, "the handled abort token must not abort the retried rollout"


def test_an_action_with_nothing_to_act_on_is_ignored_and_recorded() -> None:
    cluster = serving("1.0.0")
    cluster.annotate("promote", "p1")
    decision = cluster.reconcile()
    assert "ActionIgnored" in reasons(decision.events), f"events: {decision.events}"
    assert decision.status.handled_actions == {"promote": "p1"}, "an ignored token is still handled once"
    assert "ActionIgnored" not in reasons(cluster.reconcile().events), "and not reported again"


def serving_two_versions() -> Cluster:
    cluster = serving("1.0.0")
    cluster.set_spec(spec_for("2.0.0"))
    cluster.run_until(lambda s: s.stable is not None and s.stable.version == "2.0.0" and not s.retired, "2.0.0")
    return cluster


def test_undo_rolls_back_to_an_earlier_known_good_version() -> None:
    cluster = serving_two_versions()
    assert not [r for r in cluster.revisions if r != cluster.status.stable.revision], "1.0.0 pods are gone"  # type: ignore[union-attr]
    cluster.annotate("undo", "1.0.0@u1")
    decision = cluster.reconcile()
    rollout = decision.status.rollout
    assert rollout is not None and (rollout.kind, rollout.target.version) == ("Rollback", "1.0.0"), f"{rollout}"
    assert decision.status.rejected and decision.status.rejected.reason == "Undone", "2.0.0 is marked undone"
    assert decision.status.phase == "Progressing" and condition(decision.status, "Ready").reason == "RollingBack", (
        f"an undo in progress is Progressing with Ready reason RollingBack, got {decision.status.phase}"
    )
    assert ("1.0.0", REPLICAS) in [(w.ref.version, w.replicas) for w in decision.workloads], (
        f"the known-good version is rebuilt from history at full size, got {decision.workloads}"
    )
    done = cluster.run_until(lambda s: s.rollout is None, "rollback complete")
    assert done.status.stable and done.status.stable.version == "1.0.0", "1.0.0 serves again"
    assert "RollbackComplete" in reasons(done.events), f"events: {done.events}"
    assert done.status.phase == "RolledBack", "the spec still asks for 2.0.0, which is undone"
    for _ in range(3):
        assert cluster.reconcile().status.rollout is None, "the undone version is not rolled out again"


def test_undo_to_an_unknown_version_is_refused() -> None:
    cluster = serving_two_versions()
    cluster.annotate("undo", "0.9.0@u1")
    decision = cluster.reconcile()
    refused = [e for e in decision.events if e.reason == "UndoRejected"]
    assert refused and refused[0].type == "Warning", f"events: {decision.events}"
    assert "'1.0.0'" in refused[0].message and "'2.0.0'" in refused[0].message, "it should list known versions"
    assert decision.status.rollout is None and decision.status.stable.version == "2.0.0", "nothing changes"  # type: ignore[union-attr]


def test_actions_are_ignored_while_invalid_but_pending_until_valid() -> None:
    cluster = held_step()
    bad = {"type": "Canary", "canary": {"steps": [{"weight": 50}, {"weight": 20}]}}
    cluster.set_spec(spec_for("2.0.0", strategy=bad))
    cluster.annotate("abort", "a1")
    invalid = cluster.reconcile()
    assert invalid.invalid and invalid.status.rollout is not None, "an invalid spec changes nothing"
    assert invalid.status.handled_actions == {}, "the abort token is not consumed while the spec is invalid"


# -- pause ------------------------------------------------------------------------------------
def test_spec_paused_freezes_a_canary_in_place() -> None:
    cluster = serving("1.0.0")
    cluster.set_spec(spec_for("2.0.0"))
    reach_weight(cluster)
    cluster.set_spec(spec_for("2.0.0", paused=True))
    rounds = cluster.rounds
    for _ in range(20):
        decision = cluster.reconcile(after=60)
    assert decision.status.rollout and decision.status.rollout.step_index == 0, "no step advance while paused"
    assert cluster.rounds == rounds, "no analysis while paused"
    assert decision.status.phase == "Paused", f"phase: {decision.status.phase}"
    assert condition(decision.status, "Reconciling").reason == "Paused", condition(decision.status, "Reconciling")
    assert kstatus(decision.status) == ("False", "True", "False"), f"kstatus: {kstatus(decision.status)}"
    cluster.set_spec(spec_for("2.0.0"))
    cluster.run_until(lambda s: s.rollout is None, "promotion after unpausing")


def test_a_pause_stops_the_progress_deadline_clock() -> None:
    cluster = serving("1.0.0", progressDeadlineSeconds=120)
    cluster.never_ready.add("2.0.0")
    cluster.set_spec(spec_for("2.0.0", progressDeadlineSeconds=120))
    cluster.reconcile(after=1)  # the canary starts
    cluster.reconcile(after=60)  # 60 of its 120 s spent waiting for pods
    cluster.annotations[actions.PAUSED_ANNOTATION] = "true"
    paused = cluster.reconcile(after=1)
    assert paused.status.rollout and paused.status.rollout.paused_at == clock.iso(cluster.now), "the pause is recorded"
    for _ in range(10):
        cluster.reconcile(after=60)
    del cluster.annotations[actions.PAUSED_ANNOTATION]
    resumed = cluster.reconcile(after=1)
    assert resumed.status.rollout is not None and resumed.status.rejected is None, (
        f"10 paused minutes do not count toward progressDeadlineSeconds: {resumed.status.message}"
    )
    assert resumed.status.rollout.paused_at is None, "the clocks run again"
    cluster.reconcile(after=50)
    assert cluster.status.rejected is None, "112 of 120 s used: still waiting"
    rolled_back = cluster.reconcile(after=20)
    assert rolled_back.status.rejected and rolled_back.status.rejected.reason == "ProgressDeadlineExceeded", (
        f"the deadline passes once 120 unpaused seconds are spent: {rolled_back.status.rejected}"
    )


def test_a_pause_stops_the_metrics_unavailable_clock() -> None:
    cluster = unavailable("Rollback")
    cluster.run_until(lambda s: cluster.rounds == 2, "two unavailable rounds")
    since = cluster.status.rollout.metrics_unavailable_since if cluster.status.rollout else None
    assert since is not None and cluster.now - clock.parse(since) < timedelta(minutes=1), since
    cluster.annotations[actions.PAUSED_ANNOTATION] = "true"
    for _ in range(10):
        cluster.reconcile(after=60)
    del cluster.annotations[actions.PAUSED_ANNOTATION]
    cluster.reconcile(after=1)
    assert cluster.status.rejected is None, "10 paused minutes do not count toward the 2m metricsUnavailable deadline"
    decision = cluster.run_until(lambda s: s.rejected is not None, "rollback once 2 unpaused minutes are spent")
    rejected = decision.status.rejected
    assert rejected is not None and rejected.reason == "MetricsUnavailable", rejected
    unavailable_seconds = int(rejected.message.split()[4].removesuffix("s"))
    assert 120 < unavailable_seconds < 200, f"only unpaused time counts: {rejected.message}"


def test_paused_before_a_new_version_starts_nothing() -> None:
    cluster = serving("1.0.0")
    cluster.annotations[actions.PAUSED_ANNOTATION] = "true"
    cluster.set_spec(spec_for("2.0.0"))
    decision = cluster.reconcile()
    assert decision.status.rollout is None, "the paused annotation keeps a new version from starting"
    assert (decision.status.phase, condition(decision.status, "Ready").status) == ("Paused", "False"), (
        "paused before rolling out the spec's version is not Ready"
    )
    del cluster.annotations[actions.PAUSED_ANNOTATION]
    assert cluster.reconcile().status.rollout is not None, "unpausing starts the canary"


# -- post-promotion watch ---------------------------------------------------------------------
WATCHED = {**ERROR_RATE, "postPromotion": {"duration": "10m"}}


def test_degraded_after_promotion_rolls_back_to_the_previous_known_good() -> None:
    cluster = serving("1.0.0", analysis=WATCHED)
    cluster.set_spec(spec_for("2.0.0", analysis=WATCHED))
    cluster.run_until(lambda s: s.stable is not None and s.stable.version == "2.0.0" and not s.retired, "2.0.0")
    watch = cluster.status.watch
    assert watch is not None and watch.revision == cluster.status.stable.revision, "2.0.0 is watched"  # type: ignore[union-attr]

    cluster.prometheus = FakePrometheus(value=0.2)
    decision = cluster.run_until(lambda s: s.rollout is not None, "post-promotion failure")
    rollout = decision.status.rollout
    assert rollout is not None and (rollout.kind, rollout.target.version) == ("Rollback", "1.0.0"), f"{rollout}"
    rejected = decision.status.rejected
    assert rejected and (rejected.version, rejected.reason, rejected.check, rejected.value) == (
        "2.0.0",
        "PostPromotionAnalysisFailed",
        "error-rate",
        0.2,
    ), f"rejected: {rejected}"
    assert "RolledBack" in reasons(decision.events, "Warning"), f"events: {decision.events}"
    assert (decision.status.history[-1].version, decision.status.history[-1].outcome) == ("2.0.0", "RolledBack"), (
        f"history should end with 2.0.0 RolledBack, got {decision.status.history[-1]}"
    )

    done = cluster.run_until(lambda s: s.rollout is None, "back on 1.0.0")
    assert done.status.stable and done.status.stable.version == "1.0.0", "1.0.0 serves again"
    verifying = done.status.watch
    assert verifying is not None and verifying.verifies == rejected.revision, (
        f"the known-good version is only checked for a shared outage (core/rollout/watch.py): {verifying}"
    )
    assert [w.ref.version for w in done.workloads] == ["1.0.0"], "2.0.0 is scaled away at once"
    assert done.status.phase == "RolledBack", f"phase: {done.status.phase}"


def test_the_watch_ends_after_its_duration() -> None:
    cluster = serving("1.0.0", analysis=WATCHED)
    assert cluster.status.watch is not None, "the first version is watched too"
    cluster.reconcile(after=9 * 60)
    assert cluster.status.watch is not None, "9m into a 10m watch"
    cluster.reconcile(after=61)
    assert cluster.status.watch is None, "after 10m the watch ends"
    cluster.prometheus = FakePrometheus(value=0.9)
    for _ in range(10):
        assert cluster.reconcile(after=60).status.rollout is None, "bad metrics after the watch change nothing"


def test_degraded_first_version_has_nothing_to_go_back_to() -> None:
    cluster = serving("1.0.0", analysis=WATCHED)
    cluster.prometheus = FakePrometheus(value=0.2)
    decision = cluster.run_until(lambda s: s.watch is None, "watch failure")
    assert "DegradedNoKnownGood" in reasons(decision.events, "Warning"), f"events: {decision.events}"
    assert decision.status.rollout is None and [w.ref.version for w in decision.workloads] == ["1.0.0"], (
        "with no earlier known-good version the degraded one keeps serving"
    )


# -- rolling ----------------------------------------------------------------------------------
def test_rolling_strategy_promotes_when_all_replicas_are_ready() -> None:
    rolling = {"type": "Rolling"}
    cluster = serving("1.0.0", strategy=rolling)
    cluster.set_spec(spec_for("2.0.0", strategy=rolling))
    started = cluster.reconcile()
    assert started.status.rollout and started.status.rollout.kind == "Rolling", f"{started.status.rollout}"
    assert [(w.ref.version, w.replicas) for w in started.workloads] == [("1.0.0", 4), ("2.0.0", 4)], (
        f"a rolling update brings up the new version at full size next to the old, got {started.workloads}"
    )
    done = cluster.reconcile()
    assert done.status.stable and done.status.stable.version == "2.0.0", "promoted once every pod is ready"
    assert done.status.history[-1].reason == "all replicas ready", done.status.history[-1]
    assert cluster.rounds == 0, "a rolling update runs no analysis"


# -- invalid specs ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "metrics_configured", "problem"),
    [
        (
            {"strategy": {"type": "Canary", "canary": {"steps": [{"weight": 50}, {"weight": 20}]}}},
            True,
            "spec.strategy.canary.steps: weights [50, 20] must increase",
        ),
        (
            {
                "analysis": {
                    "metricPreset": "kserve",
                    "metrics": [{"name": "errors", "template": "error-rate", "thresholdRange": {"max": 1}}],
                }
            },
            True,
            "check errors: preset kserve has no series for template error-rate",
        ),
        (
            {"analysis": {"metrics": [{"name": "x", "query": "q{p='{{ pod }}'}", "thresholdRange": {"max": 1}}]}},
            True,
            "unknown placeholder {{ pod }}",
        ),
        (
            {"analysis": {"metrics": [ERROR_RATE["metrics"][0], ERROR_RATE["metrics"][0]]}},
            True,
            "check names must be unique, repeated: ['error-rate']",
        ),
        ({}, False, "no Prometheus URL"),
    ],
    ids=["decreasing-weights", "error-rate-on-kserve", "unknown-placeholder", "duplicate-checks", "no-prometheus"],
)
def test_invalid_spec_keeps_the_running_version_and_says_why(
    fields: dict[str, Any], metrics_configured: bool, problem: str
) -> None:
    cluster = serving("1.0.0")
    if not metrics_configured:
        cluster.prometheus = None
    cluster.set_spec(spec_for("2.0.0", **fields))
    decision = cluster.reconcile()
    assert any(problem in text for text in decision.invalid), f"expected {problem!r} in {decision.invalid}"
    assert decision.status.rollout is None, "an invalid spec starts nothing"
    assert [w.ref.version for w in decision.workloads] == ["1.0.0"], "the running version keeps serving"
    assert decision.status.phase == "Failed", f"phase: {decision.status.phase}"
    assert kstatus(decision.status) == ("False", "False", "True"), f"kstatus: {kstatus(decision.status)}"
    assert condition(decision.status, "Stalled").reason == "InvalidSpec", condition(decision.status, "Stalled")
    assert reasons(decision.events, "Warning") == ["InvalidSpec"], f"events: {decision.events}"
    assert "InvalidSpec" not in reasons(cluster.reconcile().events), "the same problem is reported once"


# -- traffic ----------------------------------------------------------------------------------
def test_gateway_api_weights_follow_the_reached_step() -> None:
    gateway = {
        "type": "Canary",
        "canary": {**CANARY["canary"], "trafficRouting": {"type": "GatewayAPI", "httpRoute": {"name": "fraud"}}},
    }
    cluster = serving("1.0.0", strategy=gateway)
    assert cluster.reconcile().route_weights == (100, 0), "no canary: all traffic to stable"
    cluster.set_spec(spec_for("2.0.0", strategy=gateway))
    assert cluster.reconcile().route_weights == (100, 0), "canary pods not ready yet: no traffic to it"
    reached = cluster.reconcile()
    assert reached.route_weights == (80, 20), f"20% once the canary is ready, got {reached.route_weights}"
    assert reached.status.canary_weight == 20, f"status.canaryWeight: {reached.status.canary_weight}"
    assert serving("1.0.0").reconcile().route_weights is None, "ReplicaRatio routing sets no route weights"


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [(4, 20, 1), (4, 50, 2), (10, 10, 1), (10, 25, 3), (1, 20, 1), (3, 1, 1), (0, 50, 0), (5, 100, 5), (2, 99, 2)],
)
def test_canary_replicas(total: int, weight: int, expected: int) -> None:
    assert canary_replicas(total, weight) == expected, (
        f"{total} stable replicas at {weight}%: expected {expected} canary pods (at least 1 unless total is 0)"
    )


# -- restart ----------------------------------------------------------------------------------
def test_status_round_trip_resumes_exactly_where_it_was() -> None:
    cluster = serving("1.0.0")
    cluster.set_spec(spec_for("2.0.0"))
    reach_weight(cluster)
    cluster.reconcile(after=30)
    stored = cluster.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    restarted = ModelDeploymentStatus.model_validate(stored)
    inputs = dict(
        name=NAME,
        namespace=NAMESPACE,
        generation=cluster.generation,
        spec=cluster.spec,
        annotations={},
        revisions=cluster.revisions,
        now=cluster.now + timedelta(seconds=40),
    )
    before = decide(Inputs(status=cluster.status, **inputs))  # type: ignore[arg-type]
    after = decide(Inputs(status=restarted, **inputs))  # type: ignore[arg-type]
    assert after.status == before.status and after.workloads == before.workloads, (
        "a status read back from the API server should lead to the same decision"
    )


def test_promote_releases_an_inconclusive_hold_for_good() -> None:
    checks = {**ERROR_RATE, "inconclusiveLimit": 2, "metrics": [{**ERROR_RATE["metrics"][0], "minSampleCount": 100}]}
    cluster = serving("1.0.0", analysis=checks)
    cluster.set_spec(spec_for("2.0.0", analysis=checks))
    reach_weight(cluster)
    cluster.prometheus = FakePrometheus(samples=3.0)
    cluster.run_until(lambda s: s.phase == "Holding", "inconclusive hold")
    cluster.prometheus = FakePrometheus(samples=1000.0)  # traffic is back
    cluster.annotate("promote", "p1")
    cluster.reconcile()
    assert cluster.status.rollout and cluster.status.rollout.step_index == 1, "promote moves to the next step"
    promoted = cluster.run_until(lambda s: s.rollout is None or s.phase == "Holding", "the next step's verdict")
    assert promoted.status.phase != "Holding", (
        "after a human promoted past an inconclusive hold, passing rounds at the next step should promote, "
        f"not hold again on the old count: {promoted.status.message}"
    )


def test_abort_of_the_first_rollout_stops_it_until_retried() -> None:
    cluster = Cluster(spec_for("1.0.0"))
    cluster.never_ready.add("1.0.0")
    cluster.reconcile()
    cluster.annotate("abort", "a1")
    aborted = cluster.reconcile()
    assert aborted.status.rollout is None and not aborted.workloads, "abort stops the first rollout and its pods"
    assert aborted.status.rejected and aborted.status.rejected.reason == "Aborted", f"{aborted.status.rejected}"
    assert aborted.status.phase == "RolledBack" and "serving nothing" in aborted.status.message, aborted.status
    assert "RolloutStarted" not in reasons(aborted.events), "the aborted version must not restart in the same pass"
    cluster.never_ready.clear()
    assert cluster.reconcile().status.rollout is None, "nor on a later pass with the same spec"
    cluster.annotate("retry", "r1")
    cluster.reconcile()
    ready = cluster.reconcile()
    assert ready.status.phase == "Ready" and kstatus(ready.status)[0] == "True", (
        f"retried and serving the spec's version on every pod: Ready, got {ready.status.phase}: {ready.status.message}"
    )


def test_a_spec_without_strategy_rolls_out_through_the_default_canary() -> None:
    def minimal(version: str) -> ModelDeploymentSpec:
        raw = spec_for(version).model_dump(by_alias=True, exclude_none=True, exclude={"strategy", "analysis"})
        return ModelDeploymentSpec.model_validate(raw)

    cluster = Cluster(minimal("1.0.0"))
    cluster.run_until(lambda s: s.phase == "Ready", "first version")
    cluster.set_spec(minimal("2.0.0"))
    started = cluster.reconcile()
    assert started.status.rollout and started.status.rollout.kind == "Canary", "no strategy means a Canary"
    reach_weight(cluster)
    assert cluster.status.rollout and cluster.status.rollout.weight == 20, "the default first step is 20%"
    cluster.run_until(lambda s: s.rollout is None, "promotion through the default steps")
    assert cluster.status.stable and cluster.status.stable.version == "2.0.0", "2.0.0 promoted"


def test_analysis_rounds_run_every_interval_once_the_weight_is_reached() -> None:
    cluster = serving("1.0.0")
    cluster.set_spec(spec_for("2.0.0"))
    cluster.reconcile()
    assert cluster.rounds == 0, "no round before the canary's pods are ready"
    reach_weight(cluster)
    for _ in range(12):  # 120s in 10s passes at a 30s interval (pause 1m: still on step 1 for 60s)
        cluster.reconcile()
    assert cluster.rounds == 4, f"2 minutes at a 30s interval should run 4 rounds, ran {cluster.rounds}"
