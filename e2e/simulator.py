"""Simulated data plane: stands in for the model servers that kwok pods do not run.

    python -m e2e.simulator --kubeconfig KUBECONFIG --port PORT [--namespace NS ...]

Every ``--interval`` seconds it lists the Ready pods labelled ``rollguard.io/model-deployment``
(plus Services and Gateway API HTTPRoutes, to route traffic the way the cluster would) and
serves, on ``127.0.0.1:PORT/metrics``, the series a real model server would export, in the
shape of the server its ``SIMULATED_METRIC_PRESET`` env names (``e2e/preset_shapes.py``); by default
rollguard's own contract:

* ``model_requests_total{namespace,pod,model,version,code}`` (code "200" or "500")
* ``model_request_duration_seconds`` histogram (every request takes the pod's latency)
* ``model_feature_drift_score`` and ``model_prediction_drift_score`` gauges
* ``model_drift_samples_total`` (the pod's request count)

Behaviour per pod comes from its first container's env, see ``e2e/traffic.py``; a pod annotation
``simulator.rollguard.io/<ENV NAME>`` overrides it while the pod runs. If the API
server cannot be reached, the last known pods keep serving (as a real data plane would).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast
from wsgiref.simple_server import make_server

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import make_wsgi_app
from prometheus_client.core import Metric
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler
from prometheus_client.registry import Collector, CollectorRegistry

from e2e import preset_shapes
from e2e.cluster import api_client_for
from e2e.traffic import (
    MODEL_DEPLOYMENT_LABEL,
    Backend,
    RequestCounters,
    Route,
    SimulatedPod,
    pod_from_env,
    traffic_shares,
)

log = logging.getLogger("e2e.simulator")

GATEWAY_GROUP = "gateway.networking.k8s.io"
OVERRIDE_PREFIX = "simulator.rollguard.io/"


def _is_ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None:
        return False
    conditions = (pod.status and pod.status.conditions) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _to_simulated(pod: Any) -> SimulatedPod:
    containers = pod.spec.containers or []
    env = {e.name: e.value for e in (containers[0].env or []) if e.value is not None} if containers else {}
    # A live pod can change behaviour (a model degrading after promotion) through annotations
    # such as simulator.rollguard.io/SIMULATED_ERROR_RATE: "0.3", which override its env.
    annotations = pod.metadata.annotations or {}
    env.update({key.split("/", 1)[1]: value for key, value in annotations.items() if key.startswith(OVERRIDE_PREFIX)})
    return pod_from_env(
        uid=pod.metadata.uid,
        namespace=pod.metadata.namespace,
        name=pod.metadata.name,
        labels=pod.metadata.labels or {},
        env=env,
    )


class ClusterReader:
    """Reads ready model pods, Services and HTTPRoutes from the API server."""

    def __init__(self, api: client.ApiClient, namespaces: Sequence[str]) -> None:
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.namespaces = list(namespaces)
        self._routes_missing_logged = False

    def _pods(self) -> list[Any]:
        if not self.namespaces:
            items: list[Any] = self.core.list_pod_for_all_namespaces(label_selector=MODEL_DEPLOYMENT_LABEL).items
            return items
        return [
            p
            for ns in self.namespaces
            for p in self.core.list_namespaced_pod(ns, label_selector=MODEL_DEPLOYMENT_LABEL).items
        ]

    def ready_pods(self) -> list[SimulatedPod]:
        return [_to_simulated(p) for p in self._pods() if _is_ready(p)]

    def routes(self, namespaces: Iterable[str]) -> list[Route]:
        """HTTPRoutes of the given namespaces, with each Service backend resolved to its selector."""
        routes: list[Route] = []
        for ns in sorted(set(namespaces)):
            try:
                listed = self.custom.list_namespaced_custom_object(GATEWAY_GROUP, "v1", ns, "httproutes")
                raw: list[dict[str, Any]] = cast(dict[str, Any], listed)["items"]
            except ApiException as e:
                if e.status == 404:  # Gateway API CRDs not installed: plain per-replica routing.
                    if not self._routes_missing_logged:
                        log.info("no HTTPRoute CRD (gateway.networking.k8s.io/v1): routing by ready replicas")
                        self._routes_missing_logged = True
                    continue
                raise
            if not raw:
                continue
            selectors = {
                str(s.metadata.name): dict(s.spec.selector or {})
                for s in self.core.list_namespaced_service(ns).items
                if s.metadata and s.spec
            }
            for obj in raw:
                routes.append(_route_from_object(obj, selectors))
        return routes


def _route_from_object(obj: dict[str, Any], selectors: dict[str, dict[str, str]]) -> Route:
    """Flattens every rule's Service backendRefs (weight defaults to 1, as in the Gateway API)."""
    namespace = obj["metadata"]["namespace"]
    backends = []
    for rule in obj.get("spec", {}).get("rules", []) or []:
        for ref in rule.get("backendRefs", []) or []:
            if ref.get("group", "") != "" or ref.get("kind", "Service") != "Service":
                continue
            ref_ns = ref.get("namespace", namespace)
            backends.append(
                Backend(
                    namespace=ref_ns,
                    service=ref["name"],
                    selector=selectors.get(ref["name"], {}) if ref_ns == namespace else {},
                    weight=int(ref.get("weight", 1)),
                )
            )
    return Route(namespace=namespace, name=obj["metadata"]["name"], backends=backends)


class DataPlane(Collector):
    """The simulated pods and their counters; a prometheus_client collector.

    ``update()`` swaps in a new view of the cluster; ``collect()`` (each scrape) first advances
    every counter to the current time, so counters grow continuously, not per refresh.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pods: dict[str, SimulatedPod] = {}
        self._rps: dict[str, float] = {}
        self._counters: dict[str, RequestCounters] = {}
        self._last = time.monotonic()

    def _advance_locked(self) -> None:
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        for uid, pod in self._pods.items():
            self._counters[uid].advance(self._rps.get(uid, 0.0), pod.error_rate, elapsed)

    def update(self, pods: Sequence[SimulatedPod], routes: Sequence[Route]) -> None:
        with self._lock:
            self._advance_locked()
            before = self._pods
            self._pods = {p.uid: p for p in pods}
            self._rps = rps = traffic_shares(pods, routes)
            self._counters = {uid: self._counters.get(uid, RequestCounters()) for uid in self._pods}
            after = self._pods
        self._log_changes(before, after, rps)  # outside the lock: a scrape never waits for logging

    @staticmethod
    def _log_changes(before: dict[str, SimulatedPod], after: dict[str, SimulatedPod], rps: dict[str, float]) -> None:
        """Only the pods that started or stopped being served (at 1,000 pods, all of them would take seconds)."""
        if before and not after:
            log.info("serving no pods (none Ready with label %s)", MODEL_DEPLOYMENT_LABEL)
        for uid in sorted(before.keys() - after.keys(), key=lambda u: (before[u].namespace, before[u].name)):
            log.info("stopped serving %s/%s", before[uid].namespace, before[uid].name)
        for uid in sorted(after.keys() - before.keys(), key=lambda u: (after[u].namespace, after[u].name)):
            p = after[uid]
            log.info(
                "serving %s/%s model=%s version=%s at %.2f rps, error rate %.3f",
                p.namespace,
                p.name,
                p.model,
                p.version,
                rps.get(uid, 0.0),
                p.error_rate,
            )

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            self._advance_locked()
            snapshot = [(p, self._counters[uid]) for uid, p in self._pods.items()]

        yield from preset_shapes.families(snapshot)


def refresh(reader: ClusterReader, plane: DataPlane) -> None:
    pods = reader.ready_pods()
    plane.update(pods, reader.routes(p.namespace for p in pods))


def serve_text_format(port: int, registry: CollectorRegistry) -> None:
    """Serve /metrics on 127.0.0.1 in the classic text format, in a background thread.

    prometheus_client 0.26 writes OpenMetrics sample names with ':' turned into '_' (vLLM's
    `vllm:...` names would not be vLLM's), so the Accept header is ignored, as Prometheus allows.
    """
    app = make_wsgi_app(registry)

    def text_only(environ: dict[str, Any], start_response: Any) -> Any:
        environ.pop("HTTP_ACCEPT", None)
        return app(environ, start_response)

    server = make_server("127.0.0.1", port, text_only, ThreadingWSGIServer, handler_class=_SilentHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


def run(kubeconfig: str, port: int, namespaces: Sequence[str], interval: float) -> None:
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # test apiserver: self-signed
    reader = ClusterReader(api_client_for(Path(kubeconfig)), namespaces)
    plane = DataPlane()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(plane)
    serve_text_format(port, registry)
    scope = ", ".join(namespaces) if namespaces else "all namespaces"
    log.info("serving metrics on http://127.0.0.1:%d/metrics; watching %s every %.1fs", port, scope, interval)
    failing = False
    while True:
        try:
            refresh(reader, plane)
            if failing:
                log.info("API server reachable again")
            failing = False
        except Exception as e:  # keep serving the last known pods, like a real data plane
            if not failing:
                log.warning("cannot read the cluster (%s); still serving the last known pods", e)
            failing = True
        time.sleep(interval)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.simulator", description="Simulated model servers: Prometheus metrics for kwok pods."
    )
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--namespace", action="append", default=[], help="repeatable; default: all namespaces")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between cluster reads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run(args.kubeconfig, args.port, args.namespace, args.interval)


if __name__ == "__main__":
    main()
