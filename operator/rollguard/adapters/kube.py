"""The Kubernetes API: read children, apply them with server-side apply, delete retired ones.

Applies are skipped when the live object already holds every field we would set, so an
unchanged ModelDeployment costs no API writes.
"""

from __future__ import annotations

import asyncio
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
    def revisions(self, namespace: str, md_name: str) -> tuple[dict[str, RevisionObserved], dict[str, Manifest]]:
        """Child Deployments by rollout id, and their live objects."""
        found = self.apps.list_namespaced_deployment(namespace, label_selector=f"{naming.LABEL_MD}={md_name}")
        observed: dict[str, RevisionObserved] = {}
        live: dict[str, Manifest] = {}
        for item in found.items:
            item_meta = item.metadata or client.V1ObjectMeta()
            revision = (item_meta.labels or {}).get(naming.LABEL_ROLLOUT_ID)
            if not revision:
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
        """Why pods are not ready, as a kubelet would say it (ImagePullBackOff, CrashLoopBackOff, ...)."""
        pods = self.core.list_namespaced_pod(
            namespace, label_selector=f"{naming.LABEL_MD}={md_name},{naming.LABEL_ROLLOUT_ID}={revision}"
        )
        for pod in pods.items:
            pod_name = pod.metadata.name if pod.metadata else "?"
            for container in (pod.status.container_statuses or []) if pod.status else []:
                waiting = container.state.waiting if container.state else None
                if waiting and waiting.reason:
                    return f"pod {pod_name}: {waiting.reason}" + (f" ({waiting.message})" if waiting.message else "")
            for condition in (pod.status.conditions or []) if pod.status else []:
                if condition.type == "PodScheduled" and condition.status == "False":
                    return f"pod {pod_name} unschedulable: {condition.message or condition.reason}"
        return None

    # -- writes ----------------------------------------------------------------------------
    @_retrying
    def apply(self, manifest: Manifest, live: Manifest | None = None) -> bool:
        """Server-side apply unless the live object already matches; returns whether it wrote."""
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        meta = manifest["metadata"]
        if live is None:
            try:
                live = resource.get(name=meta["name"], namespace=meta["namespace"]).to_dict()
            except ApiException as error:
                if error.status != 404:
                    raise
        if live is not None and contains(live, manifest):
            return False
        metrics.API_WRITES.labels("apply").inc()
        resource.server_side_apply(
            body=manifest,
            name=meta["name"],
            namespace=meta["namespace"],
            field_manager=naming.FIELD_MANAGER,
            force_conflicts=True,
        )
        return True

    @_retrying
    def delete_deployment(self, namespace: str, name: str) -> None:
        try:
            metrics.API_WRITES.labels("delete").inc()
            self.apps.delete_namespaced_deployment(name, namespace, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise

    @_retrying
    def delete_if_exists(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        resource = self._resource(api_version, kind)
        try:
            resource.get(name=name, namespace=namespace)
        except ApiException as error:
            if error.status == 404:
                return
            raise
        metrics.API_WRITES.labels("delete").inc()
        try:
            resource.delete(name=name, namespace=namespace)
        except ApiException as error:
            if error.status != 404:
                raise

    @_retrying
    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        metrics.API_WRITES.labels("patch_status").inc()
        self.custom.patch_namespaced_custom_object_status(
            naming.GROUP, naming.VERSION, namespace, naming.PLURAL, name, {"status": status}
        )

    # -- async facade (the sync client must not block kopf's event loop) --------------------
    async def run(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(func, *args, **kwargs)
