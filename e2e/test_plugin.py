"""`kubectl rollguard` against the real control plane, run the way a user runs it: the real kubectl
binary finds `kubectl-rollguard` on PATH and hands it the arguments.

Each action only writes an annotation; the operator (a separate process) carries it out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from e2e import md
from e2e.rollguard_process import RollguardProcess
from e2e.waiting import wait_for

PLUGIN_DIR = Path(sys.executable).parent  # the venv's bin/, where `pip install -e .` put kubectl-rollguard
ERROR_RATE = {"name": "error-rate", "template": "error-rate", "thresholdRange": {"max": 0.05}}
HELD_AT_50 = {"weight": 50, "pause": {}}  # an untimed pause: waits for a human


def manifest(name: str, version: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return md.manifest(
        name,
        version=version,
        replicas=2,
        strategy={
            "type": "Canary",
            "canary": {"steps": list(steps) or [HELD_AT_50], "scaleDownDelay": "1s"},
        },
        analysis={"interval": "3s", "metrics": [ERROR_RATE]},
    )


def plugin(
    cp: Any, namespace: str, *args: str, expect: int = 0, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`kubectl rollguard ARGS -n NAMESPACE --kubeconfig ...`; asserts the exit code."""
    assert (PLUGIN_DIR / "kubectl-rollguard").exists(), (
        f"kubectl-rollguard is not installed in {PLUGIN_DIR}: run `pip install -e .` in the venv"
    )
    env = {**os.environ, "PATH": f"{PLUGIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("KUBECONFIG", None)
    argv = [str(cp.kubectl_bin), "rollguard", *args, "-n", namespace, "--kubeconfig", str(cp.kubeconfig)]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    assert result.returncode == expect, (
        f"`kubectl rollguard {' '.join(args)}` should exit {expect}, exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


def serving(api: client.ApiClient, namespace: str, name: str, version: str) -> dict[str, Any]:
    """Wait until `version` serves with no rollout in progress."""
    return md.wait_status(
        api,
        namespace,
        name,
        lambda s: s.get("servingVersion") == version and "rollout" not in s,
        90,
        f"{namespace}/{name} serving {version} with no rollout in progress",
    )


def canary_at_weight(api: client.ApiClient, namespace: str, name: str, version: str) -> dict[str, Any]:
    return md.wait_status(
        api,
        namespace,
        name,
        lambda s: (
            (s.get("rollout") or {}).get("target", {}).get("version") == version
            and bool(s["rollout"].get("weightReachedAt"))
        ),
        90,
        f"canary {version} of {name} reaching its step weight",
    )


def annotations(api: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    body = md.get(api, namespace, name) or {}
    return dict(body["metadata"].get("annotations") or {})


def table_row(output: str, first: str) -> list[str]:
    """The cells of the table line that starts with `first`."""
    rows = [line.split() for line in output.splitlines() if line.split()[:1] == [first]]
    assert rows, f"no line starting with {first!r} in:\n{output}"
    return rows[0]


def seconds_since(iso: str) -> float:
    return (datetime.now(UTC) - datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)).total_seconds()


def test_untimed_pause_waits_for_manual_promote(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    name = "manual"
    md.apply(control_plane, namespace, manifest(name, "1.0.0"))
    serving(kube_api, namespace, name, "1.0.0")
    md.apply(control_plane, namespace, manifest(name, "2.0.0"))
    canary_at_weight(kube_api, namespace, name, "2.0.0")

    # Three passing analysis rounds at 50%: a timed step would have moved on; this one waits.
    status = md.wait_status(
        kube_api,
        namespace,
        name,
        lambda s: any(c.get("successes", 0) >= 3 for c in (s.get("rollout") or {}).get("checks", [])),
        60,
        "three passing error-rate rounds on the canary",
    )
    rollout = status["rollout"]
    assert rollout["stepIndex"] == 0 and not rollout.get("promoting"), f"the canary must wait at step 1: {rollout}"
    assert rollout["weight"] == 50 and status["servingVersion"] == "1.0.0", status
    # Without a traffic router the share follows ready pods: 1 canary pod beside 2 stable ones.
    assert 0 < status["canaryWeight"] <= 50, f"the canary takes a share of traffic: {status['canaryWeight']}%"

    shown = plugin(control_plane, namespace, "status", name).stdout
    assert "Version:     requested 2.0.0, serving 1.0.0" in shown, shown
    assert "Step:      1/1  [50% (until promoted)] -> 100%" in shown, f"the step and its weights:\n{shown}"
    assert "State:     waiting at 50% for a manual promote" in shown, shown
    assert f"Next:      kubectl rollguard promote {name} -n {namespace}\n" in shown, shown
    check = table_row(shown, "error-rate")
    assert check[1] == "Passed" and check[3:5] == ["<=", "0.05"], f"last value against its limit: {check}"
    assert float(check[2]) <= 0.05, f"the error rate of a healthy canary is within 0.05: {check}"
    assert table_row(shown, "1.0.0")[1:3] == ["Promoted", "*"], f"history shows the serving version:\n{shown}"

    promoted = plugin(control_plane, namespace, "promote", name).stdout
    assert promoted.startswith(f"requested promotion of canary 2.0.0 of {name} past its last step (token "), promoted
    assert f"follow with: kubectl rollguard status {name} -n {namespace}" in promoted, promoted
    token = annotations(kube_api, namespace, name)["rollguard.io/promote"]
    assert token in promoted and token.isdigit(), f"the annotation carries the printed token {token}"

    # Follow it the way the printed hint says, until the rollout ends (exit 0 = Ready).
    followed = plugin(control_plane, namespace, "status", name, "--watch", "--until-done", "--timeout", "90s").stdout
    last_frame = followed.rsplit("--- ", 1)[-1]
    assert "Phase:       Ready" in last_frame and "serving 2.0.0" in last_frame, last_frame
    status = serving(kube_api, namespace, name, "2.0.0")
    assert status["handledActions"]["promote"] == token, "the operator recorded the token as handled"
    history = json.loads(plugin(control_plane, namespace, "history", name, "-o", "json").stdout)
    assert [(h["version"], h["outcome"]) for h in history] == [("1.0.0", "Promoted"), ("2.0.0", "Promoted")], history


def test_abort_rolls_back_and_retry_starts_again(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    name = "aborted"
    md.apply(control_plane, namespace, manifest(name, "1.0.0"))
    serving(kube_api, namespace, name, "1.0.0")
    md.apply(control_plane, namespace, manifest(name, "2.0.0"))
    canary_at_weight(kube_api, namespace, name, "2.0.0")

    aborted = plugin(control_plane, namespace, "abort", name).stdout
    assert aborted.startswith(f"requested abort of the Canary rollout of 2.0.0 of {name} (back to 1.0.0)"), aborted
    status = md.wait_phase(kube_api, namespace, name, "RolledBack", timeout=60)
    assert status["rejected"]["reason"] == "Aborted" and status["rejected"]["version"] == "2.0.0", status["rejected"]
    assert status["servingVersion"] == "1.0.0", "the old version serves"
    wait_for(
        lambda: md.ready_pods_by_version(kube_api, namespace, name),
        30,
        message="only the 2 pods of 1.0.0 remain",
        until=lambda pods: pods == {"1.0.0": 2},
    )
    as_json = json.loads(plugin(control_plane, namespace, "status", name, "-o", "json").stdout)
    assert as_json["rejected"]["reason"] == "Aborted", as_json
    shown = plugin(control_plane, namespace, "status", name).stdout
    assert "Rejected:    2.0.0" in shown and "Aborted" in shown, shown
    assert f"kubectl rollguard retry {name} -n {namespace}" in shown, "the view says how to retry"
    refused = plugin(control_plane, namespace, "abort", name, expect=2)
    assert "nothing to abort" in refused.stderr, refused.stderr

    retried = plugin(control_plane, namespace, "retry", name).stdout
    assert retried.startswith(f"requested retry of rejected version 2.0.0 of {name}"), retried
    status = md.wait_status(
        kube_api,
        namespace,
        name,
        lambda s: (s.get("rollout") or {}).get("target", {}).get("version") == "2.0.0" and "rejected" not in s,
        60,
        "a new canary of 2.0.0 after retry",
    )
    assert status["rollout"]["kind"] == "Canary" and status["servingVersion"] == "1.0.0", status
    canary_at_weight(kube_api, namespace, name, "2.0.0")


def test_undo_goes_back_to_a_known_good_version_without_touching_the_spec(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    name = "undone"
    quick = {"weight": 50, "pause": {"duration": "3s"}}
    md.apply(control_plane, namespace, manifest(name, "1.0.0", quick))
    serving(kube_api, namespace, name, "1.0.0")
    md.apply(control_plane, namespace, manifest(name, "2.0.0", quick))
    status = serving(kube_api, namespace, name, "2.0.0")
    outcomes = [(h["version"], h["outcome"]) for h in status["history"]]
    assert outcomes == [("1.0.0", "Promoted"), ("2.0.0", "Promoted")], f"two promoted versions: {outcomes}"
    spec_before = md.get(kube_api, namespace, name)["spec"]

    refused = plugin(control_plane, namespace, "promote", name, expect=2)
    assert "no rollout in progress" in refused.stderr and "nothing to promote" in refused.stderr, refused.stderr
    unknown = plugin(control_plane, namespace, "undo", name, "--to", "9.9.9", expect=2)
    assert "known-good: 1.0.0, 2.0.0" in unknown.stderr, f"the known-good versions are listed: {unknown.stderr}"
    written = annotations(kube_api, namespace, name)
    assert not any(k.startswith("rollguard.io/") for k in written), f"refused actions write nothing: {written}"

    undone = plugin(control_plane, namespace, "undo", name, "--to", "1.0.0").stdout
    assert undone.startswith(f"requested undo of {name} to known-good version 1.0.0"), undone
    status = serving(kube_api, namespace, name, "1.0.0")
    assert status["rejected"]["version"] == "2.0.0" and status["rejected"]["reason"] == "Undone", status["rejected"]
    wait_for(
        lambda: md.ready_pods_by_version(kube_api, namespace, name),
        30,
        message="only the 2 pods of 1.0.0 serve after undo",
        until=lambda pods: pods == {"1.0.0": 2},
    )
    assert md.get(kube_api, namespace, name)["spec"] == spec_before, "undo never edits the spec"
    assert annotations(kube_api, namespace, name)["rollguard.io/undo"].startswith("1.0.0@")

    history = plugin(control_plane, namespace, "history", name).stdout
    assert [table_row(history, v)[2] for v in ("1.0.0", "2.0.0")] == ["Promoted", "Promoted"], history
    rows = [line.split() for line in history.splitlines() if line.split()[:1] == ["1.0.0"]]
    assert len(rows) == 2 and rows[-1][3] == "*", f"1.0.0 is recorded again and marked serving:\n{history}"


def test_pause_freezes_a_canary_and_resume_releases_it(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    name = "frozen"
    step = {"weight": 50, "pause": {"duration": "15s"}}
    md.apply(control_plane, namespace, manifest(name, "1.0.0", step))
    serving(kube_api, namespace, name, "1.0.0")
    md.apply(control_plane, namespace, manifest(name, "2.0.0", step))
    reached = canary_at_weight(kube_api, namespace, name, "2.0.0")["rollout"]["weightReachedAt"]

    paused = plugin(control_plane, namespace, "pause", name).stdout
    assert paused.startswith(f"requested pause of the rollout of 2.0.0 of {name} (rollguard.io/paused=true)"), paused
    assert annotations(kube_api, namespace, name)["rollguard.io/paused"] == "true"
    frozen = md.wait_phase(kube_api, namespace, name, "Paused", timeout=30)
    analysed_at = frozen["rollout"].get("lastAnalysisAt")

    # Past the step's 15s and several analysis intervals, over more reconcile passes: still frozen.
    passes = rollguard.metric("rollguard_reconcile_duration_seconds_count")
    wait_for(
        lambda: (
            seconds_since(reached) > 15 + 2 * 3
            and rollguard.metric("rollguard_reconcile_duration_seconds_count") >= passes + 5
        ),
        60,
        message="the step's pause and two analysis intervals elapsed, over 5 reconcile passes",
    )
    status = md.status(kube_api, namespace, name)
    assert status["phase"] == "Paused" and status["servingVersion"] == "1.0.0", status
    assert status["rollout"]["stepIndex"] == 0 and not status["rollout"].get("promoting"), status["rollout"]
    assert status["rollout"].get("lastAnalysisAt") == analysed_at, "no analysis runs while paused"
    shown = plugin(control_plane, namespace, "status", name).stdout
    assert "paused by the rollguard.io/paused annotation" in shown, shown
    assert plugin(control_plane, namespace, "pause", name).stdout.startswith(f"{name} is already paused")

    resumed = plugin(control_plane, namespace, "resume", name).stdout
    assert "releasing the pause" in resumed, resumed
    left = annotations(kube_api, namespace, name)
    assert "rollguard.io/paused" not in left and left["rollguard.io/resume"].isdigit(), left
    serving(kube_api, namespace, name, "2.0.0")

    history = plugin(control_plane, namespace, "history", name).stdout
    assert table_row(history, "1.0.0")[2] == "Promoted", history
    assert table_row(history, "2.0.0")[2:4] == ["Promoted", "*"], history
    assert "known-good versions" in history and "1.0.0, 2.0.0" in history, history
