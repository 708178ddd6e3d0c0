"""The operator under test, run as its own process beside the cluster (kwok pods run nothing).

Tests start it, kill it mid-rollout, restart it, and read its JSON logs and /metrics.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from e2e.processes import free_port, tail
from e2e.waiting import http_get, wait_for

REPO = Path(__file__).resolve().parents[1]


class RollguardProcess:
    """`python -m rollguard` watching the given namespaces, with its own health and metrics ports."""

    def __init__(
        self,
        kubeconfig: Path,
        log_file: Path,
        namespaces: list[str],
        prometheus_url: str | None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig, self.log_file, self.namespaces = kubeconfig, log_file, namespaces
        self.prometheus_url = prometheus_url
        self.extra_env = extra_env or {}
        self.health_port, self.metrics_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_address(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    def start(self, timeout: float = 60.0) -> RollguardProcess:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONPATH": str(REPO / "operator"),
            "ROLLGUARD_NAMESPACES": ",".join(self.namespaces),
            "ROLLGUARD_RESYNC_SECONDS": "1",
            "ROLLGUARD_HEALTH_PORT": str(self.health_port),
            "ROLLGUARD_METRICS_PORT": str(self.metrics_port),
            "ROLLGUARD_LOG_LEVEL": "INFO",
            **self.extra_env,
        }
        env.pop("ROLLGUARD_PROMETHEUS_URL", None)
        if self.prometheus_url:
            env["ROLLGUARD_PROMETHEUS_URL"] = self.prometheus_url
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"==== {time.strftime('%H:%M:%S')} starting rollguard\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rollguard", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(
            self._healthy,
            timeout,
            message=f"rollguard /healthz on port {self.health_port}; log tail:\n{tail(self.log_file)}",
        )
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"rollguard exited with {self.proc.returncode}:\n{tail(self.log_file, 40)}")
        status, _ = http_get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1.0)
        return status == 200

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: the operator dies mid-pass, as in a node failure or OOM kill."""
        self.stop(signal.SIGKILL)

    def logs(self) -> list[dict[str, Any]]:
        """The structured log lines written so far (non-JSON lines are skipped)."""
        records = []
        for line in self.log_file.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records

    def metric(self, metric_name: str, /, **labels: str) -> float:
        """Sum of a metric's samples on the operator's /metrics matching the given labels."""
        status, body = http_get(f"http://{self.metrics_address}/metrics", timeout=2.0)
        assert status == 200, f"operator /metrics answered {status}"
        total = 0.0
        for line in body.splitlines():
            if not line.startswith(metric_name) or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            if series.split("{", 1)[0] != metric_name:
                continue
            if all(f'{key}="{val}"' in series for key, val in labels.items()):
                total += float(value)
        return total
