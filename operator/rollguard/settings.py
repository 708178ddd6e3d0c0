"""Operator settings, from ROLLGUARD_* environment variables (the Helm chart sets them)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    resync_seconds: float = Field(default=5.0, description="How often each ModelDeployment is re-evaluated.")
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

    @property
    def namespace_list(self) -> list[str]:
        return [ns.strip() for ns in self.namespaces.split(",") if ns.strip()]
