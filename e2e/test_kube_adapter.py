"""The Kube adapter against the real API server: raw JSON requests, a create that proves a name is free
without a read first, and deletes that hold only for the object ownership was checked on.

The requests are recorded as they leave the official client's connection pool (they still go out):
the point is how many the API server is asked, and which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from kubernetes import client

from e2e import md
from rollguard.adapters.kube import Kube, NotOwnedError
from rollguard.cache import Cache
from rollguard.core.builders import Owner
from rollguard.reconciler import Context, _write_children

OWNER_NAME = "payments"


class Recorded:
    """(method, path) of every request the adapter sent, and the status the API server answered."""

    def __init__(self, kube: Kube) -> None:
        self.calls: list[tuple[str, str, int]] = []
        rest = kube.api.rest_client
        send = rest.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            response = send(method, url, *args, **kwargs)
            path = url.split("?", maxsplit=1)[0].removeprefix(kube.api.configuration.host)
            self.calls.append((method, path, response.status))
            return response

        rest.request = request

    def take(self) -> list[tuple[str, str, int]]:
        calls, self.calls = self.calls, []
        return calls


@pytest.fixture
def owner(control_plane: Any, kube_api: client.ApiClient, namespace: str, crd: None) -> Owner:
    """A real ModelDeployment (no operator runs here) so its children are not garbage-collected."""
    md.apply(control_plane, namespace, md.manifest(OWNER_NAME, "1.0.0", replicas=1, strategy={"type": "Rolling"}))
    found = md.get(kube_api, namespace, OWNER_NAME)
    assert found is not None
    return Owner(OWNER_NAME, namespace, found["metadata"]["uid"])


@pytest.fixture
def kube(kube_api: client.ApiClient) -> Iterator[Kube]:
    yield Kube(api=client.ApiClient(kube_api.configuration))


def _children(owner: Owner) -> list[dict[str, Any]]:
    labels = {"app": owner.name}
    template = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "model-server", "image": "x"}]}}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": owner.metadata(owner.name),
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": owner.metadata(owner.name),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}},
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": owner.metadata(owner.name),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{owner.name}-abc"},
                "minReplicas": 1,
                "maxReplicas": 2,
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": owner.metadata(f"{owner.name}-abc"),
            "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": template},
        },
    ]


def test_an_absent_child_is_created_in_one_request_and_later_applies_still_own_every_field(
    kube: Kube, owner: Owner
) -> None:
    recorded = Recorded(kube)
    for manifest in _children(owner):
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        assert kube.apply(manifest, owner.uid, None), f"{kind} {name} created"
        calls = recorded.take()
        assert [(method, status) for method, _, status in calls] == [("PATCH", 201)], (
            f"{kind}: created by one create-only apply, no read before it: {calls}"
        )
        live = kube.read(manifest)
        assert live is not None and live["metadata"]["ownerReferences"][0]["uid"] == owner.uid
        managers = {(f["manager"], f["operation"]) for f in live["metadata"].get("managedFields") or []}
        assert ("rollguard", "Apply") in managers, f"{kind}: our fields are owned by our apply: {managers}"

        # The cache had not seen it yet (a watch behind): the same apply costs a refused write and a read.
        recorded.take()
        assert not kube.apply(manifest, owner.uid, None), f"{kind}: unchanged, so not written"
        calls = recorded.take()
        assert [(method, status) for method, _, status in calls] == [("PATCH", 409), ("GET", 200)], (
            f"{kind}: the refused create-only apply wrote nothing, the read found it ours and as desired: {calls}"
        )

    # A field our apply set and the next one omits is removed: the create was an apply, not a plain create.
    service = _children(owner)[0]
    service["metadata"]["labels"]["extra"] = "1"
    assert kube.apply(service, owner.uid, kube.read(service))
    del service["metadata"]["labels"]["extra"]
    service["spec"]["ports"][0]["port"] = 81  # a change, so the apply is not skipped as already live
    assert kube.apply(service, owner.uid, kube.read(service))
    live = kube.read(service)
    assert live is not None and "extra" not in live["metadata"]["labels"], live["metadata"]["labels"]


def test_a_foreign_object_is_never_written_and_its_owner_is_named(
    kube: Kube, owner: Owner, kube_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(kube_api)
    theirs = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": owner.name, "labels": {"team": "payments"}},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 443}]},
    }
    core.create_namespaced_service(owner.namespace, theirs, field_manager="kubectl")
    before = core.read_namespaced_service(owner.name, owner.namespace)
    recorded = Recorded(kube)
    with pytest.raises(NotOwnedError) as raised:
        kube.apply(_children(owner)[0], owner.uid, None)
    assert f"Service {owner.namespace}/{owner.name} already exists and is not owned" in str(raised.value)
    assert "owner: no owner; written by kubectl" in str(raised.value), str(raised.value)
    assert [(method, status) for method, _, status in recorded.take()] == [("PATCH", 409), ("GET", 200)]
    after = core.read_namespaced_service(owner.name, owner.namespace)
    assert after.metadata.resource_version == before.metadata.resource_version, "their Service was not written"
    assert "rollguard" not in {f.manager for f in after.metadata.managed_fields or []}


def test_a_missing_object_reads_as_none_and_deletes_hold_only_for_the_object_checked(kube: Kube, owner: Owner) -> None:
    budget = _children(owner)[1]
    recorded = Recorded(kube)
    assert kube.read(budget) is None, "a 404 is an answer, not an error"
    assert [status for _, _, status in recorded.take()] == [404]
    assert kube.apply(budget, owner.uid, None)
    seen = kube.read(budget)
    assert seen is not None
    changed = {**budget, "spec": {**budget["spec"], "minAvailable": 0}}
    assert kube.apply(changed, owner.uid, seen), "the PDB moved on since it was seen"
    recorded.take()
    assert not kube.delete_if_exists("policy/v1", "PodDisruptionBudget", owner.namespace, owner.name, owner.uid, seen)
    assert [(m, s) for m, _, s in recorded.take()] == [("DELETE", 409)], "refused: not the version checked"
    assert kube.read(budget) is not None, "still there"
    current = kube.read(budget)
    assert kube.delete_if_exists("policy/v1", "PodDisruptionBudget", owner.namespace, owner.name, owner.uid, current)
    assert kube.read(budget) is None or kube.read(budget)["metadata"].get("deletionTimestamp"), "deleted"


def test_taken_names_the_cache_cannot_see_stop_every_deployment_and_are_all_named(
    kube: Kube, owner: Owner, kube_api: client.ApiClient
) -> None:
    """A cache that holds none of the children (only labelled ones are watched): the create-only applies
    meet the taken names; every one is named, and no Deployment (no pod) is written."""
    theirs = {"team": "payments"}
    core, policy = client.CoreV1Api(kube_api), client.PolicyV1Api(kube_api)
    core.create_namespaced_service(
        owner.namespace,
        {"metadata": {"name": owner.name, "labels": theirs}, "spec": {"ports": [{"port": 443}]}},
        field_manager="kubectl",
    )
    policy.create_namespaced_pod_disruption_budget(
        owner.namespace,
        {"metadata": {"name": owner.name, "labels": theirs}, "spec": {"maxUnavailable": 1}},
        field_manager="kubectl",
    )
    ctx = Context(kube=kube, prometheus=None, post_event=lambda *_: None, cache=Cache())
    children = _children(owner)
    blocker = asyncio.run(_write_children(ctx, owner, children, {}, set(), [], structlog.get_logger("test")))
    assert blocker is not None and blocker[0] == "NameConflict", blocker
    for kind in ("Service", "PodDisruptionBudget"):
        assert f"{kind} {owner.namespace}/{owner.name} already exists and is not owned" in blocker[1], blocker[1]
    deployments = client.AppsV1Api(kube_api).list_namespaced_deployment(owner.namespace).items
    assert deployments == [], f"no Deployment while a name is taken: {[d.metadata.name for d in deployments]}"
    for found in (
        core.read_namespaced_service(owner.name, owner.namespace),
        policy.read_namespaced_pod_disruption_budget(owner.name, owner.namespace),
    ):
        assert not found.metadata.owner_references, "theirs, untouched"
        assert "rollguard" not in {f.manager for f in found.metadata.managed_fields or []}
