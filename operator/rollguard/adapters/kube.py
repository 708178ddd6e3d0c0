"""The Kubernetes API: read children, apply them with server-side apply, delete retired ones.

Applies are skipped when the live object already holds every field we would set, so an
unchanged ModelDeployment costs no API writes.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from typing import Any, cast

from kubernetes import client, config, dynamic
from kubernetes.client.exceptions import ApiException
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from rollguard import metrics
from rollguard.core import naming
from rollguard.core.facts import RevisionObserved

Manifest = dict[str, Any]


def _transient(error: BaseException) -> bool:
    return isinstance(error, ApiException) and error.status in (409, 429, 500, 502, 503, 504)


_retrying = retry(
    retry=retry_if_exception(_transient),
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.2, max=2),
    reraise=True,
)


def contains(live: Any, desired: Any) -> bool:
    """True when every field of `desired` is present with the same value in `live`."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and contains(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    if isinstance(desired, bool) or isinstance(live, bool):
        return type(live) is type(desired) and live == desired
    if isinstance(desired, (int, float)) and isinstance(live, (int, float)):
        return float(live) == float(desired)
    return bool(live == desired)


def owned_by(live: Manifest, owner_uid: str) -> bool:
    """True when `owner_uid` is the object's controller: rollguard writes and deletes nothing else."""
    references = (live.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("controller") and ref.get("uid") == owner_uid for ref in references)


def describe_owner(live: Manifest) -> str:
    """Who an object belongs to, as a user would look it up (`kubectl get <kind>/<name>`)."""
    meta = live.get("metadata") or {}
    references = meta.get("ownerReferences") or []
    if references:
        return ", ".join(f"{ref.get('kind')}/{ref.get('name')} (uid {ref.get('uid')})" for ref in references)
    managers = sorted({entry.get("manager", "?") for entry in meta.get("managedFields") or []})
    return "no owner" + (f"; written by {', '.join(managers)}" if managers else "")


class NotOwnedError(Exception):
    """A child's name is taken by an object this ModelDeployment does not own."""

    def __init__(self, kind: str, namespace: str, name: str, owner: str) -> None:
        self.kind, self.name, self.owner = kind, name, owner
        super().__init__(
            f"{kind} {namespace}/{name} already exists and is not owned by this ModelDeployment (owner: {owner}); "
            f"rollguard leaves it untouched. Rename the ModelDeployment or remove that {kind}"
        )


# What YAML refuses raw (DEL, C1 controls, BOM, U+FFFE/F) or reads as a line break (NEL, U+2028/9), which
# would silently fold a value; JSON already escapes C0 controls.
_YAML_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def apply_body(manifest: Manifest) -> bytes:
    """The server-side apply body (apply-patch+yaml), as JSON a YAML parser accepts.

    The client's own json.dumps escapes emoji as surrogate pairs (\\ud83d\\ude00), which the API server's
    YAML parser refuses ("invalid Unicode character escape code"); raw DEL or C1 characters it refuses as
    control characters. Both were found by e2e/test_fuzz.py in spec strings the CRD rightly accepts.
    """
    text = json.dumps(manifest, ensure_ascii=False)
    return _YAML_UNPRINTABLE.sub(lambda char: f"\\u{ord(char.group()):04x}", text).encode()


def load_config() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


class Kube:
    def __init__(self, api: client.ApiClient | None = None) -> None:
        self.api = api or load_config()
        self.dynamic = dynamic.DynamicClient(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    # -- reads -----------------------------------------------------------------------------
    @_retrying
    def get_model_deployment(self, namespace: str, name: str) -> Manifest | None:
        try:
            found = self.custom.get_namespaced_custom_object(
                naming.GROUP, naming.VERSION, namespace, naming.PLURAL, name
            )
            return cast(Manifest, found)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    @_retrying
    def revisions(
        self, namespace: str, md_name: str, owner_uid: str
    ) -> tuple[dict[str, RevisionObserved], dict[str, Manifest]]:
        """Child Deployments by rollout id, and their live objects; labelled Deployments it does not own are ignored."""
        found = self.apps.list_namespaced_deployment(namespace, label_selector=f"{naming.LABEL_MD}={md_name}")
        observed: dict[str, RevisionObserved] = {}
        live: dict[str, Manifest] = {}
        for item in found.items:
            item_meta = item.metadata or client.V1ObjectMeta()
            revision = (item_meta.labels or {}).get(naming.LABEL_ROLLOUT_ID)
            owners = item_meta.owner_references or []
            if not revision or not any(ref.controller and ref.uid == owner_uid for ref in owners):
                continue
            replicas = item.spec.replicas or 0
            ready = (item.status.ready_replicas or 0) if item.status else 0
            up_to_date = bool(item.status and (item.status.observed_generation or 0) >= (item_meta.generation or 0))
            failure = self._failure(namespace, md_name, revision) if ready < replicas else None
            observed[revision] = RevisionObserved(revision, replicas, ready, up_to_date, failure)
            # Items of a typed list carry no apiVersion/kind; add them so `contains` compares like with like.
            live[revision] = {
                **cast(Manifest, self.api.sanitize_for_serialization(item)),
                "apiVersion": "apps/v1",
                "kind": "Deployment",
            }
        return observed, live

    def _failure(self, namespace: str, md_name: str, revision: str) -> str | None:
        """Why pods are not ready, as a kubelet would say it (ImagePullBackOff, CrashLoopBackOff, OOMKilled,
        unschedulable), or why none could be created (the ReplicaSet's FailedCreate: Pod Security, quota).
        Read only while a revision has fewer ready pods than wanted."""
        selector = f"{naming.LABEL_MD}={md_name},{naming.LABEL_ROLLOUT_ID}={revision}"
        pods = self.core.list_namespaced_pod(namespace, label_selector=selector)
        for pod in pods.items:
            pod_name = pod.metadata.name if pod.metadata else "?"
            for container in (pod.status.container_statuses or []) if pod.status else []:
                waiting = container.state.waiting if container.state else None
                if waiting and waiting.reason:
                    last = container.last_state.terminated if container.last_state else None
                    killed = f", last exit {last.reason}" if last and last.reason == "OOMKilled" else ""
                    detail = f" ({waiting.message})" if waiting.message else ""
                    return f"pod {pod_name}: {waiting.reason}{killed}{detail}"
            for condition in (pod.status.conditions or []) if pod.status else []:
                if condition.type == "PodScheduled" and condition.status == "False":
                    return f"pod {pod_name} unschedulable: {condition.message or condition.reason}"
        # ReplicaSet condition ReplicaFailure/FailedCreate: kubernetes pkg/controller/replicaset/replica_set_utils.go
        for replica_set in self.apps.list_namespaced_replica_set(namespace, label_selector=selector).items:
            for failure in (replica_set.status.conditions or []) if replica_set.status else []:
                if failure.type == "ReplicaFailure" and failure.status == "True":
                    name = replica_set.metadata.name if replica_set.metadata else "?"
                    return f"ReplicaSet {name} {failure.reason}: {failure.message}"
        return None

    # -- writes ----------------------------------------------------------------------------
    def read(self, manifest: Manifest) -> Manifest | None:
        """The live object a manifest would be applied to, or None when there is none."""
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        meta = manifest["metadata"]
        try:
            return cast(Manifest, resource.get(name=meta["name"], namespace=meta["namespace"]).to_dict())
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    @_retrying
    def apply(self, manifest: Manifest, owner_uid: str, live: Manifest | None = None) -> bool:
        """Server-side apply unless the live object already matches; returns whether it wrote.

        Raises NotOwnedError, writing nothing, when the name is taken by an object `owner_uid` does not
        control. Conflicts are forced only on objects verified as ours (to undo hand edits); a
        create is never forced, so an object that appeared since the read fails with 409 and the
        retry reads it again.
        """
        meta = manifest["metadata"]
        if live is None:
            live = self.read(manifest)
        if live is not None and not owned_by(live, owner_uid):
            raise NotOwnedError(manifest["kind"], meta["namespace"], meta["name"], describe_owner(live))
        if live is not None and contains(live, manifest):
            return False
        metrics.API_WRITES.labels("apply").inc()
        self._resource(manifest["apiVersion"], manifest["kind"]).server_side_apply(
            body=apply_body(manifest),
            name=meta["name"],
            namespace=meta["namespace"],
            field_manager=naming.FIELD_MANAGER,
            force_conflicts=live is not None,
        )
        return True

    @_retrying
    def delete_deployment(self, namespace: str, name: str, uid: str) -> None:
        """Deletes the Deployment only if it is still the object `uid` (one listed as ours)."""
        try:
            metrics.API_WRITES.labels("delete").inc()
            options = client.V1DeleteOptions(
                propagation_policy="Background", preconditions=client.V1Preconditions(uid=uid)
            )
            self.apps.delete_namespaced_deployment(name, namespace, body=options)
        except ApiException as error:
            if error.status not in (404, 409):  # 409: the uid precondition failed, it is no longer ours
                raise

    @_retrying
    def delete_if_exists(self, api_version: str, kind: str, namespace: str, name: str, owner_uid: str) -> bool:
        """Deletes the object if `owner_uid` controls it; someone else's object of that name is left alone."""
        resource = self._resource(api_version, kind)
        try:
            live = resource.get(name=name, namespace=namespace).to_dict()
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        if not owned_by(live, owner_uid):
            return False
        metrics.API_WRITES.labels("delete").inc()
        try:
            resource.delete(name=name, namespace=namespace, body={"preconditions": {"uid": live["metadata"]["uid"]}})
        except ApiException as error:
            if error.status not in (404, 409):
                raise
        return True

    @_retrying
    def event_since(self, namespace: str, uid: str, reason: str, since: datetime) -> bool:
        """True when the object has an Event with this reason created at or after `since`."""
        found = self.core.list_namespaced_event(namespace, field_selector=f"involvedObject.uid={uid},reason={reason}")
        return any((e.metadata.creation_timestamp or since) >= since for e in found.items)

    @_retrying
    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> Manifest:
        """Merge-patches the status; returns the object as the API server now holds it."""
        metrics.API_WRITES.labels("patch_status").inc()
        written = self.custom.patch_namespaced_custom_object_status(
            naming.GROUP, naming.VERSION, namespace, naming.PLURAL, name, {"status": status}
        )
        return cast(Manifest, written)

    # -- async facade (the sync client must not block kopf's event loop) --------------------
    async def run(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(func, *args, **kwargs)
