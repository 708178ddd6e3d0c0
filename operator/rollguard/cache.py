"""A thin reader over the watch-fed cache: kopf indexes (declared in handlers.py) of ModelDeployments,
their children and HTTPRoutes, held as the raw JSON the watches delivered.

A pass reads here instead of the API server. What the operator itself just wrote (a status patch) is
kept beside the indexes until the watch catches up, so a pass never decides on an older status than
the one it wrote. kopf holds every handler until all indexes have been listed once
(kopf/_core/reactor/processing.py, `operator_indexed`), so an empty answer here means "none exist".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rollguard.core import naming
from rollguard.core.facts import RevisionObserved

Manifest = dict[str, Any]
Key = tuple[str, str]

# Index names, as the index functions in handlers.py are named (kopf passes indexes by function name).
MODEL_DEPLOYMENTS = "model_deployment_index"
CHILDREN = {
    "Deployment": "deployment_index",
    "Service": "service_index",
    "PodDisruptionBudget": "disruption_budget_index",
    "HorizontalPodAutoscaler": "autoscaler_index",
}
ROUTES = "route_index"


def _version(obj: Manifest) -> int:
    """The resourceVersion as a number (etcd's revision); -1 when it is not one."""
    text = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else -1


class Cache:
    def __init__(self) -> None:
        self._indexes: Mapping[str, Mapping[Any, Iterable[Manifest]]] = {}
        self._written: dict[Key, Manifest] = {}
        self._own_versions: dict[Key, str] = {}  # the resourceVersion our last status patch produced

    @property
    def bound(self) -> bool:
        return bool(self._indexes)

    def bind(self, indexes: Mapping[str, Any]) -> None:
        """Keeps kopf's index objects (they are updated in place by the watches)."""
        if not self._indexes:
            self._indexes = {name: value for name, value in indexes.items() if name.endswith("_index")}

    def _values(self, index: str, key: Key) -> list[Manifest]:
        found = self._indexes.get(index) or {}
        return list(found.get(key, ()))

    # -- ModelDeployments ---------------------------------------------------------------------
    def model_deployment(self, namespace: str, name: str) -> Manifest | None:
        key = (namespace, name)
        watched = next(iter(self._values(MODEL_DEPLOYMENTS, key)), None)
        written = self._written.get(key)
        if written is None:
            return watched
        if watched is None or watched["metadata"].get("uid") != written["metadata"].get("uid"):
            self._written.pop(key, None)  # deleted (or replaced by a new object of that name) since we wrote
            return watched
        if _version(watched) >= _version(written):
            self._written.pop(key, None)  # the watch has caught up
            return watched
        return written

    def wrote(self, obj: Manifest | None) -> None:
        """The object as the API server returned it after our write."""
        if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
            key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            self._written[key] = obj
            version = obj["metadata"].get("resourceVersion")
            if version:
                self._own_versions[key] = str(version)

    def echo(self, obj: Manifest) -> bool:
        """True when a watch event carries exactly the object our own last status patch produced: the
        pass that wrote it already decided on it, so it needs no other. Any other writer's change has
        another resourceVersion (and kopf delivers every event, unbatched), so it is never taken for one."""
        meta = obj.get("metadata") or {}
        version = meta.get("resourceVersion")
        key = (str(meta.get("namespace")), str(meta.get("name")))
        return bool(version) and self._own_versions.get(key) == str(version)

    def forget(self, namespace: str, name: str) -> None:
        self._written.pop((namespace, name), None)
        self._own_versions.pop((namespace, name), None)

    def model_deployments(self, namespace: str) -> list[Manifest]:
        found = self._indexes.get(MODEL_DEPLOYMENTS) or {}
        return [obj for (ns, _), objs in found.items() if ns == namespace for obj in objs]

    # -- children and routes ------------------------------------------------------------------
    def children(self, kind: str, namespace: str, md_name: str) -> list[Manifest]:
        """Objects of `kind` labelled as children of the ModelDeployment `md_name`."""
        return self._values(CHILDREN[kind], (namespace, md_name))

    def child(self, kind: str, namespace: str, md_name: str, name: str) -> Manifest | None:
        if kind not in CHILDREN:
            return None
        return next((c for c in self.children(kind, namespace, md_name) if c["metadata"]["name"] == name), None)

    def route(self, namespace: str, name: str) -> Manifest | None:
        return next(iter(self._values(ROUTES, (namespace, name))), None)


def revisions(
    deployments: Iterable[Manifest], owner_uid: str, failure: Callable[[str], str | None]
) -> tuple[dict[str, RevisionObserved], dict[str, Manifest]]:
    """Child Deployments by rollout id, and their live objects, from raw JSON; labelled Deployments
    this ModelDeployment does not own are ignored. `failure(revision)` is asked only while a revision
    has fewer ready pods than wanted (it reads pods: the one read a pass still makes)."""
    observed: dict[str, RevisionObserved] = {}
    live: dict[str, Manifest] = {}
    for item in deployments:
        meta = item.get("metadata") or {}
        revision = (meta.get("labels") or {}).get(naming.LABEL_ROLLOUT_ID)
        owners = meta.get("ownerReferences") or []
        if not revision or not any(ref.get("controller") and ref.get("uid") == owner_uid for ref in owners):
            continue
        status = item.get("status") or {}
        replicas = int((item.get("spec") or {}).get("replicas") or 0)
        ready = int(status.get("readyReplicas") or 0)
        up_to_date = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
        observed[revision] = RevisionObserved(
            revision, replicas, ready, up_to_date, failure(revision) if ready < replicas else None
        )
        live[revision] = {**item, "apiVersion": "apps/v1", "kind": "Deployment"}
    return observed, live
