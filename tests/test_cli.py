"""`kubectl rollguard` without a cluster: the rendered views, argument parsing, and the annotation
patches each action writes (or refuses to write).

Statuses are built with the operator's own pydantic models and dumped the way it writes them
(camelCase, no nulls), so a renamed status field breaks these tests rather than the plugin.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from rollguard import cli
from rollguard.api.status import (
    CheckResult,
    Condition,
    HistoryEntry,
    ModelDeploymentStatus,
    Rejection,
    RevisionRef,
    RolloutStatus,
    WatchStatus,
)
from rollguard.cli_render import WIDTH, render_history, render_status, rollout_finished

NOW = datetime(2026, 3, 1, 12, 10, 0, tzinfo=UTC)
TOKEN = "1772366400000000000"
ERROR_QUERY = (
    'sum(rate(model_requests_total{namespace="ml",model="fraud-detector",version="1.1.0",code=~"5.."}[3s])) / '
    'sum(rate(model_requests_total{namespace="ml",model="fraud-detector",version="1.1.0"}[3s]))'
)
STEPS = [{"weight": 20, "pause": {"duration": "20s"}}, {"weight": 50, "pause": {}}]


def ref(version: str, revision: str) -> RevisionRef:
    return RevisionRef(
        revision=revision,
        version=version,
        image="docker.io/seldonio/mlserver:1.6.1",
        uri=f"s3://models/fraud-detector/{version}",
    )


V1, V2, V3 = ref("1.0.0", "a1a1a1a1a1"), ref("1.1.0", "b2b2b2b2b2"), ref("1.2.0", "c3c3c3c3c3")


def cond(type_: str, status: str, reason: str, message: str) -> Condition:
    return Condition(
        type=type_,
        status=status,  # type: ignore[arg-type]
        reason=reason,
        message=message,
        last_transition_time="2026-03-01T12:00:00Z",
        observed_generation=2,
    )


def entry(r: RevisionRef, outcome: str, reason: str, at: str, **metrics: float) -> HistoryEntry:
    return HistoryEntry(
        revision=r.revision,
        version=r.version,
        uri=r.uri,
        image=r.image,
        outcome=outcome,  # type: ignore[arg-type]
        reason=reason,
        at=at,
        metrics=metrics,
    )


def md(
    status: ModelDeploymentStatus | None,
    version: str = "1.1.0",
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "rollguard.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud-detector", "namespace": "ml", "generation": 2, "annotations": annotations or {}},
        "spec": {
            "model": {"name": "fraud-detector", "version": version, "uri": f"s3://models/fraud-detector/{version}"},
            "runtime": {"image": "docker.io/seldonio/mlserver:1.6.1"},
            "replicas": 2,
            "strategy": {"canary": {"steps": STEPS}},
            "analysis": {"interval": "3s", "failureLimit": 0},
            **spec,
        },
    }
    if status is not None:
        body["status"] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return body


CANARY_MESSAGE = "canary 1.1.0 at step 2/2, 50%; serving 1.0.0"


def canary_status(**rollout: Any) -> ModelDeploymentStatus:
    fields: dict[str, Any] = {
        "kind": "Canary",
        "target": V2,
        "started_at": "2026-03-01T12:05:00Z",
        "step_index": 1,
        "weight": 50,
        "weight_reached_at": "2026-03-01T12:08:30Z",
        "last_analysis_at": "2026-03-01T12:09:57Z",
        "last_verdict": "Passed",
        "checks": [
            CheckResult(
                name="error-rate",
                phase="Passed",
                value=0.0012,
                stable_value=0.001,
                samples=120.0,
                limit="<= 0.05",
                query=ERROR_QUERY,
                message="0.0012 within limits",
                successes=4,
            ),
            CheckResult(
                name="p99-latency",
                phase="Inconclusive",
                value=0.21,
                samples=8.0,
                limit="<= 0.5",
                message="only 8 samples, fewer than the 20 needed to judge",
                successes=3,
                inconclusive=1,
            ),
        ],
        **rollout,
    }
    return ModelDeploymentStatus(
        observed_generation=2,
        phase="Progressing",
        message=CANARY_MESSAGE,
        conditions=[
            cond("Ready", "False", "RolloutInProgress", CANARY_MESSAGE),
            cond("Reconciling", "True", "Canary", CANARY_MESSAGE),
            cond("Stalled", "False", "Progressing", "no blocker"),
            cond("MetricsAvailable", "True", "Measured", "the last analysis round got data for every check"),
        ],
        stable=V1,
        rollout=RolloutStatus(**fields),
        history=[entry(V1, "Promoted", "first version", "2026-03-01T11:00:00Z")],
        replicas=4,
        ready_replicas=4,
        canary_weight=50,
        serving_version="1.0.0",
    )


def rolled_back_status() -> ModelDeploymentStatus:
    message = "check error-rate: 0.2 is above the maximum 0.05 (limit <= 0.05)"
    return ModelDeploymentStatus(
        observed_generation=2,
        phase="RolledBack",
        message=f"version 1.1.0 was rolled back (AnalysisFailed: {message}); serving 1.0.0. Push a new version, "
        "or `kubectl rollguard retry fraud-detector`",
        conditions=[
            cond("Ready", "False", "RolledBack", "version 1.1.0 was rolled back"),
            cond("Reconciling", "False", "Idle", "nothing to roll out"),
            cond("Stalled", "True", "RolledBack", "version 1.1.0 was rolled back"),
        ],
        stable=V1,
        rejected=Rejection(
            revision=V2.revision,
            version="1.1.0",
            reason="AnalysisFailed",
            message=message,
            check="error-rate",
            value=0.2,
            limit="<= 0.05",
            query=ERROR_QUERY,
            at="2026-03-01T12:09:00Z",
        ),
        history=[
            entry(V1, "Promoted", "first version", "2026-03-01T11:00:00Z"),
            entry(V2, "RolledBack", f"AnalysisFailed: {message}", "2026-03-01T12:09:00Z", **{"error-rate": 0.2}),
        ],
        replicas=2,
        ready_replicas=2,
        serving_version="1.0.0",
    )


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def assert_fits(text: str) -> None:
    too_wide = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not too_wide, f"lines wider than {WIDTH} columns: {too_wide}"


# -- rendering -----------------------------------------------------------------------------------
def test_canary_in_progress_shows_step_weights_checks_and_history() -> None:
    text = render_status(md(canary_status()), NOW)
    lines = lines_of(text)
    assert lines[0] == "fraud-detector  (namespace ml, generation 2, observed 2)"
    assert "Version:     requested 1.1.0, serving 1.0.0" in lines
    assert "Phase:       Progressing" in lines
    assert f"Message:     {CANARY_MESSAGE}" in lines
    assert "Replicas:    4/4 ready; canary weight 50%" in lines
    assert any(line.split()[:4] == ["Ready", "False", "RolloutInProgress", "canary"] for line in lines), text
    assert any(line.split()[:3] == ["MetricsAvailable", "True", "Measured"] for line in lines), text
    assert "Rollout:     Canary of 1.1.0 (revision b2b2b2b2b2), started 5m ago" in lines
    assert "  Step:      2/2  20% (20s) -> [50% (until promoted)] -> 100%" in lines, "the current step is marked"
    assert "  Weight:    50% of traffic to the canary (step weight 50%, reached 1m30s ago)" in lines
    state = lines.index("  State:     waiting at 50% for a manual promote")
    assert lines[state + 1] == "  Next:      kubectl rollguard promote fraud-detector -n ml", "the command, unwrapped"
    assert "  Analysis:  failures 0 (limit 0), inconclusive 0 (limit 10), last round Passed 3s ago" in lines
    header = lines.index("Checks (canary):")
    assert lines[header + 1].split() == [
        "NAME",
        "PHASE",
        "VALUE",
        "LIMIT",
        "STABLE",
        "SAMPLES",
        "PASS",
        "FAIL",
        "INCONCL",
        "ERR",
    ]
    assert lines[header + 2].split() == [
        "error-rate",
        "Passed",
        "0.0012",
        "<=",
        "0.05",
        "0.001",
        "120",
        "4",
        "0",
        "0",
        "0",
    ]
    assert lines[header + 3].split() == [
        "p99-latency",
        "Inconclusive",
        "0.21",
        "<=",
        "0.5",
        "-",
        "8",
        "3",
        "0",
        "1",
        "0",
    ]
    assert lines[header + 1].index("LIMIT") == lines[header + 2].index("<= 0.05"), "columns are aligned"
    assert "  p99-latency: only 8 samples, fewer than the 20 needed to judge" in lines, "non-passing checks say why"
    assert "History (last 1 of 1, newest last; * = serving):" in lines
    assert lines[-1].split()[:4] == ["1.0.0", "Promoted", "*", "1h10m"], lines[-1]
    assert "Rejected" not in text
    assert_fits(text)


def test_timed_step_says_how_long_it_has_held() -> None:
    status = canary_status(step_index=0, weight=20, checks=[], last_verdict=None, last_analysis_at=None)
    text = render_status(md(status), NOW)
    assert "  Step:      1/2  [20% (20s)] -> 50% (until promoted) -> 100%" in text
    assert "  State:     at 20% for 1m30s of 20s; moves on once the pause is over and a check round passes" in text
    assert "Checks" not in text and "Analysis:" not in text


def test_many_steps_wrap_between_steps_only() -> None:
    steps = [{"weight": w, "pause": {"duration": "1m30s"}} for w in (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)]
    text = render_status(md(canary_status(step_index=3, weight=30), strategy={"canary": {"steps": steps}}), NOW)
    lines = lines_of(text)
    at = next(i for i, line in enumerate(lines) if line.startswith("  Step:"))
    assert lines[at].startswith("  Step:      4/10  5% (1m30s) -> 10% (1m30s) -> 20% (1m30s) -> [30% (1m30s)] ->")
    assert lines[at + 1].startswith(" " * 13 + "50% (1m30s) -> ") and lines[at + 1].endswith("-> 100%"), lines[at + 1]
    assert_fits(text)


def test_waiting_for_canary_pods_and_promoting() -> None:
    waiting = render_status(md(canary_status(weight_reached_at=None)), NOW)
    assert "(step weight 50%, not reached yet)" in waiting
    assert "scaling the canary to 50% of traffic (waiting for its pods to be ready)" in waiting
    promoting = render_status(md(canary_status(promoting=True)), NOW)
    assert "  Step:      promoting  20% (20s) -> 50% (until promoted) -> [100%]" in promoting
    assert "promoting: scaling 1.1.0 to full size, then it becomes stable" in promoting


def test_rollback_shows_the_rejection_with_its_evidence() -> None:
    text = render_status(md(rolled_back_status()), NOW)
    lines = lines_of(text)
    assert "Version:     requested 1.1.0 (rejected: AnalysisFailed), serving 1.0.0" in lines
    assert "Phase:       RolledBack" in lines
    assert any(line.split()[:3] == ["Stalled", "True", "RolledBack"] for line in lines), text
    assert "Rollout:" not in text, "no rollout in progress"
    assert "Rejected:    1.1.0 (revision b2b2b2b2b2): AnalysisFailed, 1m ago" in lines
    assert "  Why:       check error-rate: 0.2 is above the maximum 0.05 (limit <= 0.05)" in lines
    assert "  Evidence:  check error-rate = 0.2, limit <= 0.05" in lines
    query_at = next(i for i, line in enumerate(lines) if line.startswith("  Query:"))
    wrapped_query = "".join(line[13:] for line in lines[query_at : query_at + 3] if not line.startswith("  Next"))
    assert wrapped_query.replace(" ", "") == ERROR_QUERY.replace(" ", ""), "the whole query is shown, wrapped"
    assert "  Next:      kubectl rollguard retry fraud-detector -n ml  (or push a new version)" in lines
    assert lines[-2].split()[:3] == ["1.0.0", "Promoted", "*"], "the serving version is marked"
    assert lines[-1].split()[:3] == ["1.1.0", "RolledBack", "1m"]
    assert lines[-1].endswith("..."), "long reasons are clipped to the width in the status view"
    assert_fits(text)


def test_held_rollout_says_why_and_how_to_release_it() -> None:
    held = "held: metrics unavailable past analysis.metricsUnavailable.deadline; " + CANARY_MESSAGE
    status = canary_status(
        paused_reason="MetricsUnavailable",
        metrics_unavailable_since="2026-03-01T11:58:00Z",
        checks=[
            CheckResult(
                name="error-rate",
                phase="Error",
                limit="<= 0.05",
                message="query failed: connection refused",
                successes=2,
                errors=5,
            )
        ],
        last_verdict="Unavailable",
    )
    status.phase, status.message = "Holding", held
    status.conditions = [
        cond("Ready", "False", "RolloutInProgress", CANARY_MESSAGE),
        cond("Reconciling", "False", "Idle", "nothing to roll out"),
        cond("Stalled", "True", "MetricsUnavailable", held),
        cond("MetricsAvailable", "False", "QueryFailed", "cannot measure since 2026-03-01T11:58:00Z"),
    ]
    text = render_status(md(status), NOW)
    lines = lines_of(text)
    assert "Phase:       Holding" in lines
    assert any(line.split()[:3] == ["MetricsAvailable", "False", "QueryFailed"] for line in lines), text
    state = " ".join(line[13:] for line in lines if line.startswith(("  State:", " " * 13)))
    assert "held (MetricsUnavailable): metrics unavailable past analysis.metricsUnavailable.deadline" in state
    assert "  Next:      kubectl rollguard resume fraud-detector -n ml" in lines
    assert "manual promote" not in text, "a held canary is not described as waiting for a promote"
    assert any(line.split()[:3] == ["error-rate", "Error", "-"] for line in lines), text
    assert "  error-rate: query failed: connection refused" in lines
    assert_fits(text)


def test_paused_by_annotation_is_shown_with_the_way_out() -> None:
    paused = lines_of(render_status(md(canary_status(), annotations={"rollguard.io/paused": "true"}), NOW))
    state = paused.index("  State:     paused by the rollguard.io/paused annotation")
    assert paused[state + 1] == "  Next:      kubectl rollguard resume fraud-detector -n ml", paused
    assert not any("manual promote" in line for line in paused), "a paused canary is not waiting for a promote"
    idle = ModelDeploymentStatus(phase="Paused", message="paused before rolling out 1.1.0", stable=V1)
    text = lines_of(render_status(md(idle, annotations={"rollguard.io/paused": "true"}), NOW))
    assert text[-2:] == [
        "State:       paused by the rollguard.io/paused annotation: no new rollout starts",
        "Next:        kubectl rollguard resume fraud-detector -n ml",
    ], text
    spec_paused = render_status(md(idle, paused=True), NOW)
    assert "paused by spec.paused: no new rollout starts until it is set to false" in spec_paused


def test_post_promotion_watch_and_rollback_rollout() -> None:
    status = ModelDeploymentStatus(
        phase="Ready",
        stable=V2,
        watch=WatchStatus(
            revision=V2.revision,
            started_at="2026-03-01T12:08:00Z",
            until="2026-03-01T12:15:00Z",
            checks=[CheckResult(name="error-rate", phase="Passed", value=0.001, limit="<= 0.05", successes=2)],
        ),
        serving_version="1.1.0",
    )
    text = render_status(md(status), NOW)
    assert "post-promotion analysis of the stable revision b2b2b2b2b2 until 5m from now, failures 0" in text
    assert "Checks (stable, after promotion):" in text
    rollback = ModelDeploymentStatus(
        phase="Progressing",
        stable=V2,
        rollout=RolloutStatus(
            kind="Rollback", target=V1, started_at="2026-03-01T12:09:00Z", reason="undo requested by a user"
        ),
        serving_version="1.1.0",
    )
    text = render_status(md(rollback), NOW)
    assert "Version:     requested 1.1.0, serving 1.1.0 (rolling back to 1.0.0)" in text
    assert "State:     rolling back to known-good 1.0.0: undo requested by a user" in text
    assert "Step:" not in text


def test_empty_status_says_the_operator_has_not_seen_it() -> None:
    text = render_status(md(None), NOW)
    assert lines_of(text) == [
        "fraud-detector  (namespace ml, generation 2, observed -)",
        "Version:     requested 1.1.0, serving nothing",
        "Phase:       -",
        "Message:     no status yet: is the rollguard operator running and watching namespace ml?",
    ]
    assert render_history(md(None), NOW) == "no history recorded for fraud-detector in namespace ml yet\n"


def test_history_lists_every_outcome_with_metrics_and_known_good_versions() -> None:
    text = render_history(md(rolled_back_status()), NOW)
    lines = lines_of(text)
    assert lines[0] == "fraud-detector  (namespace ml; oldest first; * = serving)"
    assert lines[1].split() == ["VERSION", "REVISION", "OUTCOME", "WHEN", "METRICS", "REASON"]
    assert lines[2].split()[:6] == ["1.0.0", "a1a1a1a1a1", "Promoted", "*", "1h10m", "ago"]
    assert lines[3].split()[:6] == ["1.1.0", "b2b2b2b2b2", "RolledBack", "1m", "ago", "error-rate=0.2"]
    assert lines[3].endswith("(limit <= 0.05)"), "the history view keeps the whole reason"
    assert lines[-1] == "known-good versions (kubectl rollguard undo fraud-detector --to VERSION): 1.0.0"


def test_rollout_finished_needs_the_latest_generation_and_an_end_phase() -> None:
    assert not rollout_finished(md(canary_status()))
    assert rollout_finished(md(rolled_back_status()))
    stale = md(rolled_back_status())
    stale["metadata"]["generation"] = 3
    assert not rollout_finished(stale), "a spec change the operator has not seen yet is not finished"
    assert not rollout_finished(md(None))


# -- arguments -----------------------------------------------------------------------------------
def parse(*argv: str) -> Any:
    return cli.build_parser().parse_args(argv)


def test_flags_go_before_or_after_the_command() -> None:
    after = parse("status", "fraud-detector", "-n", "ml", "--context", "prod", "--kubeconfig", "/tmp/kc")
    before = parse("-n", "ml", "--context", "prod", "--kubeconfig", "/tmp/kc", "status", "fraud-detector")
    for args in (after, before):
        assert (args.command, args.name, args.namespace, args.context, args.kubeconfig) == (
            "status",
            "fraud-detector",
            "ml",
            "prod",
            "/tmp/kc",
        )
    plain = parse("abort", "fraud-detector")
    assert plain.namespace is None and plain.kubeconfig is None and plain.context is None


def test_command_options() -> None:
    status = parse("status", "x", "-o", "json", "--watch", "--until-done", "--timeout", "1m30s")
    assert (status.output, status.watch, status.until_done, status.timeout, status.interval) == (
        "json",
        True,
        True,
        90.0,
        2.0,
    )
    assert parse("status", "x", "--timeout", "45").timeout == 45.0
    assert parse("promote", "x", "--full").full and not parse("promote", "x").full
    assert parse("undo", "x", "--to", "1.0.0").to == "1.0.0" and parse("undo", "x").to is None
    assert parse("history", "x", "-o", "yaml").output == "yaml"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["status"],
        ["frobnicate", "x"],
        ["status", "x", "-o", "wide"],
        ["abort", "x", "-o", "json"],
        ["status", "x", "--timeout", "soon"],
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse(*argv)
    assert exit_.value.code == 2
    assert "usage: kubectl rollguard" in capsys.readouterr().err


# -- actions -------------------------------------------------------------------------------------
def plan(action: str, obj: dict[str, Any], **kwargs: Any) -> cli.ActionPlan:
    return cli.plan_action(action, obj, TOKEN, **kwargs)


def annotations_of(p: cli.ActionPlan) -> dict[str, Any]:
    assert p.patch is not None and list(p.patch) == ["metadata"] and list(p.patch["metadata"]) == ["annotations"], (
        f"an action patches only metadata.annotations: {p.patch}"
    )
    annotations: dict[str, Any] = p.patch["metadata"]["annotations"]
    return annotations


FOLLOW = "follow with: kubectl rollguard status fraud-detector -n ml --watch"


def test_promote_and_promote_full() -> None:
    canary = md(canary_status(step_index=0))
    promote = plan("promote", canary)
    assert annotations_of(promote) == {"rollguard.io/promote": TOKEN}
    assert promote.message == (
        f"requested promotion of canary 1.1.0 of fraud-detector to step 2/2 (50%) (token {TOKEN}); {FOLLOW}"
    )
    last = plan("promote", md(canary_status()))
    assert "past its last step" in last.message
    full = plan("promote", canary, full=True)
    assert annotations_of(full) == {"rollguard.io/promote-full": TOKEN}
    assert full.message.startswith("requested full promotion of canary 1.1.0 of fraud-detector (token")
    already = plan("promote", md(canary_status(promoting=True)))
    assert already.patch is None and "already being promoted" in already.message


def test_promote_without_a_canary_is_refused() -> None:
    with pytest.raises(cli.CliError) as refused:
        plan("promote", md(rolled_back_status()))
    assert refused.value.code == 2
    assert str(refused.value) == "no rollout in progress for fraud-detector in namespace ml: nothing to promote"
    rolling = ModelDeploymentStatus(
        stable=V1, rollout=RolloutStatus(kind="Rolling", target=V2, started_at="2026-03-01T12:09:00Z")
    )
    with pytest.raises(cli.CliError, match=r"Rolling rollout of 1\.1\.0, not a canary"):
        plan("promote", md(rolling))


def test_abort() -> None:
    aborted = plan("abort", md(canary_status()))
    assert annotations_of(aborted) == {"rollguard.io/abort": TOKEN}
    assert aborted.message.startswith(
        "requested abort of the Canary rollout of 1.1.0 of fraud-detector (back to 1.0.0)"
    )
    with pytest.raises(cli.CliError, match="nothing to abort") as refused:
        plan("abort", md(rolled_back_status()))
    assert refused.value.code == 2
    rollback = ModelDeploymentStatus(
        stable=V2, rollout=RolloutStatus(kind="Rollback", target=V1, started_at="2026-03-01T12:09:00Z")
    )
    with pytest.raises(cli.CliError, match=r"already rolling back to known-good 1\.0\.0"):
        plan("abort", md(rollback))


def test_pause_and_resume() -> None:
    pause = plan("pause", md(canary_status()))
    assert annotations_of(pause) == {"rollguard.io/paused": "true"}
    assert pause.message.startswith("requested pause of the rollout of 1.1.0 of fraud-detector")
    paused = md(canary_status(), annotations={"rollguard.io/paused": "true"})
    assert plan("pause", paused).patch is None, "pausing twice writes nothing"
    resume = plan("resume", paused)
    assert annotations_of(resume) == {"rollguard.io/paused": None, "rollguard.io/resume": TOKEN}, (
        "resume removes the pause (null in a merge patch) and releases holds"
    )
    assert "releasing the pause" in resume.message and resume.message.endswith(FOLLOW)
    held = plan("resume", md(canary_status(paused_reason="InconclusiveAnalysis")))
    assert annotations_of(held) == {"rollguard.io/paused": None, "rollguard.io/resume": TOKEN}
    assert "releasing the InconclusiveAnalysis hold" in held.message
    with pytest.raises(cli.CliError, match="neither paused nor held: nothing to resume"):
        plan("resume", md(canary_status()))
    with pytest.raises(cli.CliError, match=r"paused by spec\.paused"):
        plan("resume", md(canary_status(), paused=True))


def test_retry() -> None:
    retry = plan("retry", md(rolled_back_status()))
    assert annotations_of(retry) == {"rollguard.io/retry": TOKEN}
    assert retry.message.startswith("requested retry of rejected version 1.1.0 of fraud-detector")
    with pytest.raises(cli.CliError, match="no rejected version: nothing to retry"):
        plan("retry", md(canary_status()))


def test_a_rejection_the_spec_has_moved_past_is_not_retried() -> None:
    moved_on = md(rolled_back_status(), version="1.2.0")
    text = render_status(moved_on, NOW)
    assert "  Note:      the spec now asks for 1.2.0; this rejection no longer applies to it" in text
    assert "kubectl rollguard retry" not in text.split("Rejected:")[1]
    with pytest.raises(cli.CliError, match=r"not what the spec asks for any more \(1\.2\.0\)") as refused:
        plan("retry", moved_on)
    assert refused.value.code == 2


def test_actions_that_wait_for_a_paused_object_say_so() -> None:
    paused = {"rollguard.io/paused": "true"}
    note = "(fraud-detector is paused: this takes effect after kubectl rollguard resume fraud-detector -n ml)"
    assert note in plan("promote", md(canary_status(), annotations=paused)).message
    assert note in plan("retry", md(rolled_back_status(), annotations=paused)).message
    assert note not in plan("abort", md(canary_status(), annotations=paused)).message, "abort acts at once"


def three_versions() -> dict[str, Any]:
    status = ModelDeploymentStatus(
        phase="Ready",
        stable=V3,
        history=[
            entry(V1, "Promoted", "first version", "2026-03-01T10:00:00Z"),
            entry(V2, "Promoted", "all steps passed", "2026-03-01T11:00:00Z"),
            entry(ref("1.1.5", "d4d4d4d4d4"), "RolledBack", "AnalysisFailed: x", "2026-03-01T11:30:00Z"),
            entry(V3, "Promoted", "all steps passed", "2026-03-01T12:00:00Z"),
        ],
        serving_version="1.2.0",
    )
    return md(status, version="1.2.0")


def test_undo_defaults_to_the_previous_known_good_version() -> None:
    undo = plan("undo", three_versions())
    assert annotations_of(undo) == {"rollguard.io/undo": f"1.1.0@{TOKEN}"}
    assert undo.message.startswith("requested undo of fraud-detector to known-good version 1.1.0 (revision b2b2b2b2b2)")
    assert annotations_of(plan("undo", three_versions(), to="1.0.0")) == {"rollguard.io/undo": f"1.0.0@{TOKEN}"}
    by_revision = plan("undo", three_versions(), to="a1a1a1a1a1")
    assert annotations_of(by_revision) == {"rollguard.io/undo": f"1.0.0@{TOKEN}"}
    assert plan("undo", three_versions(), to="1.2.0").patch is None, "undo to the serving version writes nothing"


def test_undo_to_an_unknown_version_lists_the_known_good_ones() -> None:
    with pytest.raises(cli.CliError) as refused:
        plan("undo", three_versions(), to="1.1.5")
    assert refused.value.code == 2
    assert "'1.1.5' is not a known-good version of fraud-detector in namespace ml; known-good: 1.0.0, 1.1.0, 1.2.0" in (
        str(refused.value)
    )
    only_one = md(ModelDeploymentStatus(stable=V1, history=[entry(V1, "Promoted", "first", "2026-03-01T10:00:00Z")]))
    with pytest.raises(cli.CliError, match=r"no earlier known-good version to go back to \(known-good: 1.0.0\)"):
        plan("undo", only_one)


def test_undo_names_the_revision_when_a_version_was_promoted_twice() -> None:
    rebuilt = ref("1.0.0", "e5e5e5e5e5")  # same version, new runtime image
    status = ModelDeploymentStatus(
        stable=V2,
        history=[
            entry(V1, "Promoted", "first", "2026-03-01T09:00:00Z"),
            entry(rebuilt, "Promoted", "new image", "2026-03-01T10:00:00Z"),
            entry(V2, "Promoted", "all steps passed", "2026-03-01T11:00:00Z"),
        ],
    )
    assert annotations_of(plan("undo", md(status))) == {"rollguard.io/undo": f"1.0.0@{TOKEN}"}
    assert annotations_of(plan("undo", md(status), to="a1a1a1a1a1")) == {"rollguard.io/undo": f"a1a1a1a1a1@{TOKEN}"}


def test_follow_hint_repeats_context_and_kubeconfig() -> None:
    hinted = plan("abort", md(canary_status()), follow_flags=["--context prod"])
    assert hinted.message.endswith("follow with: kubectl rollguard status fraud-detector -n ml --context prod --watch")


# -- commands against a fake cluster -------------------------------------------------------------
class FakeCluster:
    default_namespace = "ml"

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects}
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        if (namespace, name) not in self.objects:
            raise cli.CliError(f'ModelDeployment "{name}" not found in namespace "{namespace}"')
        return self.objects[namespace, name]

    def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.patches.append((namespace, name, patch))


def run(cluster: FakeCluster, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.run(parse(*argv), cluster, out)
    return code, out.getvalue()


def test_actions_patch_the_object_in_the_default_namespace() -> None:
    cluster = FakeCluster(md(canary_status()))
    code, out = run(cluster, "promote", "fraud-detector")
    assert code == 0 and out.startswith("requested promotion of canary 1.1.0 of fraud-detector")
    [(namespace, name, patch)] = cluster.patches
    assert (namespace, name) == ("ml", "fraud-detector"), "the context's namespace is the default"
    token = patch["metadata"]["annotations"]["rollguard.io/promote"]
    assert token.isdigit() and abs(int(token) / 1e9 - datetime.now(UTC).timestamp()) < 60, "the token is a timestamp"


def test_refused_action_writes_nothing() -> None:
    cluster = FakeCluster(md(rolled_back_status()))
    with pytest.raises(cli.CliError) as refused:
        run(cluster, "promote", "fraud-detector")
    assert refused.value.code == 2 and cluster.patches == []


class RacingCluster(FakeCluster):
    """The rollout ends (rolled back) between the plugin's read and its first patch."""

    def __init__(self) -> None:
        super().__init__(md(canary_status()))
        self.reads = 0

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        self.reads += 1
        obj = md(canary_status()) if self.reads == 1 else md(rolled_back_status())
        obj["metadata"]["resourceVersion"] = str(self.reads)
        return obj

    def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        super().patch(namespace, name, patch)
        raise cli.ConflictError("the object has been modified; please apply your changes to the latest version")


def test_an_action_is_written_only_against_the_version_it_was_checked_on() -> None:
    cluster = RacingCluster()
    with pytest.raises(cli.CliError, match="nothing to promote") as refused:
        run(cluster, "promote", "fraud-detector")
    assert refused.value.code == 2
    [(_, _, attempted)] = cluster.patches
    assert attempted["metadata"]["resourceVersion"] == "1", "the patch carries the version it was planned on"
    assert cluster.reads == 2, "after a conflict the plugin reads again and re-checks"


def test_status_and_history_as_json_and_yaml() -> None:
    cluster = FakeCluster(md(rolled_back_status()))
    code, out = run(cluster, "status", "fraud-detector", "-o", "json")
    assert code == 0 and json.loads(out)["rejected"]["reason"] == "AnalysisFailed"
    code, out = run(cluster, "history", "fraud-detector", "-o", "yaml", "-n", "ml")
    assert [h["outcome"] for h in yaml.safe_load(out)] == ["Promoted", "RolledBack"]
    code, out = run(cluster, "status", "fraud-detector")
    assert code == 0 and out.startswith("fraud-detector  (namespace ml") and "Rejected:" in out


def test_main_reports_a_missing_object_with_name_and_namespace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "Cluster", lambda kubeconfig, context: FakeCluster())
    assert cli.main(["status", "nope", "-n", "elsewhere"]) == 1
    assert capsys.readouterr().err == 'error: ModelDeployment "nope" not found in namespace "elsewhere"\n'
    monkeypatch.setattr(cli, "Cluster", lambda kubeconfig, context: FakeCluster(three_versions()))
    assert cli.main(["undo", "fraud-detector", "--to", "9.9.9"]) == 2
    assert "known-good: 1.0.0, 1.1.0, 1.2.0" in capsys.readouterr().err


def test_api_errors_are_explained() -> None:
    missing = ApiException(status=404, reason="Not Found")
    missing.body = json.dumps(
        {"kind": "Status", "reason": "NotFound", "details": {"name": "x", "kind": "modeldeployments"}}
    )
    assert cli._api_error(missing, "ml", "x") == 'ModelDeployment "x" not found in namespace "ml"'
    no_crd = ApiException(status=404, reason="Not Found")
    no_crd.body = "404 page not found"
    assert "is the rollguard CRD installed?" in cli._api_error(no_crd, "ml", "x")
    forbidden = ApiException(status=403, reason="Forbidden")
    forbidden.body = json.dumps({"message": 'modeldeployments.rollguard.io "x" is forbidden: User "dev" cannot patch'})
    assert cli._api_error(forbidden, "ml", "x").startswith('forbidden: modeldeployments.rollguard.io "x" is forbidden')


def test_default_namespace_comes_from_the_kubeconfig_context(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "ml", "context": {"cluster": "c", "user": "u", "namespace": "ml-team"}},
                    {"name": "plain", "context": {"cluster": "c", "user": "u"}},
                ],
                "current-context": "ml",
            }
        )
    )
    assert cli.Cluster(str(kubeconfig), None).default_namespace == "ml-team"
    assert cli.Cluster(str(kubeconfig), "plain").default_namespace == "default"
    with pytest.raises(cli.CliError, match="cannot load kubeconfig"):
        cli.Cluster(str(kubeconfig), "no-such-context")


# -- watching ------------------------------------------------------------------------------------
def test_watch_until_done_stops_when_the_rollout_ends() -> None:
    frames = iter([md(canary_status()), md(canary_status(promoting=True)), md(rolled_back_status())])
    sleeps: list[float] = []
    out = io.StringIO()
    code = cli.watch_status(lambda: next(frames), out, until_done=True, sleep=sleeps.append)
    assert code == cli.EXIT_ROLLED_BACK, "a rollout that ends rolled back exits 3"
    assert sleeps == [2.0, 2.0], "refreshes every 2s"
    assert out.getvalue().count("fraud-detector  (namespace ml") == 3
    ready = md(ModelDeploymentStatus(observed_generation=2, phase="Ready", stable=V2, serving_version="1.1.0"))
    assert cli.watch_status(lambda: ready, io.StringIO(), until_done=True, sleep=sleeps.append) == 0


def test_watch_gives_up_at_the_timeout() -> None:
    ticks = iter(range(100))
    with pytest.raises(cli.CliError, match="gave up watching after 5s"):
        cli.watch_status(
            lambda: md(canary_status()),
            io.StringIO(),
            until_done=True,
            timeout=5,
            sleep=lambda _: None,
            clock=lambda: float(next(ticks)),
        )
