"""The Kubernetes API: read children, apply them with server-side apply, delete retired ones.

Applies are skipped when the live object already holds every field we would set, so an
unchanged ModelDeployment costs no API writes.

Every request is raw JSON through the official client's configuration, auth and connection pool
(`ApiClient.rest_client`): no typed models, no dynamic client (its discovery and its formatted
exceptions cost more than the requests), and a 404 is an answer (None), not an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from rollguard import metrics
from rollguard.cache import revisions as revisions_of
from rollguard.core import naming
from rollguard.core.facts import RevisionObserved

Manifest = dict[str, Any]

# (connect, read) seconds: a request the API server never answers must not hold a worker thread forever.
REQUEST_TIMEOUT = (10.0, 60.0)
# Plural resource names of the kinds rollguard reads and writes (no discovery needed for these).
PLURALS = {
    "Deployment": "deployments",
    "ReplicaSet": "replicasets",
    "Pod": "pods",
    "Event": "events",
    "Service": "services",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "HTTPRoute": "httproutes",
    naming.KIND: naming.PLURAL,
}
# A create-only apply carries this resourceVersion: the API server creates an absent object (the
# version is not checked on create) and answers 409 Conflict when the name exists, since no object
# can be at version 1 (etcd's first revision precedes every object). kubernetes/kubernetes#106745.
CREATE_ONLY_VERSION = "1"
# Service creates contend on the API server's ClusterIP allocation: past a few at once they only add
# conflicts and retries (measured on kube-apiserver 1.36, 100 creates: 1 at a time 1.1 s, 4 at a time
# 0.9 s, 16 at a time 2.5 s with p90 1.5 s each). Other kinds are created as fast as passes ask.
CREATES_AT_ONCE = {"Service": 4}


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


def create_only(manifest: Manifest) -> Manifest:
    """The manifest as a create-only apply: refused with 409 when an object of that name exists."""
    return {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": CREATE_ONLY_VERSION}}


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    """The REST path of a namespaced object (or of its collection when `name` is None)."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{quote(namespace, safe='')}/{PLURALS[kind]}"
    if name is not None:
        path += f"/{quote(name, safe='')}"
    return f"{path}/{sub}" if sub else path


def load_config(pool_size: int = 0) -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    # A connection per worker thread: with fewer, urllib3 discards (and re-dials) the surplus.
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, pool_size)
    return client.ApiClient(configuration)


class Kube:
    def __init__(self, api: client.ApiClient | None = None, threads: int = 8) -> None:
        self.threads = max(1, threads)
        self.api = api or load_config(self.threads + 2)  # and the Event poster's and leader election's
        self._executor: ThreadPoolExecutor | None = None
        self._creates = {kind: threading.BoundedSemaphore(n) for kind, n in CREATES_AT_ONCE.items()}

    # -- raw requests ----------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        absent: bool = False,
    ) -> Any:
        """One request; the JSON answer as dicts. With `absent`, a 404 answers None instead of raising.

        Auth (tokens, their refresh), TLS and the connection pool are the official client's own.
        Other failures raise ApiException as the generated API classes do (status, reason, body).
        """
        headers = {**self.api.default_headers, "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        self.api.update_params_for_auth(headers, [], ["BearerToken"], path, method, body)
        url = self.api.configuration.host + path + (f"?{urlencode(query)}" if query else "")
        response = self.api.rest_client.request(
            method, url, headers=headers, body=body, _request_timeout=REQUEST_TIMEOUT
        )
        data = response.read()
        if 200 <= response.status < 300:
            return json.loads(data) if data else None
        if absent and response.status == 404:
            return None
        raise ApiException(http_resp=response)

    def get_object(self, api_version: str, kind: str, namespace: str, name: str) -> Manifest | None:
        found = self.request("GET", object_path(api_version, kind, namespace, name), absent=True)
        return found if isinstance(found, dict) else None

    def list_objects(self, api_version: str, kind: str, namespace: str, **query: str) -> list[Manifest]:
        listed = self.request("GET", object_path(api_version, kind, namespace), query=query or None)
        return list((listed or {}).get("items") or [])

    # -- reads -----------------------------------------------------------------------------
    @_retrying
    def get_model_deployment(self, namespace: str, name: str) -> Manifest | None:
        return self.get_object(f"{naming.GROUP}/{naming.VERSION}", naming.KIND, namespace, name)

    @_retrying
    def revisions(
        self, namespace: str, md_name: str, owner_uid: str
    ) -> tuple[dict[str, RevisionObserved], dict[str, Manifest]]:
        """Child Deployments by rollout id, and their live objects; labelled Deployments it does not own are ignored."""
        found = self.list_objects("apps/v1", "Deployment", namespace, labelSelector=f"{naming.LABEL_MD}={md_name}")
        return revisions_of(found, owner_uid, functools.partial(self._failure, namespace, md_name))

    def _failure(self, namespace: str, md_name: str, revision: str) -> str | None:
        """Why pods are not ready, as a kubelet would say it (ImagePullBackOff, CrashLoopBackOff, OOMKilled,
        unschedulable), or why none could be created (the ReplicaSet's FailedCreate: Pod Security, quota).
        Read only while a revision has fewer ready pods than wanted."""
        selector = f"{naming.LABEL_MD}={md_name},{naming.LABEL_ROLLOUT_ID}={revision}"
        for pod in self.list_objects("v1", "Pod", namespace, labelSelector=selector):
            pod_name = (pod.get("metadata") or {}).get("name", "?")
            status = pod.get("status") or {}
            for container in status.get("containerStatuses") or []:
                waiting = (container.get("state") or {}).get("waiting") or {}
                if waiting.get("reason"):
                    last = (container.get("lastState") or {}).get("terminated") or {}
                    killed = ", last exit OOMKilled" if last.get("reason") == "OOMKilled" else ""
                    detail = f" ({waiting['message']})" if waiting.get("message") else ""
                    return f"pod {pod_name}: {waiting['reason']}{killed}{detail}"
            for condition in status.get("conditions") or []:
                if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                    return f"pod {pod_name} unschedulable: {condition.get('message') or condition.get('reason')}"
        # ReplicaSet condition ReplicaFailure/FailedCreate: kubernetes pkg/controller/replicaset/replica_set_utils.go
        for replica_set in self.list_objects("apps/v1", "ReplicaSet", namespace, labelSelector=selector):
            for failure in (replica_set.get("status") or {}).get("conditions") or []:
                if failure.get("type") == "ReplicaFailure" and failure.get("status") == "True":
                    name = (replica_set.get("metadata") or {}).get("name", "?")
                    return f"ReplicaSet {name} {failure.get('reason')}: {failure.get('message')}"
        return None

    # -- writes ----------------------------------------------------------------------------
    def read(self, manifest: Manifest) -> Manifest | None:
        """The live object a manifest would be applied to, or None when there is none."""
        meta = manifest["metadata"]
        return self.get_object(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])

    def _server_side_apply(self, manifest: Manifest, force: bool) -> None:
        metrics.API_WRITES.labels("apply").inc()
        meta = manifest["metadata"]
        query = {"fieldManager": naming.FIELD_MANAGER} | ({"force": "true"} if force else {})
        self.request(
            "PATCH",
            object_path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"]),
            query=query,
            body=apply_body(manifest),
            content_type="application/apply-patch+yaml",
        )

    @_retrying
    def apply(self, manifest: Manifest, owner_uid: str, live: Manifest | None = None) -> bool:
        """Server-side apply unless the live object already matches; returns whether it wrote.

        `live` None means no object is known (the watch-fed cache holds none): the apply is then
        create-only, so a name taken meanwhile, or by an object the cache does not watch (not labelled
        as ours), answers 409 and is read once, instead of a GET before every create.
        Raises NotOwnedError, writing nothing, when the name is taken by an object `owner_uid` does not
        control. Conflicts are forced only on objects verified as ours (to undo hand edits); a
        create is never forced.
        """
        meta = manifest["metadata"]
        if live is None:
            try:
                with self._creates.get(manifest["kind"]) or contextlib.nullcontext():
                    self._server_side_apply(create_only(manifest), force=False)
                return True
            except ApiException as error:
                if error.status != 409:
                    raise
                live = self.read(manifest)
                if live is None:
                    raise  # deleted again since the 409: the retry creates it
        if not owned_by(live, owner_uid):
            raise NotOwnedError(manifest["kind"], meta["namespace"], meta["name"], describe_owner(live))
        if contains(live, manifest):
            return False
        self._server_side_apply(manifest, force=True)
        return True

    def _delete(self, api_version: str, kind: str, namespace: str, name: str, preconditions: dict[str, str]) -> bool:
        """Deletes the object only if it still meets `preconditions`; False when it is gone or changed."""
        metrics.API_WRITES.labels("delete").inc()
        body = {"propagationPolicy": "Background", "preconditions": preconditions}
        try:
            self.request("DELETE", object_path(api_version, kind, namespace, name), body=body)
        except ApiException as error:
            if error.status in (404, 409):  # gone, or a precondition failed: not the object we decided on
                return False
            raise
        return True

    @_retrying
    def delete_deployment(self, namespace: str, name: str, uid: str) -> None:
        """Deletes the Deployment only if it is still the object `uid` (one listed as ours)."""
        self._delete("apps/v1", "Deployment", namespace, name, {"uid": uid})

    @_retrying
    def delete_if_exists(
        self, api_version: str, kind: str, namespace: str, name: str, owner_uid: str, live: Manifest | None = None
    ) -> bool:
        """Deletes the object if `owner_uid` controls it; someone else's object of that name is left alone.

        With `live` (as the watch delivered it) nothing is read: the delete holds only while the object
        is still at that resourceVersion, so ownership was checked on exactly what is deleted.
        """
        if live is None:
            live = self.get_object(api_version, kind, namespace, name)
            if live is None:
                return False
        if not owned_by(live, owner_uid):
            return False
        meta = live["metadata"]
        preconditions = {"uid": meta["uid"]} | (
            {"resourceVersion": meta["resourceVersion"]} if meta.get("resourceVersion") else {}
        )
        return self._delete(api_version, kind, namespace, name, preconditions)

    @_retrying
    def event_since(self, namespace: str, uid: str, reason: str, since: datetime) -> bool:
        """True when the object has an Event with this reason created at or after `since`."""
        selector = f"involvedObject.uid={uid},reason={reason}"
        for event in self.list_objects("v1", "Event", namespace, fieldSelector=selector):
            created = (event.get("metadata") or {}).get("creationTimestamp")
            if not created or datetime.fromisoformat(created.replace("Z", "+00:00")) >= since:
                return True
        return False

    @_retrying
    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> Manifest:
        """Merge-patches the status; returns the object as the API server now holds it."""
        metrics.API_WRITES.labels("patch_status").inc()
        path = object_path(f"{naming.GROUP}/{naming.VERSION}", naming.KIND, namespace, name, "status")
        written = self.request("PATCH", path, body={"status": status}, content_type="application/merge-patch+json")
        return written if isinstance(written, dict) else {}

    # -- async facade (the sync client must not block kopf's event loop) --------------------
    async def run(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Runs a call on this client's worker threads (as many as its connections; bounded apart from
        asyncio's default executor, which other work shares)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="rollguard-kube")
        context = contextvars.copy_context()
        call = functools.partial(context.run, func, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)
