"""The ModelDeployment spec (rollguard.io/v1alpha1): what a platform team writes.

Every model here is also the CRD's schema (see crdgen.py): field descriptions become
`kubectl explain` text, and `x-kubernetes-validations` are CEL rules the API server enforces.
Defaults live here, not in the CRD, so the stored object stays exactly as the user wrote it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator
from pydantic.config import JsonDict

from rollguard.api.base import Duration, WireModel, duration_seconds

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
ARTIFACT_URI = r"^(s3|gs|pvc|https|oci|hf)://.+$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"

KubeObject = dict[str, Any]
"""A Kubernetes sub-object (probe, toleration, valueFrom) passed through as written."""


def _cel(rule: str, message: str) -> JsonDict:
    return {"rule": rule, "message": message}


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
    name: Annotated[str, StringConstraints(pattern=ENV_NAME, max_length=253)]
    value: str | None = None
    value_from: KubeObject | None = Field(default=None, description="As in a Pod's env[].valueFrom.")


class Resources(WireModel):
    requests: dict[str, str] = Field(default_factory=dict, description='e.g. {cpu: "1", memory: 2Gi}')
    limits: dict[str, str] = Field(default_factory=dict, description='e.g. {nvidia.com/gpu: "1"}')


class Runtime(WireModel):
    """The serving container."""

    image: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = Field(
        description="Model server image, e.g. docker.io/seldonio/mlserver:1.6.1."
    )
    port: int = Field(default=8080, ge=1, le=65535, description="Port the model server listens on. Default 8080.")
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list, max_length=200)
    resources: Resources = Field(default_factory=Resources)
    readiness_probe: KubeObject | None = Field(
        default=None, description="Pod readinessProbe. Default: TCP on the port, every 5s."
    )
    liveness_probe: KubeObject | None = Field(
        default=None, description="Pod livenessProbe. Default: TCP on the port after 30s, every 10s."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="e.g. GPU node pools.")
    tolerations: list[KubeObject] = Field(default_factory=list)
    service_account_name: str | None = None


class Autoscaling(WireModel):
    """Rendered as a HorizontalPodAutoscaler on the serving revision."""

    model_config = _rules(_cel("self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas"))

    min_replicas: int = Field(ge=1, le=10000)
    max_replicas: int = Field(ge=1, le=10000)
    target_cpu_utilization_percent: int = Field(default=80, ge=1, le=100)


class DisruptionBudget(WireModel):
    """Rendered as a PodDisruptionBudget over all serving pods."""

    enabled: bool = True
    max_unavailable: int = Field(default=1, ge=0, description="Pods that voluntary disruptions may take at once.")


class Spread(WireModel):
    """Spread replicas across nodes (topologySpreadConstraints)."""

    topology_key: str = "kubernetes.io/hostname"
    max_skew: int = Field(default=1, ge=1)
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


MetricTemplate = Literal["error-rate", "latency", "request-rate"]


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
        description="Built-in check: error-rate (fraction of 5xx), latency (seconds at `quantile`), request-rate.",
    )
    query: str | None = Field(
        default=None,
        max_length=4096,
        description="PromQL returning one number. Placeholders: {{ namespace }}, {{ model }}, {{ version }}, "
        "{{ deployment }}, {{ interval }}, {{ name }}.",
    )
    sample_query: str | None = Field(
        default=None,
        max_length=4096,
        description="PromQL counting samples behind `query` over the interval (for minSampleCount). "
        "Built-in templates count requests.",
    )
    quantile: float = Field(default=0.99, gt=0, lt=1, description="For template latency. Default 0.99.")
    interval: Duration | None = Field(default=None, description="Window of the query. Default: analysis.interval.")
    threshold_range: ThresholdRange | None = None
    relative_to_stable: RelativeToStable | None = None
    min_sample_count: int = Field(
        default=0,
        ge=0,
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
    window: Duration = Field(default="5m", description="Window over which the score is averaged. Default 5m.")
    min_samples: int = Field(
        default=100, ge=0, description="Samples (scored requests) needed in the window before judging. Default 100."
    )
    query: str | None = Field(default=None, max_length=4096, description="Override the built-in drift query.")


class MetricsUnavailable(WireModel):
    """What to do while Prometheus cannot be reached or returns no data: hold, then this."""

    deadline: Duration = Field(default="10m", description="How long to hold the canary in place. Default 10m.")
    action: Literal["Hold", "Rollback"] = Field(
        default="Hold",
        description="After the deadline: Hold (pause and wait for a human) or Rollback. Default Hold.",
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


MetricPreset = Literal["rollguard", "mlserver", "triton"]


class Analysis(WireModel):
    interval: Duration = Field(default="30s", description="How often checks run. Default 30s.")
    metric_preset: MetricPreset = Field(
        default="rollguard",
        description="Metric names the built-in templates query: rollguard (model_requests_total ...), "
        "mlserver (model_infer_request_success/failure), triton (nv_inference_request_*).",
    )
    metrics: list[MetricCheck] = Field(default_factory=list, max_length=32)
    drift: list[DriftGate] = Field(default_factory=list, max_length=16)
    failure_limit: int = Field(
        default=1, ge=0, description="Failed measurements tolerated; one more rolls back. Default 1."
    )
    inconclusive_limit: int = Field(
        default=10,
        ge=0,
        description="Inconclusive measurements (too few samples) tolerated; one more pauses the canary. Default 10.",
    )
    consecutive_error_limit: int = Field(
        default=2,
        ge=0,
        description="Consecutive query errors tolerated before MetricsAvailable turns False. Default 2.",
    )
    metrics_unavailable: MetricsUnavailable = Field(default_factory=MetricsUnavailable)
    post_promotion: PostPromotion | None = None

    @property
    def interval_seconds(self) -> float:
        return duration_seconds(self.interval)


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
        description="A new version whose pods are not all ready within this is rolled back. Default 600.",
    )
    strategy: Strategy = Field(default_factory=Strategy)
    analysis: Analysis = Field(default_factory=Analysis)
    history_limit: int = Field(default=10, ge=1, le=100, description="Versions kept in status.history.")
