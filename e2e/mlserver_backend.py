"""Real MLServer processes as the backends of kwok pods, scraped the way a cluster would scrape them.

    fleet = MLServerFleet(control_plane, namespace, "fraud", workdir)
    fleet.start()   # one MLServer per Ready pod of ModelDeployment "fraud", plus inference traffic
    ...
    fleet.stop()

MLServer 1.7.1, mlserver-sklearn and scikit-learn come from PyPI into their own venv under
``$ROLLGUARD_CACHE_DIR`` (``e2e/install-model-servers.sh``, run by ``make deps`` and on first
use), never into the project's venv. Each server listens on 127.0.0.1 only (free ports for
HTTP, gRPC and metrics) and serves a scikit-learn model trained at test time on synthetic data
(no downloads). A pod whose env has ``SIMULATED_MODEL_BUG=raises-on-negative`` gets a pipeline
whose first step is ``sqrt``: a negative feature becomes NaN and LogisticRegression raises, so
MLServer answers 500 and counts a failure, like a model that breaks on inputs it never saw.

Each server is a Prometheus scrape target labelled ``namespace`` and ``pod`` (what
kubernetes_sd relabelling or a PodMonitor attaches), and inference requests are spread evenly
over the ready servers of the ModelDeployment, a fixed share of them with a negative feature.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from e2e.processes import ManagedProcess, free_port
from e2e.traffic import MODEL_DEPLOYMENT_LABEL

log = logging.getLogger("e2e.mlserver")

MLSERVER_VERSION = "1.7.1"
INSTALL_SCRIPT = Path(__file__).with_name("install-model-servers.sh")
BUG_ENV = "SIMULATED_MODEL_BUG"
RAISES_ON_NEGATIVE = "raises-on-negative"
START_TIMEOUT = 90.0  # MLServer needs ~4 s alone; several at once on 2 cores take longer

# Run by the MLServer venv's Python: two pipelines on the same synthetic data (4 features).
TRAIN = """
import sys
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

out = sys.argv[1]
rng = np.random.default_rng(9)
features = rng.uniform(-1, 1, size=(400, 4))
labels = (features.sum(axis=1) > 0).astype(int)
healthy = make_pipeline(FunctionTransformer(np.abs), LogisticRegression()).fit(features, labels)
raises = make_pipeline(FunctionTransformer(np.sqrt), LogisticRegression()).fit(np.abs(features), labels)
joblib.dump(healthy, f"{out}/healthy.joblib")
joblib.dump(raises, f"{out}/raises-on-negative.joblib")
"""


def mlserver_python() -> Path:
    """The MLServer venv's python, installing it on first use (cached, keyed by version)."""
    result = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"installing mlserver=={MLSERVER_VERSION} from PyPI failed (bash {INSTALL_SCRIPT}):\n"
            + result.stderr[-3000:]
        )
    return Path(result.stdout.strip().splitlines()[-1])


def train_models(python: Path, directory: Path) -> dict[str, Path]:
    """Train both models with the MLServer venv's scikit-learn (the version that will load them)."""
    directory.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [str(python), "-c", TRAIN, str(directory)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"training the test models failed:\n{result.stderr[-3000:]}"
    return {kind: directory / f"{kind}.joblib" for kind in ("healthy", RAISES_ON_NEGATIVE)}


def infer(port: int, model: str, features: list[float], timeout: float = 5.0) -> int:
    """POST one V2 inference request to /v2/models/<model>/infer (no version: the usual client call)."""
    body = {"inputs": [{"name": "features", "shape": [1, len(features)], "datatype": "FP64", "data": features}]}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/models/{model}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@dataclass
class Backend:
    """One MLServer standing in for one pod."""

    namespace: str
    pod: str
    model: str
    kind: str
    process: ManagedProcess
    http_port: int
    metrics_port: int
    ready: bool = False
    answers: dict[int, int] = field(default_factory=dict)

    @property
    def job(self) -> str:
        return f"mlserver-{self.namespace}-{self.pod}"


def _is_ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def _env(pod: Any) -> dict[str, str]:
    containers = pod.spec.containers or []
    return {e.name: e.value for e in (containers[0].env or []) if e.value is not None} if containers else {}


class MLServerFleet:
    """Keeps one real MLServer per Ready pod of a ModelDeployment, scraped and sent traffic."""

    def __init__(
        self,
        cp: Any,
        namespace: str,
        model_deployment: str,
        workdir: Path,
        *,
        total_rps: float = 12.0,
        negative_every: int = 4,
    ) -> None:
        self.cp = cp
        self.core = client.CoreV1Api(cp.api)
        self.namespace = namespace
        self.model_deployment = model_deployment
        self.workdir = workdir
        self.total_rps = total_rps
        self.negative_every = negative_every  # every n-th request carries a negative feature
        self.python = mlserver_python()
        self.models = train_models(self.python, workdir / "models")
        self.backends: dict[str, Backend] = {}
        self.retired: dict[str, Backend] = {}  # servers whose pods went away, kept for their answers
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> MLServerFleet:
        for target in (self._reconcile_loop, self._traffic_loop):
            thread = threading.Thread(target=target, name=f"mlserver-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=15)
        with self._lock:
            for pod in list(self.backends):
                self._retire(pod)

    def __enter__(self) -> MLServerFleet:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- pods -> servers -----------------------------------------------------------------------
    def _reconcile_loop(self) -> None:
        while not self._stopping.wait(0.5):
            try:
                self.reconcile()
            except Exception:
                log.exception("reconciling MLServer backends failed; retrying")

    def reconcile(self) -> None:
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{MODEL_DEPLOYMENT_LABEL}={self.model_deployment}"
        ).items
        ready = {p.metadata.name: p for p in pods if _is_ready(p)}
        with self._lock:
            for name in set(self.backends) - set(ready):
                self._retire(name)
            for name, pod in ready.items():
                if name not in self.backends:
                    self.backends[name] = self._launch(pod)
            starting = [b for b in self.backends.values() if not b.ready]
        for backend in starting:
            self._check_started(backend)

    def _launch(self, pod: Any) -> Backend:
        env = _env(pod)
        name, model = pod.metadata.name, env.get("MODEL_NAME", self.model_deployment)
        kind = RAISES_ON_NEGATIVE if env.get(BUG_ENV) == RAISES_ON_NEGATIVE else "healthy"
        ports = [free_port() for _ in range(3)]
        while len(set(ports)) < 3:
            ports = [free_port() for _ in range(3)]
        http_port, grpc_port, metrics_port = ports
        folder = self.workdir / "servers" / name
        folder.mkdir(parents=True, exist_ok=True)
        settings = {
            "host": "127.0.0.1",
            "http_port": http_port,
            "grpc_port": grpc_port,
            "metrics_port": metrics_port,
            "parallel_workers": 0,  # one process, one metrics registry (no multiprocess files)
            "metrics_dir": str(folder),
        }
        (folder / "settings.json").write_text(json.dumps(settings))
        model_settings = {
            "name": model,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": str(self.models[kind]), "version": env.get("MODEL_VERSION", "")},
        }
        (folder / "model-settings.json").write_text(json.dumps(model_settings))
        process = self.cp.start_process(
            f"mlserver-{name}",
            [str(self.python.parent / "mlserver"), "start", str(folder)],
            env={"PYTHONPATH": ""},  # the project's path must not leak into the server's venv
        )
        log.info("started MLServer for %s/%s (%s model) on 127.0.0.1:%d", self.namespace, name, kind, http_port)
        return Backend(self.namespace, name, model, kind, process, http_port, metrics_port)

    def _check_started(self, backend: Backend) -> None:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{backend.http_port}/v2/models/{backend.model}/ready", timeout=1
            ) as response:
                up = response.status == 200
        except (urllib.error.URLError, OSError):
            up = False
        if not up:
            if not backend.process.is_alive():
                raise RuntimeError(backend.process.describe_failure(f"MLServer for pod {backend.pod}"))
            return
        self.cp.add_scrape_target(
            backend.job, f"127.0.0.1:{backend.metrics_port}", {"namespace": backend.namespace, "pod": backend.pod}
        )
        backend.ready = True
        log.info("MLServer for %s/%s is ready and scraped", backend.namespace, backend.pod)

    def _retire(self, pod: str) -> None:
        backend = self.retired[pod] = self.backends.pop(pod)
        self.cp.remove_scrape_target(backend.job)
        backend.process.stop()
        log.info("stopped MLServer for %s/%s (pod gone); answers %s", backend.namespace, pod, backend.answers)

    # -- traffic -----------------------------------------------------------------------------
    def _traffic_loop(self) -> None:
        sent = 0
        next_at = time.monotonic()
        while not self._stopping.is_set():
            with self._lock:
                serving = sorted((b for b in self.backends.values() if b.ready), key=lambda b: b.pod)
            if serving:
                backend = serving[sent % len(serving)]
                # Counted per server: every server sees the same share of negative inputs.
                sign = -1.0 if sum(backend.answers.values()) % self.negative_every == 0 else 1.0
                features = [sign * 0.5, 0.25, -0.1 if sign < 0 else 0.1, 0.75]
                try:
                    code = infer(backend.http_port, backend.model, features)
                except (urllib.error.URLError, OSError):
                    code = 0  # the server went away with its pod
                backend.answers[code] = backend.answers.get(code, 0) + 1
                sent += 1
            next_at += 1.0 / self.total_rps
            self._stopping.wait(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic() - 1.0)  # a slow server does not cause a burst later

    def answers(self) -> dict[str, tuple[str, dict[int, int]]]:
        """Each pod's server (running or retired): its model kind and the HTTP codes it answered."""
        with self._lock:
            every = {**self.retired, **self.backends}
            return {pod: (b.kind, dict(b.answers)) for pod, b in every.items()}
