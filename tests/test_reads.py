"""Pods are read only when a decision can say why they are not ready: never while they are starting,
always before a progress deadline message that would carry the reason."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from rollguard.core import clock, reads
from rollguard.core.rollout import decide
from tests.test_fallback import FALLBACK, UNREADY, serving_with_fallback
from tests.test_rollout import CANARY, serving, spec_for

WHY = "pod fraud-2-0-0-x: ImagePullBackOff (Back-off pulling image)"


@pytest.mark.parametrize("strategy", [CANARY, {"type": "Rolling"}], ids=["canary", "rolling"])
def test_the_reason_is_read_in_time_for_the_deadline_message_and_not_before(strategy: dict[str, object]) -> None:
    cluster = serving("1.0.0", strategy=strategy, progressDeadlineSeconds=120)
    spec = spec_for("2.0.0", strategy=strategy, progressDeadlineSeconds=120)
    cluster.never_ready.add("2.0.0")
    cluster.set_spec(spec)
    read_at: list[float] = []
    for _ in range(40):
        cluster.now += timedelta(seconds=5)
        wants = reads.wants_failure_reason(spec, cluster.status, cluster.now)
        target = cluster.status.rollout.target.revision if cluster.status.rollout else None
        revisions = {
            rev: replace(seen, failure=WHY if wants and rev == target and seen.ready < seen.replicas else None)
            for rev, seen in cluster.revisions.items()
        }
        started = cluster.status.rollout.started_at if cluster.status.rollout else None
        if wants and started:
            read_at.append((cluster.now - cluster.now.fromisoformat(started.replace("Z", "+00:00"))).total_seconds())
        # no round is due: the canary never reaches its weight
        decision = decide(cluster.inputs(annotations={}, revisions=revisions, analysis=None, metrics_configured=True))
        cluster.status = decision.status
        cluster.apply(decision)
        if cluster.status.rejected is not None:
            break
    rejected = cluster.status.rejected
    assert rejected is not None and rejected.reason == "ProgressDeadlineExceeded", f"rejected: {rejected}"
    assert rejected.message.endswith(WHY), f"the reason was read in time for the message: {rejected.message}"
    assert read_at and min(read_at) >= 120 - reads.DEADLINE_MARGIN_SECONDS - 5, (
        f"pods were read only near the deadline, not while starting: read at {read_at} s into the rollout"
    )


def test_nothing_to_explain_without_a_rollout() -> None:
    cluster = serving("1.0.0")
    assert cluster.status.rollout is None
    assert not reads.wants_failure_reason(cluster.spec, cluster.status, cluster.now + timedelta(days=1))


def test_the_fallback_switch_says_why_the_serving_version_has_no_ready_pod() -> None:
    cluster = serving_with_fallback(fallback={**FALLBACK, "activateAfter": "2m"})
    cluster.lose_readiness("1.0.0")
    read_at: list[float] = []
    for _ in range(40):
        cluster.now += timedelta(seconds=5)
        wants = reads.wants_failure_reason(cluster.spec, cluster.status, cluster.now)
        revisions = {rev: replace(seen, failure=UNREADY if wants else None) for rev, seen in cluster.revisions.items()}
        state = cluster.status.fallback
        if wants and state is not None and state.unready_since is not None:
            read_at.append(clock.seconds_since(state.unready_since, cluster.now))
        decision = decide(cluster.inputs(annotations={}, revisions=revisions, analysis=None, metrics_configured=True))
        cluster.status = decision.status
        activated = [e for e in decision.events if e.reason == "FallbackActivated"]
        if activated:
            assert activated[0].message.count(UNREADY) == 1, f"the reason was read in time: {activated[0].message}"
            break
    else:
        pytest.fail(f"the fallback never took the traffic: {cluster.status.fallback}")
    assert read_at and min(read_at) >= 120 - reads.DEADLINE_MARGIN_SECONDS - 5, (
        f"pods were read only near activateAfter, not from the first unready pass: read at {read_at} s"
    )
