"""A real Kubernetes control plane for end-to-end tests, with kwok instead of kubelets.

    python -m e2e.cluster up [--name NAME]      # start everything, leave it running, print how to use it
    python -m e2e.cluster status [--name NAME]  # kubeconfig, URLs, which processes are alive
    python -m e2e.cluster down [--name NAME]    # stop every process `up` started, by pid

What runs (all on 127.0.0.1, on free ports chosen at start):
etcd -> kube-apiserver -> kube-controller-manager -> kube-scheduler -> kwok (2 fake Nodes,
zone-a / zone-b) -> Prometheus (scrapes every second) -> the simulated data plane
(``e2e/simulator.py``), which gives kwok's pods the metrics of real model servers.

"Any cluster": with ``ROLLGUARD_E2E_KUBECONFIG`` set no control plane is started and that
cluster (e.g. kind) is used; the local Prometheus and simulator still start unless
``ROLLGUARD_E2E_PROMETHEUS_URL`` names a Prometheus to use instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from e2e import manifests
from e2e.binaries import Binaries, cache_dir, ensure_binaries
from e2e.processes import ManagedProcess, free_port
from e2e.waiting import http_get

log = logging.getLogger("e2e.cluster")

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_KUBECONFIG = "ROLLGUARD_E2E_KUBECONFIG"
ENV_PROMETHEUS_URL = "ROLLGUARD_E2E_PROMETHEUS_URL"
NODES = (("kwok-node-0", "zone-a"), ("kwok-node-1", "zone-b"))
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "node-lifecycle-controller",
    "disruption-controller",
    "endpointslice-controller",
    "root-ca-certificate-publisher-controller",
)
# The harness's own clients of the apiserver, restarted with it (see ControlPlane.start_apiserver).
APISERVER_CLIENTS = ("kube-controller-manager", "kube-scheduler", "kwok")
COMPONENT_PORT_KEYS = {"kube-controller-manager": "kcm", "kube-scheduler": "scheduler"}
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
HEALTH_PATHS = "/healthz,/readyz,/livez,/metrics"

# Start-up deadlines in seconds (2 cores: the apiserver alone needs ~10 s).
ETCD_TIMEOUT = 30.0
APISERVER_TIMEOUT = 90.0
COMPONENT_TIMEOUT = 60.0
NODES_TIMEOUT = 90.0


class ControlPlaneError(RuntimeError):
    """Something in the control plane did not start or stop; the message says what and why."""


def kube_configuration(kubeconfig: Path) -> client.Configuration:
    cfg = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]  # the loader is the client's only untyped part
        config_file=str(kubeconfig), client_configuration=cfg
    )
    return cfg


def api_client_for(kubeconfig: Path, token: str | None = None) -> client.ApiClient:
    """An ApiClient from ``kubeconfig``; with ``token``, authenticated by that bearer token instead."""
    cfg = kube_configuration(kubeconfig)
    if token is not None:
        cfg.api_key = {"BearerToken": f"Bearer {token}"}
        cfg.refresh_api_key_hook = None  # the kubeconfig loader's hook would put its own token back
        cfg.cert_file = cfg.key_file = cfg.username = cfg.password = None
    return client.ApiClient(cfg)


def _free_ports(*names: str) -> dict[str, int]:
    ports: dict[str, int] = {}
    for name in names:
        port = free_port()
        while port in ports.values():
            port = free_port()
        ports[name] = port
    return ports


class ControlPlane:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, Prometheus and the simulator.

    Use ``start()`` / ``stop()`` or ``with ControlPlane(state_dir) as cp:``. Every process logs
    to ``<state_dir>/logs/<name>.log``. ``stop()`` always stops everything started, in reverse.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        external_kubeconfig: Path | None = None,
        external_prometheus_url: str | None = None,
        detached: bool = False,
        cache: Path | None = None,
    ) -> None:
        self.state_dir = state_dir.resolve()
        self.external_kubeconfig = external_kubeconfig
        self.external_prometheus_url = external_prometheus_url
        self.detached = detached
        self._cache = cache
        self._bins: Binaries | None = None
        self.processes: dict[str, ManagedProcess] = {}
        self.ports = _free_ports("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "prometheus", "simulator")
        self.admin_token: str | None = None
        self.nobody_token: str | None = None
        self._api: client.ApiClient | None = None
        # Users whose requests the apiserver writes to audit.log (set before start; `make bench` counts them).
        self.audit_users: list[str] = []
        # More kube-controller-manager flags (set before start), e.g. `make bench`'s client rate limit.
        self.controller_manager_args: list[str] = []
        # Prometheus' scrape interval and timeout (set before start): `make bench` renders 1,000 pods' metrics.
        self.scrape_seconds = 1

    @classmethod
    def from_environment(cls, state_dir: Path, *, detached: bool = False) -> ControlPlane:
        """Honours ROLLGUARD_E2E_KUBECONFIG and ROLLGUARD_E2E_PROMETHEUS_URL (see module docs)."""
        kubeconfig = os.environ.get(ENV_KUBECONFIG)
        return cls(
            state_dir,
            external_kubeconfig=Path(kubeconfig).expanduser().resolve() if kubeconfig else None,
            external_prometheus_url=os.environ.get(ENV_PROMETHEUS_URL) or None,
            detached=detached,
        )

    # ---- what tests use -------------------------------------------------------------------

    @property
    def owns_apiserver(self) -> bool:
        """False on "any cluster" (ROLLGUARD_E2E_KUBECONFIG): chaos on the apiserver is impossible."""
        return self.external_kubeconfig is None

    @property
    def owns_prometheus(self) -> bool:
        return self.external_prometheus_url is None

    @property
    def kubeconfig(self) -> Path:
        return self.external_kubeconfig or self.state_dir / "kubeconfig"

    @property
    def api_url(self) -> str:
        if self.external_kubeconfig is None:
            return f"https://127.0.0.1:{self.ports['apiserver']}"
        return str(self._kube_configuration().host)

    @property
    def prometheus_url(self) -> str:
        return self.external_prometheus_url or f"http://127.0.0.1:{self.ports['prometheus']}"

    @property
    def simulator_url(self) -> str | None:
        return f"http://127.0.0.1:{self.ports['simulator']}" if "simulator" in self.processes else None

    @property
    def bins(self) -> Binaries:
        if self._bins is None:
            self._bins = ensure_binaries(self._cache)
        return self._bins

    @property
    def kubectl_bin(self) -> Path:
        return self.bins["kubectl"]

    @property
    def helm_bin(self) -> Path:
        return self.bins["helm"]

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = False, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this cluster (as admin); returns the CompletedProcess."""
        argv = [str(self.kubectl_bin), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def _kube_configuration(self) -> client.Configuration:
        return kube_configuration(self.kubeconfig)

    def api_client(self, token: str | None = None) -> client.ApiClient:
        """A kubernetes ApiClient for the admin, or for a bearer ``token`` (e.g. a ServiceAccount's)."""
        return api_client_for(self.kubeconfig, token)

    # ---- start / stop ---------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start everything and wait until it is ready; on failure stop what started, then raise."""
        started = time.monotonic()
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # self-signed test apiserver
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        try:
            _ = self.bins
            if self.owns_apiserver:
                self._start_kubernetes()
            else:
                log.info("using the cluster of %s=%s; no control plane started", ENV_KUBECONFIG, self.kubeconfig)
            if self.owns_prometheus:
                self._write_scrape_targets({})
                self._start_prometheus_process()
                self._start_simulator()
            else:
                log.info(
                    "using the Prometheus at %s (%s); no Prometheus or simulator started",
                    self.prometheus_url,
                    ENV_PROMETHEUS_URL,
                )
            self.save_state()
        except BaseException:
            self.stop()
            raise
        log.info(
            "control plane ready in %.1fs: API %s, Prometheus %s, kubeconfig %s",
            time.monotonic() - started,
            self.api_url,
            self.prometheus_url,
            self.kubeconfig,
        )

    def stop(self) -> None:
        """Stop every process this object started, newest first. Never raises for one failure."""
        for name in reversed(list(self.processes)):
            try:
                self.processes[name].stop()
            except Exception:
                log.exception("could not stop %s; carrying on with the others", name)
        self._api = None

    def _spawn(self, name: str, argv: Sequence[str | Path], env: dict[str, str] | None = None) -> ManagedProcess:
        proc = ManagedProcess(
            name, [str(a) for a in argv], self.log_dir / f"{name}.log", env=env, cwd=REPO_ROOT, detached=self.detached
        )
        self.processes[name] = proc
        proc.start()
        self._persist()
        return proc

    def _wait_ready(self, proc: ManagedProcess, what: str, probe: Callable[[], bool], timeout: float) -> None:
        """Poll ``probe`` until true; fail early, with the log tail, if the process dies."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not proc.is_alive():
                raise ControlPlaneError(proc.describe_failure(f"{proc.name} exited before {what}"))
            try:
                if probe():
                    log.info("%s: %s", proc.name, what)
                    return
            except Exception as e:  # not listening yet, reset, ...
                last_error = e
            time.sleep(0.2)
        detail = f"; last error: {last_error}" if last_error else ""
        raise ControlPlaneError(proc.describe_failure(f"timed out after {timeout:.0f}s waiting until {what}{detail}"))

    def _start_kubernetes(self) -> None:
        self._write_credentials()
        self._start_etcd()
        self._start_apiserver_process()
        self._start_component(
            "kube-controller-manager",
            "kcm",
            [
                f"--controllers={','.join(CONTROLLERS)}",
                f"--root-ca-file={self.state_dir / 'pki' / 'apiserver.crt'}",
                "--node-monitor-period=1s",
                "--node-monitor-grace-period=40s",
                "--use-service-account-credentials=false",
                *self.controller_manager_args,
            ],
        )
        self._start_component("kube-scheduler", "scheduler", [])
        kwok_config = self.state_dir / "kwok.yaml"
        kwok_config.write_text(manifests.kwok_config(self.bins.kwok_stage_dir))
        self._spawn("kwok", [self.bins["kwok"], f"--kubeconfig={self.kubeconfig}", f"--config={kwok_config}"])
        self._create_nodes()

    def _write_credentials(self) -> None:
        pki = self.state_dir / "pki"
        pki.mkdir(exist_ok=True)
        self.admin_token, self.nobody_token = secrets.token_hex(16), secrets.token_hex(16)
        (self.state_dir / "tokens.csv").write_text(
            manifests.token_file([(self.admin_token, "admin", ["system:masters"]), (self.nobody_token, "nobody", [])])
        )
        manifests.write_yaml(self.kubeconfig, manifests.kubeconfig(self.api_url, self.admin_token))
        key, pub = pki / "sa.key", pki / "sa.pub"
        for argv in (["genrsa", "-out", key, "2048"], ["rsa", "-in", key, "-pubout", "-out", pub]):
            try:
                subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True, text=True)
            except (OSError, subprocess.CalledProcessError) as e:
                raise ControlPlaneError(
                    f"openssl could not make the ServiceAccount signing key ({e}); install it: apt-get install openssl"
                ) from e

    def _start_etcd(self) -> None:
        client_url = f"http://127.0.0.1:{self.ports['etcd']}"
        peer_url = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        proc = self._spawn(
            "etcd",
            [
                self.bins["etcd"],
                "--name=node0",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=node0={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
                "--quota-backend-bytes=2147483648",
            ],
        )

        def healthy() -> bool:
            status, body = http_get(f"{client_url}/health", timeout=2)
            return status == 200 and json.loads(body).get("health") == "true"

        self._wait_ready(proc, "etcd /health is true", healthy, ETCD_TIMEOUT)

    def _apiserver_ready(self) -> bool:
        status, _ = http_get(
            f"{self.api_url}/readyz", timeout=3, headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        return status == 200

    def _start_apiserver_process(self) -> None:
        d, pki = self.state_dir, self.state_dir / "pki"
        proc = self._spawn(
            "kube-apiserver",
            [
                self.bins["kube-apiserver"],
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports['apiserver']}",
                f"--cert-dir={pki}",
                f"--token-auth-file={d / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                "--disable-admission-plugins=ServiceAccount",
                "--profiling=false",
                "--endpoint-reconciler-type=none",  # nothing in-cluster dials the apiserver; avoids loopback-IP errors
                *self._audit_args(),
            ],
        )
        self._wait_ready(proc, f"{self.api_url}/readyz answers 200", self._apiserver_ready, APISERVER_TIMEOUT)

    @property
    def audit_log(self) -> Path:
        return self.log_dir / "audit.log"

    def _audit_args(self) -> list[str]:
        """Audit at level Metadata, once per request (ResponseComplete), for ``audit_users`` only."""
        if not self.audit_users:
            return []
        policy = manifests.write_yaml(
            self.state_dir / "audit-policy.yaml",
            {
                "apiVersion": "audit.k8s.io/v1",
                "kind": "Policy",
                "omitStages": ["RequestReceived", "ResponseStarted"],
                "rules": [{"level": "Metadata", "users": list(self.audit_users)}, {"level": "None"}],
            },
        )
        return [f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}", "--audit-log-maxbackup=0"]

    def _start_component(self, binary: str, port_key: str, extra: list[str]) -> None:
        port = self.ports[port_key]
        kc = self.kubeconfig
        proc = self._spawn(
            binary,
            [
                # No --authentication/authorization-kubeconfig: with them both log an error every few
                # seconds (no extension-apiserver-authentication ConfigMap without a client CA).
                self.bins[binary],
                f"--kubeconfig={kc}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.state_dir / port_key}",
                f"--authorization-always-allow-paths={HEALTH_PATHS}",
                *extra,
            ],
        )
        self._wait_component_healthy(proc, port_key)

    def _wait_component_healthy(self, proc: ManagedProcess, port_key: str) -> None:
        port = self.ports[port_key]
        self._wait_ready(
            proc,
            f"https://127.0.0.1:{port}/healthz answers 200",
            lambda: http_get(f"https://127.0.0.1:{port}/healthz", timeout=2)[0] == 200,
            COMPONENT_TIMEOUT,
        )

    @property
    def api(self) -> client.ApiClient:
        """A shared admin ApiClient (closed by ``stop()``)."""
        if self._api is None:
            self._api = self.api_client()
        return self._api

    def _create_nodes(self) -> None:
        core = client.CoreV1Api(self.api)
        for name, zone in NODES:
            try:
                core.create_node(manifests.fake_node(name, zone))
            except ApiException as e:
                if e.status != 409:
                    raise
        self.wait_for_nodes_ready()

    def nodes_ready(self) -> dict[str, str]:
        """Each kwok node's state: "ready", or what is still wrong with it."""
        states: dict[str, str] = {}
        nodes = {n.metadata.name: n for n in client.CoreV1Api(self.api).list_node().items if n.metadata}
        for name, _ in NODES:
            node = nodes.get(name)
            if node is None:
                states[name] = "missing"
                continue
            conditions = (node.status.conditions if node.status else None) or []
            ready = [c.status for c in conditions if c.type == "Ready"]
            taints = [f"{t.key}:{t.effect}" for t in ((node.spec.taints if node.spec else None) or [])]
            if ready != ["True"]:
                states[name] = f"Ready={ready[0] if ready else 'absent'}"
            elif taints:
                states[name] = f"tainted {taints}"
            else:
                states[name] = "ready"
        return states

    def wait_for_nodes_ready(self, timeout: float = NODES_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        kwok = self.processes.get("kwok")
        while time.monotonic() < deadline:
            if kwok is not None and not kwok.is_alive():
                raise ControlPlaneError(kwok.describe_failure("kwok exited, so the fake nodes never become Ready"))
            try:
                states = self.nodes_ready()
            except Exception as e:
                states = {"error": str(e)}
            if states and all(s == "ready" for s in states.values()):
                log.info("nodes ready and untainted: %s", ", ".join(states))
                return
            time.sleep(0.5)
        detail = "\n" + kwok.describe_failure("kwok") if kwok else ""
        raise ControlPlaneError(
            f"kwok nodes not Ready and untainted after {timeout:.0f}s: {states} (kwok marks them Ready, "
            f"kube-controller-manager's node-lifecycle-controller removes the not-ready taint){detail}"
        )

    # ---- Prometheus and the simulator -------------------------------------------------------

    @property
    def _targets_file(self) -> Path:
        return self.state_dir / "scrape-targets.json"

    def _read_scrape_targets(self) -> dict[str, dict[str, Any]]:
        """file_sd groups by job: {"targets": [...], "labels": {"job": job, ...}}."""
        try:
            groups = json.loads(self._targets_file.read_text())
        except FileNotFoundError:
            return {}
        return {g["labels"]["job"]: g for g in groups}

    def _write_scrape_targets(self, groups: dict[str, dict[str, Any]]) -> None:
        tmp = self._targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([groups[job] for job in sorted(groups)], indent=2))
        tmp.replace(self._targets_file)  # atomic: Prometheus never reads half a file

    def add_scrape_target(self, job: str, address: str, labels: dict[str, str] | None = None) -> None:
        """Have Prometheus scrape ``http://<address>/metrics`` as ``job`` (picked up within seconds).

        ``labels`` are attached to every series of the job's targets, as a cluster's service
        discovery would attach ``namespace`` and ``pod`` (the target's own labels win only when
        it exports them itself: the scrape config honours labels, for the simulator).
        """
        if not self.owns_prometheus:
            raise ControlPlaneError(
                f"{ENV_PROMETHEUS_URL} is set, so the harness does not manage that Prometheus: "
                f"configure it to scrape {address} (job {job}) yourself"
            )
        groups = self._read_scrape_targets()
        group = groups.setdefault(job, {"targets": [], "labels": {"job": job}})
        group["labels"].update(labels or {})
        if address not in group["targets"]:
            group["targets"].append(address)
        self._write_scrape_targets(groups)
        log.info("Prometheus will scrape %s as job %s %s", address, job, labels or "")

    def remove_scrape_target(self, job: str) -> None:
        groups = self._read_scrape_targets()
        if groups.pop(job, None) is not None:
            self._write_scrape_targets(groups)

    def _start_prometheus_process(self) -> None:
        config_file = manifests.write_yaml(
            self.state_dir / "prometheus.yml", manifests.prometheus_config(self._targets_file, self.scrape_seconds)
        )
        proc = self._spawn(
            "prometheus",
            [
                "/usr/bin/prometheus",
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.state_dir / 'prometheus-data'}",
                "--storage.tsdb.retention.time=1d",
                f"--web.listen-address=127.0.0.1:{self.ports['prometheus']}",
                "--web.enable-lifecycle",
            ],
        )
        self._wait_ready(
            proc,
            f"{self.prometheus_url}/-/ready answers 200",
            lambda: http_get(f"{self.prometheus_url}/-/ready", timeout=2)[0] == 200,
            COMPONENT_TIMEOUT,
        )

    def _start_simulator(self) -> None:
        port = self.ports["simulator"]
        env = {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
        }
        proc = self._spawn(
            "simulator",
            [
                sys.executable,
                "-m",
                "e2e.simulator",
                "--kubeconfig",
                self.kubeconfig,
                "--port",
                str(port),
            ],
            env=env,
        )
        self._wait_ready(
            proc,
            f"http://127.0.0.1:{port}/metrics answers 200",
            lambda: http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)[0] == 200,
            COMPONENT_TIMEOUT,
        )
        self.add_scrape_target("simulator", f"127.0.0.1:{port}")

    # ---- chaos -----------------------------------------------------------------------------

    def _own(self, name: str) -> ManagedProcess:
        proc = self.processes.get(name)
        if proc is None:
            why = f" ({ENV_KUBECONFIG} is set: the cluster is not ours)" if not self.owns_apiserver else ""
            raise ControlPlaneError(f"no process named {name!r} was started by this harness{why}")
        return proc

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver (SIGTERM). etcd keeps the data; ``start_apiserver()`` brings it back."""
        self._own("kube-apiserver").stop()

    def start_apiserver(self, timeout: float = APISERVER_TIMEOUT, *, restart_clients: bool = True) -> None:
        """Start kube-apiserver again on the same port with the same etcd; wait for /readyz.

        Then, unless ``restart_clients`` is False, restart the harness's own clients of it
        (kube-controller-manager, kube-scheduler, kwok), as a cluster's static pods would be. Why:
        client-go backs off each informer's failed watch independently (0.8 s doubling to 30 s,
        times up to 2 for jitter, reset only after 2 min), so after an outage of ~20 s one informer
        can stay blind for up to a minute: kcm's ReplicaSet controller did not see a scale-up, and
        (StaleControllerConsistency, on by default in 1.36) refused to sync a ReplicaSet until its
        informer had seen the version it last wrote: "read version: X is not as new as written
        version: Y". ReplicaSet status froze for over 20 s after a 25 s outage (measured), and a
        canary's promotion hit its progress deadline; kwok likewise left new pods unready. Fresh
        processes list at once.
        """
        proc = self._own("kube-apiserver")
        proc.start()
        self._persist()
        self._wait_ready(proc, f"{self.api_url}/readyz answers 200 again", self._apiserver_ready, timeout)
        if restart_clients:
            self.restart_apiserver_clients()

    def restart_apiserver_clients(self) -> None:
        """Restart kube-controller-manager, kube-scheduler and kwok; wait until they serve again."""
        clients = [name for name in APISERVER_CLIENTS if name in self.processes]
        for name in clients:
            self.processes[name].stop()
        if "kwok" in clients:
            self._release_node_leases()
        for name in clients:
            proc = self.processes[name]
            proc.start()
            self._persist()
            if name in COMPONENT_PORT_KEYS:
                self._wait_component_healthy(proc, COMPONENT_PORT_KEYS[name])
        if "kwok" in clients:
            self.wait_for_nodes_ready()

    def _release_node_leases(self) -> None:
        """Clear the stopped kwok's hold on the node Leases.

        kwok names itself hostname_<random uuid> at each start and takes a Lease over only once
        the old holder's has expired (40 s): by then the node-lifecycle controller had marked both
        Nodes, and so every pod, NotReady, and a promotion never completed.
        """
        coordination = client.CoordinationV1Api(self.api)
        for name, _ in NODES:
            try:
                coordination.patch_namespaced_lease(
                    name,
                    "kube-node-lease",
                    {"spec": {"holderIdentity": None}},
                    _content_type="application/merge-patch+json",
                )
            except ApiException as e:
                if e.status != 404:
                    raise

    def stop_prometheus(self) -> None:
        self._own("prometheus").stop()

    def start_prometheus(self, timeout: float = COMPONENT_TIMEOUT) -> None:
        """Start Prometheus again on the same port and data dir; wait for /-/ready."""
        proc = self._own("prometheus")
        proc.start()
        self._persist()
        self._wait_ready(
            proc,
            f"{self.prometheus_url}/-/ready answers 200 again",
            lambda: http_get(f"{self.prometheus_url}/-/ready", timeout=2)[0] == 200,
            timeout,
        )

    def start_process(self, name: str, argv: Sequence[str | Path], env: dict[str, str] | None = None) -> ManagedProcess:
        """Run a process under test (e.g. the operator) that ``stop()`` will stop first.

        Its log is ``<state_dir>/logs/<name>.log``; ``env`` is added to the current environment.
        Use ``kill_process``/``restart_process`` or the returned handle for chaos.
        """
        if name in self.processes and self.processes[name].is_alive():
            raise ControlPlaneError(f"a process named {name!r} is already running")
        self.processes.pop(name, None)  # a restarted name is stopped before the control plane
        return self._spawn(name, argv, env)

    def kill_process(self, name: str) -> None:
        """SIGKILL a process (a crash: no graceful shutdown)."""
        self._own(name).kill()

    def restart_process(self, name: str, *, crash: bool = False) -> ManagedProcess:
        """Stop (SIGTERM, or SIGKILL if ``crash``) and start a process again with the same command."""
        proc = self._own(name)
        if crash:
            proc.kill()
        else:
            proc.stop()
        proc.start()
        self._persist()
        return proc

    # ---- extras ----------------------------------------------------------------------------

    def install_gateway_api_crds(self, timeout: float = 60.0) -> None:
        """Apply the standard-channel Gateway API CRDs (HTTPRoute, Gateway, ...) and wait until established."""
        files = sorted(self.bins.gateway_api_crd_dir.glob("*.yaml"))  # kubectl -f does not follow a symlinked dir
        # Server-side: the HTTPRoute CRD is too big for client-side apply's last-applied annotation.
        self.kubectl("apply", "--server-side", "--force-conflicts", *[f"--filename={f}" for f in files], check=True)
        names = [yaml.safe_load(f.read_text())["metadata"]["name"] for f in files]
        self.wait_for_crds_established(names, timeout)
        log.info("Gateway API CRDs installed: %s", ", ".join(names))

    def wait_for_crds_established(self, names: Sequence[str], timeout: float = 60.0) -> None:
        """Wait until each CRD's Established condition is True; fail early if its names are refused.

        Right after an apply the CRD may have no conditions at all, and `kubectl wait` then fails
        at once instead of waiting: so this reads the conditions and treats "none yet" as "not yet".
        """
        ext = client.ApiextensionsV1Api(self.api)
        deadline = time.monotonic() + timeout
        pending: dict[str, str] = dict.fromkeys(names, "not read yet")
        while pending:
            for name in list(pending):
                crd = ext.read_custom_resource_definition(name)
                conditions = {c.type: c for c in ((crd.status.conditions if crd.status else None) or [])}
                refused = conditions.get("NamesAccepted")
                if refused is not None and refused.status == "False":
                    raise ControlPlaneError(f"CRD {name}: names not accepted: {refused.reason}: {refused.message}")
                established = conditions.get("Established")
                if established is not None and established.status == "True":
                    del pending[name]
                else:
                    pending[name] = "no conditions yet" if not conditions else f"Established={established}"
            if pending and time.monotonic() > deadline:
                raise ControlPlaneError(f"CRDs not Established after {timeout:.0f}s: {pending}")
            if pending:
                time.sleep(0.2)

    # ---- state.json (for `up` / `down` / `status` in separate Python processes) ----------

    def _persist(self) -> None:
        """Keep state.json in step with every (re)start, so `down` stops the pids running now."""
        if self.state_dir.is_dir():
            self.save_state()

    def save_state(self) -> None:
        state = {
            "state_dir": str(self.state_dir),
            "kubeconfig": str(self.kubeconfig),
            "api_url": self.api_url,
            "prometheus_url": self.prometheus_url,
            "simulator_url": self.simulator_url,
            "external_kubeconfig": str(self.external_kubeconfig) if self.external_kubeconfig else None,
            "external_prometheus_url": self.external_prometheus_url,
            "ports": self.ports,
            "processes": [p.record() for p in self.processes.values()],
        }
        (self.state_dir / "state.json").write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> ControlPlane:
        """A handle on a control plane that ``up`` started in another process (to stop or inspect it)."""
        try:
            state = json.loads((state_dir / "state.json").read_text())
        except FileNotFoundError as e:
            raise ControlPlaneError(f"no control plane state in {state_dir} (was `up` run?)") from e
        ext = state.get("external_kubeconfig")
        cp = cls(
            state_dir,
            external_kubeconfig=Path(ext) if ext else None,
            external_prometheus_url=state.get("external_prometheus_url"),
            detached=True,
        )
        cp.ports = {k: int(v) for k, v in state["ports"].items()}
        cp.processes = {r["name"]: ManagedProcess.from_record(r) for r in state["processes"]}
        tokens = state_dir / "tokens.csv"
        if tokens.exists():  # token,user,uid[,groups]
            by_user = {line.split(",")[1]: line.split(",")[0] for line in tokens.read_text().splitlines() if line}
            cp.admin_token, cp.nobody_token = by_user.get("admin"), by_user.get("nobody")
        return cp

    def status(self) -> dict[str, Any]:
        return {
            "kubeconfig": str(self.kubeconfig),
            "api_url": self.api_url,
            "prometheus_url": self.prometheus_url,
            "simulator_url": self.simulator_url,
            "processes": {
                name: {"pid": p.pid, "alive": p.is_alive(), "log": str(p.log_path)}
                for name, p in self.processes.items()
            },
        }


# ---- CLI ------------------------------------------------------------------------------------


def _cli_state_dir(args: argparse.Namespace) -> Path:
    if args.state_dir:
        return Path(args.state_dir)
    return cache_dir() / "run" / str(args.name)


def _print_status(cp: ControlPlane) -> None:
    st = cp.status()
    print(f"kubeconfig:     {st['kubeconfig']}")
    print(f"API server:     {st['api_url']}")
    print(f"Prometheus:     {st['prometheus_url']}")
    if st["simulator_url"]:
        print(f"simulator:      {st['simulator_url']}/metrics")
    for name, p in st["processes"].items():
        print(f"  {name:24} pid {p['pid']!s:>7}  {'alive' if p['alive'] else 'DEAD '}  {p['log']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.cluster", description="Run the e2e control plane.")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--name", default="default", help="state dir is $ROLLGUARD_CACHE_DIR/run/<name>")
    parser.add_argument("--state-dir", help="use this state dir instead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    state_dir = _cli_state_dir(args)

    if args.command == "up":
        if (state_dir / "state.json").exists():
            old = ControlPlane.load(state_dir)
            alive = [n for n, p in old.processes.items() if p.is_alive()]
            if alive:
                print(
                    f"already running in {state_dir}: {', '.join(alive)}. "
                    f"Use `python -m e2e.cluster down --name {args.name}` first.",
                    file=sys.stderr,
                )
                return 1
        if state_dir.exists() and any(state_dir.iterdir()):
            if not (state_dir / "state.json").exists():
                print(f"{state_dir} is not empty and holds no state.json; refusing to delete it", file=sys.stderr)
                return 1
            shutil.rmtree(state_dir)  # a fresh cluster each time: old etcd data would not match new tokens
        started = time.monotonic()
        cp = ControlPlane.from_environment(state_dir, detached=True)
        try:
            cp.start()
        except Exception as e:
            print(f"\nup failed: {e}", file=sys.stderr)
            return 1
        print(f"up in {time.monotonic() - started:.1f}s\n")
        _print_status(cp)
        print(f"\nexport KUBECONFIG={cp.kubeconfig}")
        return 0

    cp = ControlPlane.load(state_dir)
    if args.command == "down":
        cp.stop()
        print(f"stopped everything started in {state_dir}")
        return 0
    _print_status(cp)
    return 0 if all(p.is_alive() for p in cp.processes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
