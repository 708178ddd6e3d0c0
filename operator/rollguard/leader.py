# mypy: disallow-untyped-calls=False
# (the kubernetes client has no type hints)
"""Leader election on a coordination.k8s.io Lease: of several replicas, only the holder runs kopf.

`elect()` blocks until this process holds the Lease (answering /healthz meanwhile, so a standby
pod stays live), sets rollguard_leader to 1 and returns; a background thread keeps renewing it.
If the Lease cannot be renewed within the renew deadline, or the election thread dies, the
process exits with status 1 at once: the Deployment restarts it as a standby, and two operators
never act together (the split brain of argo-rollouts#2117). On a clean shutdown (SIGTERM, e.g. a
rolling update of the operator) `release()` empties the holder, so a standby takes over within one
retry period instead of waiting out the Lease, as client-go's ReleaseOnCancel does
(k8s.io/client-go/tools/leaderelection/leaderelection.go, release()).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from rollguard import metrics
from rollguard.settings import Settings

log = structlog.get_logger("rollguard.leader")

LEASE_SECONDS, RENEW_DEADLINE_SECONDS, RETRY_SECONDS = 15, 10, 2
EXIT_LOST_LEADERSHIP = 1


def identity() -> str:
    """POD_NAME in a pod (unique per replica); elsewhere hostname_pid, so two local processes differ."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


class Lease(LeaseLock):
    """The client's LeaseLock on our ApiClient. A transport error is a failed attempt instead of an
    exception that would silently end the election thread; each write as holder is timed."""

    def __init__(self, name: str, namespace: str, holder: str, api: Any, clock: Callable[[], float] = time.monotonic):
        super().__init__(name, namespace, holder)
        self.api_instance = client.CoordinationV1Api(api)
        self.clock = clock
        self.renewed_at: float | None = None
        self.released = False

    def get(self, name: str, namespace: str) -> tuple[bool, Any]:
        try:
            found, record = super().get(name, namespace)
        except Exception as error:  # apiserver unreachable, connection reset, ...
            found, record = False, ApiException(reason=f"{type(error).__name__}: {error}")
        if not found and getattr(record, "status", None) != 404:
            log.warning("cannot read the leader Lease", lease=f"{namespace}/{name}", error=str(record.reason))
        return found, record

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        return self._timed(super().create, name, namespace, election_record)

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        return self._timed(super().update, name, namespace, updated_record)

    def release(self) -> bool:
        """Empty the holder if it is still us; the resourceVersion makes it a no-op if someone took over."""
        self.released = True  # from now on the election thread's renewals fail instead of retaking it
        try:
            lease = self.api_instance.read_namespaced_lease(self.name, self.namespace)
            spec = lease.spec
            if spec is None or spec.holder_identity != self.identity:
                return False
            spec.holder_identity = None
            spec.lease_duration_seconds = 1
            self.api_instance.replace_namespaced_lease(self.name, self.namespace, lease)
        except Exception as error:  # the Lease then simply expires
            log.warning("cannot release the leader Lease", lease=f"{self.namespace}/{self.name}", error=str(error))
            return False
        log.info("released the leader Lease", identity=self.identity, lease=f"{self.namespace}/{self.name}")
        return True

    def _timed(self, write: Callable[..., Any], *args: Any) -> bool:
        if self.released:
            return False
        try:
            ok = bool(write(*args))
        except Exception as error:
            log.warning("cannot write the leader Lease", lease=f"{self.namespace}/{self.name}", error=str(error))
            ok = False
        if ok:
            self.renewed_at = self.clock()
        return ok


def _exit(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # now: no cleanup that could still act on the cluster


class Elector:
    """Runs the client's LeaderElection in a thread, plus a watchdog on the last renewal."""

    def __init__(
        self,
        lease: Lease,
        on_lost: Callable[[int], None] = _exit,
        lease_seconds: int = LEASE_SECONDS,
        renew_deadline: int = RENEW_DEADLINE_SECONDS,
        retry_period: int = RETRY_SECONDS,
    ) -> None:
        self.lease, self.on_lost, self.renew_deadline = lease, on_lost, renew_deadline
        self.leading = threading.Event()
        self.lost = False
        self.config = electionconfig.Config(
            lease, lease_seconds, renew_deadline, retry_period, self._started, lambda: None
        )

    def start(self) -> Elector:
        threading.Thread(target=self._run, name="leader-election", daemon=True).start()
        threading.Thread(target=self._watch, name="leader-watchdog", daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            leaderelection.LeaderElection(self.config).run()  # returns only when renewing failed
            self.lose(f"could not renew the Lease within {self.renew_deadline}s")
        except Exception as error:
            self.lose(f"leader election failed: {error}")

    def _started(self) -> None:
        metrics.LEADER.set(1)
        log.info("leading", identity=self.lease.identity, lease=f"{self.lease.namespace}/{self.lease.name}")
        self.leading.set()

    def _watch(self) -> None:
        while not self.lost:
            time.sleep(0.5)
            self.check()

    def check(self) -> None:
        """Lose leadership if the renewals stalled (e.g. a request hanging with no timeout)."""
        renewed = self.lease.renewed_at
        if self.leading.is_set() and renewed is not None and self.lease.clock() - renewed > self.renew_deadline:
            self.lose(f"no Lease renewal for {self.lease.clock() - renewed:.0f}s")

    def release(self) -> None:
        """Clean shutdown: stop acting as leader, then hand the Lease over."""
        self.lost = True  # the watchdog and a failing renewal no longer exit the process
        self.leading.clear()
        metrics.LEADER.set(0)
        self.lease.release()

    def lose(self, why: str) -> None:
        if self.lost:
            return
        self.lost = True
        self.leading.clear()
        metrics.LEADER.set(0)
        log.error("lost leadership; exiting so that only one operator acts", reason=why, identity=self.lease.identity)
        self.on_lost(EXIT_LOST_LEADERSHIP)


@contextmanager
def standby_health(port: int) -> Iterator[None]:
    """Answer /healthz while waiting to lead; kopf's liveness endpoint takes the port over after."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path.split("?")[0] == "/healthz"
            self.send_response(200 if found else 404)
            self.end_headers()
            self.wfile.write(b"standby: waiting for the leader Lease\n" if found else b"")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), Health)
    threading.Thread(target=server.serve_forever, name="standby-health", daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def elect(settings: Settings, api: Any) -> Elector:
    """Block until this process leads; see the module docs."""
    namespace = settings.leader_election_namespace
    if not namespace:
        raise SystemExit(
            "ROLLGUARD_LEADER_ELECTION is on but the Lease namespace is unknown: "
            "set ROLLGUARD_LEADER_ELECTION_NAMESPACE (or POD_NAMESPACE from the downward API)"
        )
    logging.getLogger("leaderelection").setLevel(logging.WARNING)  # it logs every retry at INFO
    elector = Elector(Lease(settings.leader_election_lease, namespace, identity(), api)).start()
    log.info("waiting to lead", identity=elector.lease.identity, lease=f"{namespace}/{elector.lease.name}")
    with standby_health(settings.health_port):
        elector.leading.wait()
    return elector
