"""The operator's own Prometheus metrics (served on ROLLGUARD_METRICS_PORT at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILE_SECONDS = Histogram("rollguard_reconcile_duration_seconds", "Time of one reconcile pass")
RECONCILE_ERRORS = Counter("rollguard_reconcile_errors_total", "Reconcile passes that raised", ["namespace", "name"])
ANALYSIS_SECONDS = Histogram("rollguard_analysis_duration_seconds", "Time of one analysis round (all queries)")
PHASE = Gauge("rollguard_phase", "1 for the ModelDeployment's current phase", ["namespace", "name", "phase"])
CANARY_WEIGHT = Gauge("rollguard_canary_weight_percent", "Traffic share of the canary", ["namespace", "name"])
CHECK_VALUE = Gauge("rollguard_check_value", "Last measured value of a check", ["namespace", "name", "check"])
CHECK_LIMIT = Gauge(
    "rollguard_check_limit", "Absolute limit of a check (bound=min|max)", ["namespace", "name", "check", "bound"]
)
PROMOTIONS = Counter("rollguard_promotions_total", "Versions promoted to stable", ["namespace", "name"])
ROLLBACKS = Counter(
    "rollguard_rollbacks_total",
    "Versions rolled back, by reason and cause (Model, Data, Infrastructure, Observability, Dependency, Manual...)",
    ["namespace", "name", "reason", "check", "cause"],
)
QUERY_SECONDS = Histogram("rollguard_prometheus_query_duration_seconds", "Latency of Prometheus queries")
QUERY_ERRORS = Counter("rollguard_prometheus_query_errors_total", "Prometheus queries that failed")
BREAKER_OPEN = Gauge(
    "rollguard_prometheus_circuit_open", "1 while the circuit breaker of a Prometheus endpoint is open", ["endpoint"]
)
LEADER = Gauge("rollguard_leader", "1 while this process is the active operator")
API_WRITES = Counter("rollguard_api_writes_total", "Write requests sent to the Kubernetes API", ["verb"])
WATCH_ECHOES = Counter(
    "rollguard_watch_echoes_total", "ModelDeployment watch events that only echoed the operator's own status patch"
)
METRICS_AVAILABLE = Gauge(
    "rollguard_metrics_available",
    "1 while the ModelDeployment's MetricsAvailable condition is True, 0 while it is False (checks cannot be measured)",
    ["namespace", "name"],
)
NOTIFICATIONS = Counter(
    "rollguard_notifications_total",
    "Webhook notifications by endpoint, event and outcome (delivered, rejected, failed, dropped; the "
    "confirm-promotion gate: confirmed, refused, failed)",
    ["endpoint", "event", "outcome"],
)
QUARANTINED = Gauge(
    "rollguard_quarantined",
    "1 while a ModelDeployment's passes raise and it is retried with back-off (see its Stalled condition and logs)",
    ["namespace", "name"],
)
FALLBACK_ACTIVE = Gauge(
    "rollguard_fallback_active",
    "1 while the ModelDeployment's fallback (spec.fallback) serves its traffic because the model cannot",
    ["namespace", "name"],
)
