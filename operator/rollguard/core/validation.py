"""What only the operator can judge (the schema and CEL rules catch the rest at admission)."""

from __future__ import annotations

import itertools

from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import RevisionRef
from rollguard.core import naming
from rollguard.core.plan import has_checks, render_all
from rollguard.core.queries import QueryError


def problems_of(spec: ModelDeploymentSpec, route_missing: bool, metrics_configured: bool) -> list[str]:
    """Each problem names the field, the value seen and the rule."""
    problems: list[str] = []
    canary = spec.strategy.canary
    if canary is not None:
        weights = [step.weight for step in canary.steps]
        if any(later <= earlier for earlier, later in itertools.pairwise(weights)):
            problems.append(f"spec.strategy.canary.steps: weights {weights} must increase step by step")
        if canary.traffic_routing.type == "GatewayAPI" and route_missing and canary.traffic_routing.http_route:
            problems.append(
                f"spec.strategy.canary.trafficRouting.httpRoute: HTTPRoute {canary.traffic_routing.http_route.name!r}"
                " not found in this namespace (or the Gateway API CRDs are not installed)"
            )
    names = [c.name for c in spec.analysis.metrics] + [g.name for g in spec.analysis.drift]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"spec.analysis: check names must be unique, repeated: {duplicates}")
    if has_checks(spec):
        if not metrics_configured:
            problems.append(
                "spec.analysis: checks need Prometheus, but the operator has no Prometheus URL "
                "(set prometheus.url in the chart, or ROLLGUARD_PROMETHEUS_URL)"
            )
        template = naming.template_of(spec)
        probe = RevisionRef(revision="probe", version=spec.model.version, image="", uri="", template=template)
        try:
            render_all(spec, "probe", "probe", probe, probe)
        except QueryError as error:
            problems.append(f"spec.analysis: {error}")
    return problems
