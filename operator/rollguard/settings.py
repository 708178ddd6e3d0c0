"""Operator settings, from ROLLGUARD_* environment variables (the Helm chart sets them)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict

from rollguard.core.notify import Catalog, EndpointRule
from rollguard.core.policy import PodPolicy, split_list


class NotificationEndpoint(BaseModel):
    """A webhook the platform defines (chart value notifications.endpoints); tenants name it, never its URL."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    url: str = Field(pattern=r"^https?://[^\s/]+", max_length=2048, description="http(s) URL; redirects not followed.")
    format: Literal["json", "slack"] = "json"
    secret_file: str | None = Field(default=None, description="HMAC key (the mounted Secret's key, trimmed).")
    namespaces: list[str] = Field(default_factory=list, description="Tenant namespaces (shell patterns); empty: all.")
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _signed(self) -> NotificationEndpoint:
        # A Slack incoming-webhook URL is its own secret; every other receiver must be able to verify the sender.
        if self.format == "json" and not self.secret_file:
            raise ValueError(f"endpoint {self.name!r}: format json needs secret (secretFile) to sign with")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROLLGUARD_", extra="ignore")

    namespaces: str = Field(default="", description="Comma-separated namespaces to watch; empty = cluster-wide.")
    prometheus_url: str | None = None
    prometheus_bearer_token_file: str | None = None
    prometheus_username: str | None = None
    prometheus_password_file: str | None = None
    prometheus_ca_file: str | None = None
    prometheus_insecure_skip_verify: bool = False
    prometheus_timeout_seconds: float = 5.0
    prometheus_breaker_failures: int = Field(default=5, description="Consecutive failures that open the breaker.")
    prometheus_breaker_reset_seconds: float = 30.0
    prometheus_query_attempts: int = Field(
        default=3, description="Attempts per query when Prometheus is unreachable, times out or answers 5xx."
    )
    prometheus_retry_max_seconds: float = Field(default=2.0, description="Longest back-off between attempts.")
    prometheus_max_concurrent_queries: int = Field(
        default=8, description="Queries in flight at once (their own threads, apart from Kubernetes API calls)."
    )
    resync_seconds: float = Field(
        default=600.0,
        description="Safety resync: how often an unchanged ModelDeployment with nothing due is looked at again "
        "(from the watch cache, jittered ±10%). Changes and due times (analysis rounds, pauses, deadlines) wake a "
        "pass on their own.",
    )
    max_concurrent_reconciles: int = Field(
        default=16, ge=1, description="Passes running at once across objects (one at a time per object)."
    )
    health_port: int = 8080
    metrics_port: int = 8081
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    leader_election: bool = Field(default=False, description="Hold a Lease before acting (for replicas > 1).")
    leader_election_namespace: str | None = Field(
        default_factory=lambda: os.environ.get("POD_NAMESPACE"),
        description="Namespace of the Lease; defaults to the pod's own (POD_NAMESPACE from the downward API).",
    )
    leader_election_lease: str = "rollguard-leader"
    # The pod policy (core/policy.py): what a ModelDeployment's pods may use. Lists are comma-separated
    # shell patterns; empty allows none, `*` allows any.
    pod_default_service_account: str | None = Field(
        default=None, description="ServiceAccount model pods run as; empty: the namespace's `default`."
    )
    pod_allowed_service_accounts: str = ""
    pod_automount_service_account_token: bool = False
    pod_allowed_secrets: str = ""
    pod_allowed_config_maps: str = ""
    pod_allowed_persistent_volume_claims: str = ""
    pod_allowed_toleration_keys: str = ""
    pod_allowed_node_selector_keys: str = "*"
    pod_restricted_security_context: bool = True
    # Notifications (adapters/notify.py): a JSON list of NotificationEndpoint, from the chart.
    notifications_endpoints: list[NotificationEndpoint] = Field(default_factory=list)
    notifications_attempts: int = Field(default=5, ge=1, le=20, description="Attempts per notification.")
    notifications_retry_max_seconds: float = Field(default=30.0, gt=0, description="Longest back-off between them.")
    notifications_queue_size: int = Field(
        default=256, ge=1, description="Notifications waiting per endpoint; more are dropped (logged and counted)."
    )

    @model_validator(mode="after")
    def _unique_endpoints(self) -> Settings:
        names = [endpoint.name for endpoint in self.notifications_endpoints]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"notifications endpoints must have unique names; repeated: {', '.join(twice)}")
        return self

    @property
    def namespace_list(self) -> list[str]:
        return [ns.strip() for ns in self.namespaces.split(",") if ns.strip()]

    def notification_catalog(self) -> Catalog:
        return Catalog(tuple(EndpointRule(e.name, tuple(e.namespaces)) for e in self.notifications_endpoints))

    def pod_policy(self) -> PodPolicy:
        return PodPolicy(
            default_service_account=self.pod_default_service_account or None,
            service_accounts=split_list(self.pod_allowed_service_accounts),
            automount_service_account_token=self.pod_automount_service_account_token,
            secrets=split_list(self.pod_allowed_secrets),
            config_maps=split_list(self.pod_allowed_config_maps),
            persistent_volume_claims=split_list(self.pod_allowed_persistent_volume_claims),
            toleration_keys=split_list(self.pod_allowed_toleration_keys),
            node_selector_keys=split_list(self.pod_allowed_node_selector_keys),
            restricted_security_context=self.pod_restricted_security_context,
        )
