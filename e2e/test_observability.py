"""What operators of rollguard watch: the chart's alerts and dashboard against real metrics, and
that no credential leaks into what rollguard writes.

One canary run feeds the tests: a healthy version is promoted, a bad one rolled back, and a check
with broken PromQL holds its canary. The operator is scraped by the test Prometheus as job
"rollguard" and queries Prometheus through a proxy that demands a bearer token, so the token is
known to be sent with every query and can be searched for in Events, logs and status.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e import md
from e2e.binaries import cache_dir
from e2e.cluster import ControlPlane
from e2e.rollguard_process import RollguardProcess
from e2e.waiting import http_get, prom_query, wait_for

CHART = md.REPO / "charts" / "rollguard"
JOB = "rollguard"
PROMTOOL = "/usr/bin/promtool"
ERROR_RATE = {"name": "error-rate", "template": "error-rate", "thresholdRange": {"max": 0.05}}
BROKEN = {"name": "broken", "query": "sum(rate(model_requests_total[", "thresholdRange": {"max": 1}}


def canary(name: str, version: str, check: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    return md.manifest(
        name,
        version,
        2,
        env=env,
        strategy={"type": "Canary", "canary": {"steps": [{"weight": 50, "pause": {"duration": "5s"}}]}},
        analysis={"interval": "5s", "metrics": [check]},
    )


def render(*values: str) -> list[dict[str, Any]]:
    helm = cache_dir() / "bin" / "helm"
    argv = [str(helm), "template", "rollguard", str(CHART), "--namespace=rollguard-system", *values]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"helm template failed (run e2e/build-control-plane.sh?): {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def alert_rules() -> dict[str, dict[str, Any]]:
    [rule] = [d for d in render("--set=prometheusRule.enabled=true", f"--set=prometheusRule.job={JOB}")
              if d["kind"] == "PrometheusRule"]  # fmt: skip
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def test_alert_rules_pass_promtool(tmp_path: Path) -> None:
    [rule] = [d for d in render("--set=prometheusRule.enabled=true") if d["kind"] == "PrometheusRule"]
    rules_file = tmp_path / "rollguard-rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    checked = subprocess.run([PROMTOOL, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, f"promtool check rules failed:\n{checked.stdout}{checked.stderr}"
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout, checked.stdout


# ---- one canary run, observed -----------------------------------------------------------------


class AuthProxy:
    """A Prometheus that wants a bearer token: forwards authorized GETs upstream, refuses the rest."""

    def __init__(self, upstream: str, token: str) -> None:
        self.authorized = self.refused = 0
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {token}":
                    with lock:
                        proxy.refused += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                with lock:
                    proxy.authorized += 1
                status, body = http_get(upstream + self.path, timeout=10)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, name="auth-proxy", daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Observed:
    namespace: str
    process: RollguardProcess
    token: str
    proxy: AuthProxy


@pytest.fixture(scope="module")
def observed(
    control_plane: ControlPlane, kube_api: client.ApiClient, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Observed]:
    if not control_plane.owns_prometheus:
        pytest.skip("ROLLGUARD_E2E_PROMETHEUS_URL is set: the harness cannot add rollguard as a scrape target")
    namespace = f"e2e-observability-{secrets.token_hex(3)}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": namespace}})
    token = f"rg-token-{secrets.token_hex(16)}"
    token_file = tmp_path_factory.mktemp("prometheus-auth") / "token"
    token_file.write_text(token + "\n")
    proxy = AuthProxy(control_plane.prometheus_url, token)
    process = RollguardProcess(
        kubeconfig=control_plane.kubeconfig,
        log_file=control_plane.log_dir / f"rollguard-{namespace}.log",
        namespaces=[namespace],
        prometheus_url=proxy.url,
        extra_env={"ROLLGUARD_PROMETHEUS_BEARER_TOKEN_FILE": str(token_file)},
    )
    try:
        process.start()
        control_plane.add_scrape_target(JOB, process.metrics_address)
        _run_canaries(control_plane, kube_api, namespace)
        yield Observed(namespace, process, token, proxy)
    finally:
        process.stop()
        control_plane.remove_scrape_target(JOB)
        proxy.stop()
        for name in ("scored", "blind"):
            control_plane.kubectl("patch", "-n", namespace, f"md/{name}", "--type=merge",
                                  "-p", '{"metadata":{"finalizers":null}}')  # fmt: skip
        core.delete_namespace(namespace)


def _run_canaries(cp: ControlPlane, api: client.ApiClient, ns: str) -> None:
    md.apply(cp, ns, canary("scored", "1.0.0", ERROR_RATE))
    md.apply(cp, ns, canary("blind", "1.0.0", BROKEN))
    wait_for(lambda: md.serving(api, ns, "scored", "1.0.0"), 60, message="scored 1.0.0 serving")
    wait_for(lambda: md.serving(api, ns, "blind", "1.0.0"), 60, message="blind 1.0.0 serving")
    md.apply(cp, ns, canary("scored", "1.1.0", ERROR_RATE))
    md.apply(cp, ns, canary("blind", "1.1.0", BROKEN))
    wait_for(lambda: md.serving(api, ns, "scored", "1.1.0"), 90, message="healthy canary 1.1.0 promoted")
    md.apply(cp, ns, canary("scored", "2.0.0", ERROR_RATE, env={"SIMULATED_ERROR_RATE": "0.3"}))
    md.wait_phase(api, ns, "scored", "RolledBack", timeout=90)
    wait_for(
        lambda: {e.reason for e in md.events(api, ns, "blind")},
        60,
        message="the canary with broken PromQL reports MetricsUnavailable",
        until=lambda reasons: "MetricsUnavailable" in reasons,
    )


# ---- the dashboard ------------------------------------------------------------------------------

GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "10m"}


def dashboard() -> dict[str, Any]:
    [config_map] = [d for d in render("--set=grafanaDashboard.enabled=true") if d["kind"] == "ConfigMap"]
    board: dict[str, Any] = json.loads(config_map["data"]["rollguard.json"])
    return board


def substitute(expr: str, namespace: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    expr = re.sub(r"\$namespace\b", namespace, expr)
    return re.sub(r"\$name\b", ".*", expr)


def test_every_dashboard_query_returns_series_after_a_canary(control_plane: ControlPlane, observed: Observed) -> None:
    targets = [
        (panel["title"], target["expr"]) for panel in dashboard()["panels"] for target in panel.get("targets", [])
    ]
    assert len(targets) >= 12, f"the dashboard has its panels: {[t for t, _ in targets]}"
    for title, expr in targets:
        query = substitute(expr, observed.namespace)
        series = wait_for(
            lambda q=query: prom_query(control_plane.prometheus_url, q),
            60,
            message=f"panel {title!r}: {query} returns series",
        )
        per_model = [s for s in series if "namespace" in s["metric"]]
        assert all(s["metric"]["namespace"] == observed.namespace for s in per_model), (title, per_model)
    phases = prom_query(control_plane.prometheus_url, substitute(targets[0][1], observed.namespace))
    assert {(s["metric"]["name"], s["metric"]["phase"]) for s in phases} >= {("scored", "RolledBack")}


def test_dashboard_variables_list_the_namespace_and_models(control_plane: ControlPlane, observed: Observed) -> None:
    found: dict[str, list[str]] = {}
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        selector, label = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"]).groups()
        match = urllib.parse.quote(substitute(selector, observed.namespace))
        status, body = http_get(f"{control_plane.prometheus_url}/api/v1/label/{label}/values?match[]={match}")
        assert status == 200, body
        found[variable["name"]] = json.loads(body)["data"]
    assert observed.namespace in found["namespace"]
    assert {"scored", "blind"} <= set(found["name"])


# ---- the alerts ---------------------------------------------------------------------------------


def test_alert_expressions_see_the_rollback_and_stay_quiet_otherwise(
    control_plane: ControlPlane, observed: Observed
) -> None:
    rules = alert_rules()

    def firing(alert: str) -> list[dict[str, str]]:
        series = prom_query(control_plane.prometheus_url, rules[alert]["expr"])
        return [s["metric"] for s in series if s["metric"].get("namespace") in (None, observed.namespace)]

    rolled_back = wait_for(lambda: firing("RollguardRollback"), 30, message="RollguardRollback sees the rollback")
    assert rolled_back == [
        {
            "namespace": observed.namespace,
            "name": "scored",
            "reason": "AnalysisFailed",
            "check": "error-rate",
            "cause": "Model",
        }
    ], rolled_back
    stalled = {(m["name"], m["phase"]) for m in firing("RollguardRolloutStalled")}
    assert ("scored", "RolledBack") in stalled, f"RolledBack counts as stalled (once `for` has passed): {stalled}"
    for quiet in (
        "RollguardOperatorDown",
        "RollguardNoLeader",
        "RollguardSplitBrain",
        "RollguardPrometheusUnreachable",
    ):
        assert firing(quiet) == [], f"{quiet} must not fire while one healthy operator leads"


# ---- no credentials in what rollguard writes ----------------------------------------------------


def test_the_prometheus_token_is_sent_but_never_written(kube_api: client.ApiClient, observed: Observed) -> None:
    assert observed.proxy.authorized > 0, "the analysis queried Prometheus through the token-checking proxy"
    assert observed.proxy.refused == 0, "every query carried the bearer token"

    events = client.CoreV1Api(kube_api).list_namespaced_event(observed.namespace).items
    reasons = {e.reason for e in events}
    assert {"RolledBack", "MetricsUnavailable"} <= reasons, f"the error paths ran: {reasons}"
    texts = {
        "Events": "\n".join(f"{e.reason} {e.message}" for e in events),
        "the operator log": observed.process.log_file.read_text(errors="replace"),
        "ModelDeployment status": json.dumps([md.status(kube_api, observed.namespace, n) for n in ("scored", "blind")]),
        "the operator's /metrics": http_get(f"http://{observed.process.metrics_address}/metrics")[1],
    }
    for where, text in texts.items():
        assert observed.token not in text, f"the Prometheus bearer token leaked into {where}"
    blind = next(e for e in events if e.reason == "MetricsUnavailable")
    assert "broken" in blind.message, f"the event still says what failed: {blind.message}"
