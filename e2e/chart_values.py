"""helm --set flags shared by the static chart tests and the e2e chart tests."""

from __future__ import annotations

WATCHING = ["--set=watchNamespaces={team-a,team-b}"]
ALL_OPTIONAL_FEATURES = [
    "--set=replicas=2",
    "--set=prometheus.url=https://prometheus.monitoring.svc:9090",
    "--set=prometheus.tls.caSecret=prometheus-ca",
    "--set=prometheus.auth.existingSecret=prometheus-auth",
    "--set=prometheus.auth.type=basic",
    "--set=serviceMonitor.enabled=true",
    "--set=prometheusRule.enabled=true",
    "--set=grafanaDashboard.enabled=true",
]
