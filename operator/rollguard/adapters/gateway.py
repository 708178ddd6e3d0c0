"""Gateway API traffic router: sets the weights of the user's HTTPRoute backendRefs.

The user owns the HTTPRoute (its hosts, parents, matches); rollguard owns only the `weight` of
the backendRefs that name <model-deployment>-stable and <model-deployment>-canary.
"""

from __future__ import annotations

from typing import Any

from rollguard import metrics
from rollguard.adapters.kube import Kube, object_path

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"


class HTTPRouteRouter:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get_object(f"{GROUP}/{VERSION}", "HTTPRoute", namespace, name)

    def set_weights(self, route: dict[str, Any], weights: dict[str, int]) -> bool:
        """Sets backendRef weights (by Service name) on the route as read this pass; returns whether it wrote."""
        namespace, name = route["metadata"]["namespace"], route["metadata"]["name"]
        operations = []
        for rule_index, rule in enumerate(route.get("spec", {}).get("rules", [])):
            for ref_index, ref in enumerate(rule.get("backendRefs", [])):
                wanted = weights.get(ref.get("name", ""))
                if wanted is not None and ref.get("weight", 1) != wanted:
                    path = f"/spec/rules/{rule_index}/backendRefs/{ref_index}/weight"
                    operations.append({"op": "add", "path": path, "value": wanted})
        if not operations:
            return False
        metrics.API_WRITES.labels("patch_route").inc()
        path = object_path(f"{GROUP}/{VERSION}", "HTTPRoute", namespace, name)
        self.kube.request("PATCH", path, body=operations, content_type="application/json-patch+json")
        return True
