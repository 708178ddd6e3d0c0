"""The ModelDeployment spec (rollguard.io/v1alpha1): what a platform team writes.

Every model here is also the CRD's schema (see crdgen.py): field descriptions become
`kubectl explain` text, and `x-kubernetes-validations` are CEL rules the API server enforces.
Defaults live here, not in the CRD, so the stored object stays exactly as the user wrote it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator
from pydantic.config import JsonDict

from rollguard.api import kubetypes
from rollguard.api.base import INT32_MAX, Duration, DurationRange, WireModel, duration_seconds

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
ARTIFACT_URI = r"^(s3|gs|pvc|https|oci|hf)://.+$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
# Label keys, nodeSelector keys and topology keys (a DNS-subdomain prefix, then a name of <= 63).
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# Resource names: the standard ones, or an extended resource with a domain (nvidia.com/gpu).
EXTENDED_RESOURCE = (
    r"^(cpu|memory|ephemeral-storage|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+"
    r"/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$"
)

PromWindow = Annotated[str, DurationRange("1s", "168h")]
"""A Prometheus range ([5m]) such as a query window: 1s to 7 days."""
PromInterval = Annotated[str, DurationRange("1s", "24h")]
"""How often analysis runs, also the default query window: 1s to 24 hours."""


def _cel(rule: str, message: str) -> JsonDict:
    return {"rule": rule, "message": message}


def map_keys(pattern: str, max_length: int, what: str) -> JsonDict:
    """CEL for a map's keys (a structural schema has no propertyNames); the key type checks the same here."""
    rule = f"self.all(k, k.size() <= {max_length} && k.matches(r'{pattern}'))"
    return {"x-kubernetes-validations": [_cel(rule, f"every key must be {what} (at most {max_length} characters)")]}


def _rules(*rules: JsonDict) -> ConfigDict:
    """The shared wire config plus CEL rules the API server enforces at admission."""
    return ConfigDict(**WireModel.model_config, json_schema_extra={"x-kubernetes-validations": list(rules)})


class ModelRef(WireModel):
    """Which model artifact to serve."""

    name: Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=63)] = Field(
        description="Model name, a DNS label. Reaches the container as MODEL_NAME and metrics as `model`."
    )
    version: Annotated[str, StringConstraints(pattern=LABEL_VALUE, max_length=63)] = Field(
        description="Model version, usable as a label value (e.g. 1.4.2, 2026-11-01). A new version starts a rollout."
    )
    uri: Annotated[str, StringConstraints(pattern=ARTIFACT_URI, max_length=2048)] = Field(
        description="Artifact URI: s3://, gs://, pvc://, https://, oci:// or hf://. Reaches the container as MODEL_URI."
    )
    format: str | None = Field(
        default=None,
        max_length=63,
        description="Model format for the runtime (sklearn, xgboost, onnx, pytorch, tensorflow, triton, custom).",
    )


class EnvVar(WireModel):
    model_config = _rules(
        _cel("!has(self.value) || !has(self.valueFrom)", "set value or valueFrom, not both"),
    )

    name: Annotated[str, StringConstraints(pattern=ENV_NAME, max_length=253)]
    value: str | None = Field(default=None, max_length=32768)
    value_from: kubetypes.EnvVarSource | None = Field(default=None, description="As in a Pod's env[].valueFrom.")

    @model_validator(mode="after")
    def _value_or_value_from(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError("set value or valueFrom, not both")
        return self


ResourceName = Annotated[str, StringConstraints(pattern=EXTENDED_RESOURCE, max_length=317)]
_RESOURCE_KEYS = map_keys(
    EXTENDED_RESOURCE, 317, "cpu, memory, ephemeral-storage or an extended resource (vendor.com/x)"
)
# requests <= limits for every resource both name; an extended resource (vendor.com/x) needs equal ones.
_REQUESTS_WITHIN_LIMITS = (
    "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) || "
    "quantity(self.requests[k]).compareTo(quantity(self.limits[k])) <= 0)"
)
_EXTENDED_EQUAL = (
    "!has(self.requests) || self.requests.all(k, !k.contains('/') || (has(self.limits) && k in self.limits && "
    "quantity(self.requests[k]).compareTo(quantity(self.limits[k])) == 0))"
)


class Resources(WireModel):
    """Container resources; names are cpu, memory, ephemeral-storage or an extended resource (vendor.com/x)."""

    model_config = _rules(
        _cel(_REQUESTS_WITHIN_LIMITS, "resources.requests must not exceed resources.limits"),
        _cel(_EXTENDED_EQUAL, "an extended resource (e.g. nvidia.com/gpu) needs limits equal to its requests"),
    )

    requests: dict[ResourceName, kubetypes.Quantity] = Field(
        default_factory=dict,
        max_length=16,
        json_schema_extra=_RESOURCE_KEYS,
        description='e.g. {cpu: "1", memory: 2Gi}',
    )
    limits: dict[ResourceName, kubetypes.Quantity] = Field(
        default_factory=dict, max_length=16, json_schema_extra=_RESOURCE_KEYS, description='e.g. {nvidia.com/gpu: "1"}'
    )

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        for name, request in self.requests.items():
            limit = self.limits.get(name)
            if limit is not None and kubetypes.quantity(request) > kubetypes.quantity(limit):
                raise ValueError("resources.requests must not exceed resources.limits")
            if "/" in name and (limit is None or kubetypes.quantity(request) != kubetypes.quantity(limit)):
                raise ValueError("an extended resource (e.g. nvidia.com/gpu) needs limits equal to its requests")
        return self


class Runtime(WireModel):
    """The serving container."""

    model_config = _rules(
        _cel(
            "!has(self.livenessProbe) || !has(self.livenessProbe.successThreshold) "
            "|| self.livenessProbe.successThreshold <= 1",
            "livenessProbe.successThreshold must be 1",
        )
    )

    image: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = Field(
        description="Model server image, e.g. docker.io/seldonio/mlserver:1.6.1."
    )
    port: int = Field(default=8080, ge=1, le=65535, description="Port the model server listens on. Default 8080.")
    command: list[Annotated[str, StringConstraints(max_length=4096)]] = Field(default_factory=list, max_length=64)
    args: list[Annotated[str, StringConstraints(max_length=4096)]] = Field(default_factory=list, max_length=128)
    env: list[EnvVar] = Field(default_factory=list, max_length=200)
    resources: Resources = Field(default_factory=Resources)
    readiness_probe: kubetypes.Probe | None = Field(
        default=None, description="Pod readinessProbe. Default: TCP on the port, every 5s."
    )
    liveness_probe: kubetypes.Probe | None = Field(
        default=None, description="Pod livenessProbe. Default: TCP on the port after 30s, every 10s."
    )
    node_selector: dict[
        Annotated[str, StringConstraints(pattern=QUALIFIED_NAME, max_length=317)],
        Annotated[str, StringConstraints(pattern=LABEL_VALUE, max_length=63)],
    ] = Field(
        default_factory=dict,
        max_length=32,
        json_schema_extra=map_keys(QUALIFIED_NAME, 317, "a label key such as gpu or example.com/pool"),
        description="e.g. GPU node pools. Keys are label keys, values label values.",
    )
    tolerations: list[kubetypes.Toleration] = Field(default_factory=list, max_length=32)
    service_account_name: str | None = None

    @model_validator(mode="after")
    def _liveness_succeeds_once(self) -> Runtime:
        if (self.liveness_probe or {}).get("successThreshold", 1) > 1:
            raise ValueError("livenessProbe.successThreshold must be 1")
        return self


class Autoscaling(WireModel):
    """Rendered as a HorizontalPodAutoscaler on the serving revision."""

    model_config = _rules(_cel("self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas"))

    min_replicas: int = Field(ge=1, le=10000)
    max_replicas: int = Field(ge=1, le=10000)
    target_cpu_utilization_percent: int = Field(default=80, ge=1, le=100)


class DisruptionBudget(WireModel):
    """Rendered as a PodDisruptionBudget over all serving pods, minAvailable = replicas - maxUnavailable."""

    enabled: bool = True
    max_unavailable: int = Field(
        default=1, ge=0, le=INT32_MAX, description="Pods that voluntary disruptions may take at once."
    )


class Spread(WireModel):
    """Spread replicas across nodes (topologySpreadConstraints)."""

    topology_key: Annotated[str, StringConstraints(pattern=QUALIFIED_NAME, max_length=317)] = "kubernetes.io/hostname"
    max_skew: int = Field(default=1, ge=1, le=INT32_MAX)
    when_unsatisfiable: Literal["ScheduleAnyway", "DoNotSchedule"] = "ScheduleAnyway"


class Pause(WireModel):
    """Wait at a step: for `duration`, or (no duration) until promoted by hand."""

    duration: Duration | None = None


class CanaryStep(WireModel):
    weight: int = Field(ge=1, le=99, description="Percent of traffic sent to the canary at this step.")
    pause: Pause = Field(default_factory=Pause, description="How long to hold this step. {} = until promoted.")


class HTTPRouteRef(WireModel):
    name: Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=253)] = Field(
        description="An HTTPRoute in the same namespace whose backendRefs name <name>-stable and <name>-canary."
    )


class TrafficRouting(WireModel):
    model_config = _rules(
        _cel(
            "!has(self.type) || self.type != 'GatewayAPI' || has(self.httpRoute)",
            "trafficRouting.httpRoute is required when type is GatewayAPI",
        )
    )

    type: Literal["ReplicaRatio", "GatewayAPI"] = Field(
        default="ReplicaRatio",
        description="ReplicaRatio (default): traffic follows ready replicas, no mesh needed. "
        "GatewayAPI: the operator sets the weights of the named HTTPRoute.",
    )
    http_route: HTTPRouteRef | None = None


class Canary(WireModel):
    model_config = _rules(
        _cel(
            "!has(self.maxSurge) || (type(self.maxSurge) == int ? self.maxSurge >= 0 : "
            "self.maxSurge.matches('^[0-9]{1,3}%$'))",
            "maxSurge must be a number of pods (0 or more) or a percent of replicas such as 25%",
        )
    )

    steps: list[CanaryStep] = Field(
        default_factory=lambda: [
            CanaryStep(weight=20, pause=Pause(duration="1m")),
            CanaryStep(weight=50, pause=Pause(duration="1m")),
        ],
        min_length=1,
        max_length=20,
        description="Traffic weights in increasing order, each held for its pause. Default 20% then 50%, 1m each.",
    )
    traffic_routing: TrafficRouting = Field(default_factory=TrafficRouting)
    scale_down_delay: Duration = Field(
        default="30s", description="How long the previous version keeps its pods after promotion. Default 30s."
    )
    max_surge: (
        Annotated[int, Field(ge=0, le=INT32_MAX)] | Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}%$")]
    ) = Field(
        default="25%",
        json_schema_extra={"maxLength": 4},
        description="Pods a rollout may run above replicas: a number, or a percent of replicas rounded up. "
        "Default 25% (1 pod up to 4 replicas). Stable shrinks as the canary's pods become ready, so ready capacity "
        "never dips; with 0, stable first gives up disruptionBudget.maxUnavailable pods (at least 1). "
        "Not applied with spec.autoscaling (the HPA owns stable's count).",
    )
    confirm_promotion: ConfirmPromotion | None = Field(
        default=None, description="Wait for a webhook's 2xx (a load test, an approval) before promoting."
    )


class ConfirmPromotion(WireModel):
    """A gate before promotion: rollguard POSTs to a platform-defined endpoint each analysis round; a 2xx promotes."""

    endpoint: Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=63)] = Field(
        description="Name of an endpoint the platform defines (chart value notifications.endpoints). Until it "
        "answers 2xx the rollout holds after its last step (phase Holding, reason AwaitingConfirmation)."
    )


class Strategy(WireModel):
    model_config = _rules(
        _cel(
            "!has(self.canary) || !has(self.type) || self.type == 'Canary'",
            "strategy.canary is only allowed when strategy.type is Canary",
        )
    )

    type: Literal["Canary", "Rolling"] = Field(
        default="Canary",
        description="Canary (default): steps gated by analysis. Rolling: the new version replaces the old "
        "once all its pods are ready (readiness-gated, no analysis).",
    )
    canary: Canary | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_canary(cls, data: Any) -> Any:
        """type Canary (the default) without `canary` gets the default steps, as documented on Canary.steps."""
        if isinstance(data, dict) and data.get("type", "Canary") == "Canary" and data.get("canary") is None:
            return {**data, "canary": {}}
        return data


class ThresholdRange(WireModel):
    model_config = _rules(
        _cel("has(self.min) || has(self.max)", "thresholdRange needs min, max or both"),
        _cel(
            "!has(self.min) || !has(self.max) || self.min <= self.max",
            "thresholdRange.min must not exceed thresholdRange.max",
        ),
    )

    min: float | None = None
    max: float | None = None


class RelativeToStable(WireModel):
    """Judge the canary against the stable version measured over the same window."""

    max_ratio: float = Field(gt=0, description="Fail when canary > stable x maxRatio (e.g. 1.2).")
    min_absolute: float = Field(
        default=0.0,
        ge=0,
        description="Never fail while the canary's value is at or below this (avoids 0.002 > 0.001 x 1.2).",
    )


MetricTemplate = Literal[
    "error-rate", "latency", "mean-latency", "request-rate", "time-to-first-token", "inter-token-latency"
]


class MetricCheck(WireModel):
    """One health check, run every analysis interval against canary (and stable) pods."""

    model_config = _rules(
        _cel(
            "has(self.template) != has(self.query)",
            "set exactly one of template (a built-in check) or query (your PromQL)",
        ),
        _cel(
            "has(self.thresholdRange) || has(self.relativeToStable)",
            "a check needs thresholdRange, relativeToStable or both",
        ),
    )

    name: Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=63)]
    template: MetricTemplate | None = Field(
        default=None,
        description="Built-in check on the revision's own pods: error-rate (fraction of failed requests), "
        "latency (seconds at `quantile`), mean-latency (seconds), request-rate, time-to-first-token and "
        "inter-token-latency (seconds at `quantile`; LLM servers). Which ones a server has: analysis.metricPreset.",
    )
    query: str | None = Field(
        default=None,
        max_length=4096,
        description="PromQL returning one number. Placeholders: {{ namespace }}, {{ model }}, {{ version }}, "
        '{{ deployment }}, {{ pod_regex }} (the revision\'s pods: pod=~"{{ pod_regex }}"), {{ interval }}, '
        "{{ name }}.",
    )
    sample_query: str | None = Field(
        default=None,
        max_length=4096,
        description="PromQL counting samples behind `query` over the interval (for minSampleCount). "
        "Built-in templates count requests.",
    )
    quantile: float = Field(default=0.99, gt=0, lt=1, description="For template latency. Default 0.99.")
    interval: PromWindow | None = Field(
        default=None, description="Window of the query, 1s..168h. Default: analysis.interval."
    )
    threshold_range: ThresholdRange | None = None
    relative_to_stable: RelativeToStable | None = None
    min_sample_count: int = Field(
        default=0,
        ge=0,
        le=INT32_MAX,
        description="Below this many samples the measurement is inconclusive: neither a pass nor a failure.",
    )

    @model_validator(mode="after")
    def _one_source_and_a_limit(self) -> MetricCheck:
        """The same rules as the CEL ones, for clusters where the CRD is older than the operator."""
        if (self.template is None) == (self.query is None):
            raise ValueError("set exactly one of template (a built-in check) or query (your PromQL)")
        if self.threshold_range is None and self.relative_to_stable is None:
            raise ValueError("a check needs thresholdRange, relativeToStable or both")
        return self


class DriftGate(WireModel):
    """A first-class drift check: the canary's feature or prediction drift score must stay under maxScore."""

    name: Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=63)]
    kind: Literal["feature", "prediction"] = "feature"
    max_score: float = Field(ge=0, description="Fail when the drift score (mean over the window) exceeds this.")
    window: PromWindow = Field(
        default="5m", description="Window over which the score is averaged, 1s..168h. Default 5m."
    )
    min_samples: int = Field(
        default=100,
        ge=0,
        le=INT32_MAX,
        description="Samples (scored requests) needed in the window before judging. Default 100.",
    )
    query: str | None = Field(default=None, max_length=4096, description="Override the built-in drift query.")


class MetricsUnavailable(WireModel):
    """What to do while Prometheus cannot be reached or returns no data: hold, then this."""

    deadline: Duration = Field(default="10m", description="How long to hold the canary in place. Default 10m.")
    action: Literal["Hold", "Rollback"] = Field(
        default="Hold",
        description="After the deadline: Hold (pause and wait for a human) or Rollback. Default Hold.",
    )


class DependencyHold(WireModel):
    """Stable breaking the same limits in the same round as the canary is a shared outage: hold, not roll back."""

    enabled: bool = Field(
        default=True,
        description="Also measure stable against each check's thresholdRange; when every failed check fails on "
        "stable too, hold the canary (cause Dependency) and resume once stable recovers. Default true.",
    )
    max_duration: Duration = Field(
        default="30m", description="How long a shared outage may hold the canary before `action`. Default 30m."
    )
    action: Literal["Hold", "Rollback"] = Field(
        default="Hold",
        description="After maxDuration: Hold (pause and wait for a human) or Rollback the canary. Default Hold.",
    )


class PostPromotion(WireModel):
    """Keep analysing after promotion; roll back to the previous known-good version if checks fail."""

    model_config = _rules(
        _cel(
            "!has(self.duration) || !has(self.continuous) || !self.continuous",
            "set postPromotion.duration or continuous, not both",
        )
    )

    duration: Duration | None = Field(default=None, description="Watch this long after promotion.")
    continuous: bool = Field(default=False, description="Watch for as long as the version serves.")


MetricPreset = Literal["rollguard", "mlserver", "triton", "kserve", "vllm"]


class Analysis(WireModel):
    interval: PromInterval = Field(default="30s", description="How often checks run, 1s..24h. Default 30s.")
    metric_preset: MetricPreset = Field(
        default="rollguard",
        description="Metric names the built-in templates query, selected by namespace and pod: rollguard "
        "(model_requests_total ...), mlserver (model_infer_request_*_total), triton (nv_inference_request_*), "
        "kserve (request_predict_seconds), vllm (vllm:*_seconds, http_requests_total).",
    )
    metrics: list[MetricCheck] = Field(default_factory=list, max_length=32)
    drift: list[DriftGate] = Field(default_factory=list, max_length=16)
    failure_limit: int = Field(
        default=1, ge=0, le=INT32_MAX, description="Failed measurements tolerated; one more rolls back. Default 1."
    )
    inconclusive_limit: int = Field(
        default=10,
        ge=0,
        le=INT32_MAX,
        description="Inconclusive measurements (too few samples) tolerated; one more pauses the canary. Default 10.",
    )
    consecutive_error_limit: int = Field(
        default=2,
        ge=0,
        le=INT32_MAX,
        description="Consecutive query errors tolerated before MetricsAvailable turns False. Default 2.",
    )
    metrics_unavailable: MetricsUnavailable = Field(default_factory=MetricsUnavailable)
    dependency_hold: DependencyHold = Field(default_factory=DependencyHold)
    post_promotion: PostPromotion | None = None

    @property
    def interval_seconds(self) -> float:
        return duration_seconds(self.interval)


NotificationEvent = Literal[
    "RolloutStarted", "StepAdvanced", "Holding", "Promoted", "RolledBack", "Degraded", "Fallback"
]


class NotificationRef(WireModel):
    """Send this ModelDeployment's rollout events to an endpoint the platform defines."""

    endpoint: Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=63)] = Field(
        description="Name of an endpoint in the chart value notifications.endpoints that allows this namespace."
    )
    events: list[NotificationEvent] = Field(
        default_factory=list,
        max_length=7,
        description="Which events to send: RolloutStarted, StepAdvanced, Holding, Promoted, RolledBack, Degraded, "
        "Fallback. Empty (default): all.",
    )


class Fallback(WireModel):
    """A model that serves when the model cannot (smaller, older or rules-based).

    Kept warm as the Deployment <name>-fallback (starting it on demand would cost a model load exactly
    when nothing serves), under the same pod policy as every revision. Its pods get traffic only while
    it is active: when the serving version has had no ready pod for `activateAfter`, or fails its
    post-promotion checks with no known-good version to roll back to.
    """

    model: ModelRef = Field(description="The fallback's model artifact (name, version, uri, format).")
    runtime: Runtime | None = Field(
        default=None,
        description="The fallback's container, e.g. a rules-based image. Default: spec.runtime. The platform's pod "
        "policy applies to it as to spec.runtime.",
    )
    replicas: int = Field(
        default=1,
        ge=1,
        le=10000,
        description="Pods kept warm (and serving while active). Default 1: a small model at a small cost.",
    )
    activate_after: Duration = Field(
        default="10s",
        description="How long the serving version may have no ready pod before the fallback takes its traffic. "
        "Default 10s. The traffic comes back as soon as the serving version has a ready pod again.",
    )


class ModelDeploymentSpec(WireModel):
    """A model served by replicated Deployments, rolled out through a canary gated by Prometheus."""

    model_config = _rules(
        _cel(
            "!has(self.autoscaling) || !has(self.replicas) || "
            "(self.replicas >= self.autoscaling.minReplicas && self.replicas <= self.autoscaling.maxReplicas)",
            "replicas must lie within autoscaling.minReplicas..maxReplicas",
        )
    )

    model: ModelRef
    runtime: Runtime
    replicas: int = Field(default=1, ge=0, le=10000, description="Serving replicas. Default 1.")
    autoscaling: Autoscaling | None = None
    disruption_budget: DisruptionBudget = Field(default_factory=DisruptionBudget)
    spread: Spread | None = Field(default_factory=Spread, description="Default: spread across nodes.")
    paused: bool = Field(default=False, description="Hold the rollout where it is; children are still kept.")
    progress_deadline_seconds: int = Field(
        default=600,
        ge=10,
        le=INT32_MAX,
        description="A new version whose pods are not all ready within this is rolled back. Default 600.",
    )
    strategy: Strategy = Field(default_factory=Strategy)
    analysis: Analysis = Field(default_factory=Analysis)
    history_limit: int = Field(default=10, ge=1, le=100, description="Versions kept in status.history.")
    fallback: Fallback | None = Field(
        default=None,
        description="A model that takes the traffic while the model cannot serve: no ready pod of the serving "
        "version for fallback.activateAfter, or failed post-promotion checks with no known-good version. Kept "
        "warm as <name>-fallback; gives the traffic back when the model recovers (status.fallback, Events "
        "FallbackActivated/FallbackReleased, rollguard_fallback_active).",
    )
    notifications: list[NotificationRef] = Field(
        default_factory=list,
        max_length=8,
        description="Signed webhooks on rollout events, to endpoints the platform defines (by name).",
    )
