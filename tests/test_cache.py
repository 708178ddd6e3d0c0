"""The reader over the watch-fed cache (cache.py), fed the raw JSON a watch delivers."""

from __future__ import annotations

from typing import Any

from rollguard import cache
from rollguard.core import naming

UID = "uid-fraud"


def md(rv: int, phase: str, uid: str = UID) -> dict[str, Any]:
    meta = {"namespace": "ml", "name": "fraud", "uid": uid, "resourceVersion": str(rv)}
    return {"metadata": meta, "status": {"phase": phase}}


def deployment(revision: str, replicas: int, ready: int, owner: str = UID, generation: int = 2) -> dict[str, Any]:
    labels = {naming.LABEL_MD: "fraud", naming.LABEL_ROLLOUT_ID: revision}
    owners = [{"kind": "ModelDeployment", "name": "fraud", "uid": owner, "controller": True}]
    return {
        "metadata": {
            "name": f"fraud-{revision}",
            "labels": labels,
            "ownerReferences": owners,
            "generation": generation,
        },
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready, "observedGeneration": 2},
    }


def bound(mds: list[dict[str, Any]], deployments: list[dict[str, Any]] | None = None) -> cache.Cache:
    reader = cache.Cache()
    reader.bind(
        {
            cache.MODEL_DEPLOYMENTS: {("ml", "fraud"): mds},
            cache.CHILDREN["Deployment"]: {("ml", "fraud"): deployments or []},
            cache.ROUTES: {},
            "memo": object(),  # other handler kwargs are not indexes
        }
    )
    return reader


def test_a_status_we_wrote_is_read_back_until_the_watch_catches_up() -> None:
    watched = [md(10, "Progressing")]
    reader = bound(watched)
    reader.wrote(md(12, "Ready"))
    assert reader.model_deployment("ml", "fraud")["status"]["phase"] == "Ready", "our newer write, not the stale watch"  # type: ignore[index]
    watched[0] = md(13, "Ready")  # the watch delivers our write (or something newer)
    assert reader.model_deployment("ml", "fraud")["metadata"]["resourceVersion"] == "13", "then the watch's copy"  # type: ignore[index]


def test_a_deleted_or_recreated_object_is_never_answered_from_our_write() -> None:
    watched: list[dict[str, Any]] = []
    reader = bound(watched)
    reader.wrote(md(12, "Ready"))
    assert reader.model_deployment("ml", "fraud") is None, "gone from the watch: gone"
    watched.append(md(5, "Pending", uid="uid-new"))  # a new object of the same name (lower rv cannot win by age)
    reader.wrote(md(12, "Ready"))
    found = reader.model_deployment("ml", "fraud")
    assert found is not None and found["metadata"]["uid"] == "uid-new", f"the new object, got {found}"


def test_revisions_from_raw_deployments_read_pods_only_for_unready_ones() -> None:
    asked: list[str] = []

    def failure(revision: str) -> str | None:
        asked.append(revision)
        return "pod fraud-b-1: ImagePullBackOff"

    items = [deployment("a", 2, 2), deployment("b", 2, 0), deployment("c", 1, 1, owner="someone-else")]
    observed, live = cache.revisions(items, UID, failure)
    assert set(observed) == {"a", "b"}, f"a labelled Deployment we do not own is ignored: {set(observed)}"
    assert asked == ["b"], f"pods are read only for the revision that is not ready, asked {asked}"
    assert observed["b"].failure == "pod fraud-b-1: ImagePullBackOff" and observed["a"].failure is None
    assert (observed["a"].replicas, observed["a"].ready, observed["a"].up_to_date) == (2, 2, True)
    assert live["a"]["kind"] == "Deployment" and live["a"]["apiVersion"] == "apps/v1", "comparable to manifests"
    stale = cache.revisions([deployment("a", 2, 2, generation=3)], UID, failure)[0]["a"]
    assert not stale.up_to_date, "a spec the Deployment controller has not observed yet is not up to date"


def test_children_are_found_by_kind_and_name() -> None:
    reader = bound([md(1, "Ready")], [deployment("a", 1, 1)])
    assert reader.child("Deployment", "ml", "fraud", "fraud-a") is not None
    assert reader.child("Deployment", "ml", "fraud", "fraud-z") is None
    assert reader.child("Service", "ml", "fraud", "fraud") is None, "an index not declared reads as empty"
    assert reader.child("ConfigMap", "ml", "fraud", "fraud") is None, "a kind not cached is never claimed absent"
    assert reader.route("ml", "fraud-route") is None
