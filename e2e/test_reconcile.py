"""Issue 3 against the real control plane: a ModelDeployment becomes serving workloads."""

from __future__ import annotations

import threading
from typing import Any

import yaml
from kubernetes import client

from e2e import md
from e2e.rollguard_process import RollguardProcess
from e2e.waiting import wait_for

ROLLING = {"strategy": {"type": "Rolling"}}


def _ready(api: client.ApiClient, namespace: str, name: str) -> bool:
    ready = md.condition(api, namespace, name, "Ready")
    return bool(ready and ready["status"] == "True")


def test_apply_example_creates_children_and_kubectl_wait_returns(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    example = yaml.safe_load((md.REPO / "examples" / "fraud-detector.yaml").read_text())
    md.apply(control_plane, namespace, example)
    waited = control_plane.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", "--timeout=90s", "modeldeployment/fraud-detector"
    )
    assert waited.returncode == 0, f"kubectl wait --for=condition=Ready should return 0: {waited.stderr}"

    status = md.status(kube_api, namespace, "fraud-detector")
    assert status["phase"] == "Ready", f"phase should be Ready, got {status.get('phase')}"
    assert status["servingVersion"] == "1.0.0"
    assert status["observedGeneration"] == md.get(kube_api, namespace, "fraud-detector")["metadata"]["generation"]
    assert status["history"][0]["outcome"] == "Promoted", "the first version is recorded as known-good"

    [deployment] = md.deployments(kube_api, namespace, "fraud-detector")
    assert deployment.status.ready_replicas == 3, "3 replicas should be ready"
    labels = deployment.spec.template.metadata.labels
    assert labels["rollguard.io/model"] == "fraud-detector" and labels["rollguard.io/version"] == "1.0.0"
    assert labels["rollguard.io/rollout-id"] == status["stable"]["revision"], "pods carry the rollout id"
    env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
    assert env["MODEL_URI"] == "s3://models/fraud-detector/1.0.0" and env["MODEL_VERSION"] == "1.0.0"
    owner = deployment.metadata.owner_references[0]
    assert owner.kind == "ModelDeployment" and owner.controller, "children are owned by the ModelDeployment"

    service = client.CoreV1Api(kube_api).read_namespaced_service("fraud-detector", namespace)
    assert service.spec.selector == {"rollguard.io/model-deployment": "fraud-detector"}
    pdb = client.PolicyV1Api(kube_api).read_namespaced_pod_disruption_budget("fraud-detector", namespace)
    assert pdb.spec.min_available == 2, "replicas 3 - disruptionBudget.maxUnavailable 1, counted over pods only"

    listed = control_plane.kubectl("get", "-n", namespace, "md", "fraud-detector")
    assert "1.0.0" in listed.stdout and "Ready" in listed.stdout, f"printer columns: {listed.stdout}"


def test_kubectl_scale_uses_the_scale_subresource(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    md.apply(control_plane, namespace, md.manifest("scaled", replicas=2, **ROLLING))
    wait_for(lambda: _ready(kube_api, namespace, "scaled"), 60, message="scaled Ready")
    scaled = control_plane.kubectl("scale", "-n", namespace, "md/scaled", "--replicas=4")
    assert scaled.returncode == 0, f"kubectl scale should work through the scale subresource: {scaled.stderr}"
    wait_for(
        lambda: (
            md.status(kube_api, namespace, "scaled").get("readyReplicas") == 4 and _ready(kube_api, namespace, "scaled")
        ),
        60,
        message="4 ready replicas after kubectl scale",
    )


def test_version_change_keeps_capacity_and_removes_old_revision(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    md.apply(control_plane, namespace, md.manifest("capacity", version="1.0.0", replicas=3, **ROLLING))
    wait_for(lambda: _ready(kube_api, namespace, "capacity"), 60, message="v1 Ready")

    lowest_ready: list[int] = []
    done = threading.Event()

    def watch_capacity() -> None:
        while not done.is_set():
            lowest_ready.append(sum(md.ready_pods_by_version(kube_api, namespace, "capacity").values()))
            done.wait(0.2)

    watcher = threading.Thread(target=watch_capacity, daemon=True)
    watcher.start()
    md.apply(control_plane, namespace, md.manifest("capacity", version="1.1.0", replicas=3, **ROLLING))
    wait_for(
        lambda: (
            md.status(kube_api, namespace, "capacity").get("servingVersion") == "1.1.0"
            and md.ready_pods_by_version(kube_api, namespace, "capacity") == {"1.1.0": 3}
        ),
        90,
        message="1.1.0 serving on 3 pods and the 1.0.0 pods gone",
    )
    done.set()
    watcher.join()
    budget_floor = 3 - 1  # replicas - disruptionBudget.maxUnavailable
    assert min(lowest_ready) >= budget_floor, f"ready pods dipped to {min(lowest_ready)} (< {budget_floor})"
    wait_for(lambda: len(md.deployments(kube_api, namespace, "capacity")) == 1, 60, message="old revision removed")
    history = [(h["version"], h["outcome"]) for h in md.status(kube_api, namespace, "capacity")["history"]]
    assert history == [("1.0.0", "Promoted"), ("1.1.0", "Promoted")], history


def test_never_ready_version_is_rolled_back_and_not_retried(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    good = md.manifest("stuck", version="1.0.0", replicas=2, progressDeadlineSeconds=15, **ROLLING)
    md.apply(control_plane, namespace, good)
    wait_for(lambda: _ready(kube_api, namespace, "stuck"), 60, message="v1 Ready")

    bad = md.manifest("stuck", version="2.0.0", replicas=2, progressDeadlineSeconds=15, **ROLLING)
    bad["spec"]["runtime"]["nodeSelector"] = {"gpu": "h100"}  # no such node pool: pods never schedule
    md.apply(control_plane, namespace, bad)
    status = md.wait_phase(kube_api, namespace, "stuck", "RolledBack", timeout=60)
    rejected = status["rejected"]
    assert rejected["version"] == "2.0.0" and rejected["reason"] == "ProgressDeadlineExceeded", rejected
    assert "unschedulable" in rejected["message"], f"the reason names the pods' failure: {rejected['message']}"
    assert status["servingVersion"] == "1.0.0", "the known-good version keeps serving"
    stalled = md.condition(kube_api, namespace, "stuck", "Stalled")
    assert stalled and stalled["status"] == "True" and stalled["reason"] == "RolledBack", stalled
    wait_for(
        lambda: md.ready_pods_by_version(kube_api, namespace, "stuck") == {"1.0.0": 2},
        30,
        message="only the 2 known-good pods remain",
    )
    warnings = [e for e in md.events(kube_api, namespace, "stuck") if e.type == "Warning" and e.reason == "RolledBack"]
    assert warnings and "2.0.0" in warnings[0].message, "a Warning Event says which version was rolled back"

    # Re-applying the same manifest (as a GitOps tool does on every sync) changes nothing.
    passes = rollguard.metric("rollguard_reconcile_duration_seconds_count")
    writes = rollguard.metric("rollguard_api_writes_total")
    md.apply(control_plane, namespace, bad)
    wait_for(
        lambda: rollguard.metric("rollguard_reconcile_duration_seconds_count") >= passes + 3,
        30,
        message="three more reconcile passes",
    )
    assert rollguard.metric("rollguard_api_writes_total") == writes, "an unchanged object costs no API writes"
    assert md.status(kube_api, namespace, "stuck")["phase"] == "RolledBack"

    # A new version starts again.
    md.apply(control_plane, namespace, md.manifest("stuck", version="2.0.1", replicas=2, **ROLLING))
    wait_for(
        lambda: (
            md.status(kube_api, namespace, "stuck").get("servingVersion") == "2.0.1"
            and _ready(kube_api, namespace, "stuck")
        ),
        60,
        message="2.0.1 rolled out after the rejection",
    )


def test_delete_garbage_collects_everything(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    md.apply(control_plane, namespace, md.manifest("doomed", replicas=2, **ROLLING))
    wait_for(lambda: _ready(kube_api, namespace, "doomed"), 60, message="Ready")
    deleted = control_plane.kubectl("delete", "-n", namespace, "md/doomed", "--timeout=60s")
    assert deleted.returncode == 0, deleted.stderr
    core = client.CoreV1Api(kube_api)
    selector = "rollguard.io/model-deployment=doomed"

    def leftovers() -> dict[str, int]:
        return {
            "deployments": len(md.deployments(kube_api, namespace, "doomed")),
            "pods": len(core.list_namespaced_pod(namespace, label_selector=selector).items),
            "services": len(core.list_namespaced_service(namespace, label_selector=selector).items),
            "pdbs": len(client.PolicyV1Api(kube_api).list_namespaced_pod_disruption_budget(namespace).items),
        }

    wait_for(leftovers, 60, message="all children garbage-collected", until=lambda left: not any(left.values()))


def test_children_edited_or_deleted_by_hand_are_restored(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    md.apply(control_plane, namespace, md.manifest("restored", replicas=2, **ROLLING))
    wait_for(lambda: _ready(kube_api, namespace, "restored"), 60, message="Ready")
    core = client.CoreV1Api(kube_api)
    core.delete_namespaced_service("restored", namespace)
    [deployment] = md.deployments(kube_api, namespace, "restored")
    client.AppsV1Api(kube_api).patch_namespaced_deployment_scale(
        deployment.metadata.name, namespace, {"spec": {"replicas": 7}}
    )
    wait_for(
        lambda: core.read_namespaced_service("restored", namespace).spec.selector is not None,
        30,
        message="deleted Service recreated",
    )
    wait_for(
        lambda: (
            client.AppsV1Api(kube_api).read_namespaced_deployment(deployment.metadata.name, namespace).spec.replicas
            == 2
        ),
        30,
        message="hand-edited replicas restored to the spec's 2",
    )


def test_operator_judged_mistake_stalls_and_keeps_serving(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    md.apply(control_plane, namespace, md.manifest("judged", replicas=2, **ROLLING))
    wait_for(lambda: _ready(kube_api, namespace, "judged"), 60, message="Ready")
    wrong = md.manifest(
        "judged",
        version="1.1.0",
        replicas=2,
        strategy={"type": "Canary", "canary": {"steps": [{"weight": 50}, {"weight": 20}]}},
    )
    md.apply(control_plane, namespace, wrong)
    status = md.wait_status(
        kube_api,
        namespace,
        "judged",
        lambda s: md.has_condition(s, "Stalled"),
        30,
        "Stalled=True for decreasing canary weights",
    )
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "InvalidSpec" and "spec.strategy.canary.steps" in stalled["message"], stalled
    assert status["servingVersion"] == "1.0.0"
    assert md.ready_pods_by_version(kube_api, namespace, "judged") == {"1.0.0": 2}, "v1 keeps serving"
    assert any(e.reason == "InvalidSpec" and e.type == "Warning" for e in md.events(kube_api, namespace, "judged"))
    spec = md.get(kube_api, namespace, "judged")["spec"]
    assert spec == wrong["spec"], "the operator never rewrites the user's spec"
