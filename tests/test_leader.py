"""Leader election without a cluster: the real client election loop against an in-memory Lease API."""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from rollguard import leader, metrics
from rollguard.settings import Settings

FAST = {"lease_seconds": 3, "renew_deadline": 2, "retry_period": 1}  # the smallest the client accepts


class FakeCluster:
    """One Lease store shared by several candidates; a candidate can be cut off from it."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], Any] = {}
        self.lock = threading.Lock()


class FakeCoordinationApi:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.cut_off = False  # the apiserver refuses this candidate's writes (500)
        self.unreachable = False  # connection errors, as when the network is gone

    def _reach(self) -> None:
        if self.unreachable:
            raise urllib3.exceptions.MaxRetryError(None, "/apis/coordination.k8s.io", "connection refused")  # type: ignore[arg-type]

    def read_namespaced_lease(self, name: str, namespace: str) -> Any:
        self._reach()
        with self.cluster.lock:
            found = self.cluster.leases.get((namespace, name))
        if found is None:
            error = ApiException(status=404, reason="Not Found")
            error.body = json.dumps({"code": 404})
            raise error
        return copy.deepcopy(found)

    def create_namespaced_lease(self, namespace: str, body: Any) -> Any:
        self._reach()
        with self.cluster.lock:
            meta = body.metadata
            key = (namespace, meta["name"] if isinstance(meta, dict) else meta.name)
            if key in self.cluster.leases:
                raise ApiException(status=409, reason="AlreadyExists")
            self.cluster.leases[key] = copy.deepcopy(body)
        return body

    def replace_namespaced_lease(self, name: str, namespace: str, body: Any) -> Any:
        self._reach()
        if self.cut_off:
            raise ApiException(status=500, reason="Internal Server Error")
        with self.cluster.lock:
            self.cluster.leases[(namespace, name)] = copy.deepcopy(body)
        return body


class Candidate:
    def __init__(self, cluster: FakeCluster, name: str, **timing: int) -> None:
        self.api = FakeCoordinationApi(cluster)
        lease = leader.Lease("rollguard-leader", "rollguard-system", name, api=None)
        lease.api_instance = self.api
        self.exit_codes: list[int] = []
        self.elector = leader.Elector(lease, on_lost=self.exit_codes.append, **(FAST | timing))

    def holder(self) -> str | None:
        lease = self.api.cluster.leases.get(("rollguard-system", "rollguard-leader"))
        return lease.spec.holder_identity if lease else None


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not true after {timeout}s"
        time.sleep(0.05)


def test_a_candidate_leads_sets_the_metric_and_exits_when_it_cannot_renew() -> None:
    cluster = FakeCluster()
    a = Candidate(cluster, "pod-a")
    a.elector.start()
    assert a.elector.leading.wait(5), "a lone candidate should take the free Lease"
    assert a.holder() == "pod-a", "the Lease names the holder"
    assert metrics.LEADER._value.get() == 1, "rollguard_leader is 1 while leading"

    a.api.cut_off = True  # renewals now fail
    wait_until(lambda: a.exit_codes, 6, "the leader exits after the renew deadline")
    assert a.exit_codes == [leader.EXIT_LOST_LEADERSHIP], "lost leadership exits non-zero, once"
    assert not a.elector.leading.is_set()
    assert metrics.LEADER._value.get() == 0, "rollguard_leader drops to 0"


def test_only_one_of_two_leads_and_the_other_takes_over_when_the_leader_is_gone() -> None:
    cluster = FakeCluster()
    a, b = Candidate(cluster, "pod-a"), Candidate(cluster, "pod-b")
    a.elector.start()
    assert a.elector.leading.wait(5)
    b.elector.start()
    time.sleep(FAST["lease_seconds"] + 1)
    assert not b.elector.leading.is_set(), "the second candidate must wait while the Lease is renewed"

    a.api.unreachable = True  # the leader's node is partitioned away
    assert b.elector.leading.wait(10), "the standby takes over once the Lease expires"
    assert b.holder() == "pod-b"
    wait_until(lambda: a.exit_codes, 5, "the old leader exits")
    assert a.exit_codes == [1] and b.exit_codes == []


def test_a_transport_error_is_a_failed_attempt_not_an_exception() -> None:
    lease = leader.Lease("rollguard-leader", "ns", "pod-a", api=None)
    api = FakeCoordinationApi(FakeCluster())
    api.unreachable = True
    lease.api_instance = api
    found, error = lease.get("rollguard-leader", "ns")
    assert not found and "MaxRetryError" in error.reason
    assert (
        lease.create("rollguard-leader", "ns", leader.leaderelection.LeaderElectionRecord("a", "15", "", "")) is False
    )


def test_the_watchdog_gives_up_leadership_when_renewals_stall() -> None:
    now = [100.0]
    lease = leader.Lease("rollguard-leader", "ns", "pod-a", api=None, clock=lambda: now[0])
    codes: list[int] = []
    elector = leader.Elector(lease, on_lost=codes.append, **FAST)
    elector._started()
    lease.renewed_at = 99.0
    elector.check()
    assert codes == [], "a recent renewal keeps leadership"
    now[0] = 99.0 + FAST["renew_deadline"] + 0.5  # e.g. a request hanging with no timeout
    elector.check()
    elector.check()
    assert codes == [1], "stalled renewals exit non-zero, exactly once"


def test_identity_is_the_pod_name_or_unique_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "rollguard-7d9f-abcde")
    assert leader.identity() == "rollguard-7d9f-abcde"
    monkeypatch.delenv("POD_NAME")
    assert leader.identity().startswith(socket.gethostname() + "_"), "outside a pod: hostname_pid"


def test_lease_namespace_defaults_to_the_pods_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROLLGUARD_LEADER_ELECTION_NAMESPACE", raising=False)
    monkeypatch.setenv("POD_NAMESPACE", "rollguard-system")
    monkeypatch.setenv("ROLLGUARD_LEADER_ELECTION", "true")
    settings = Settings()
    assert settings.leader_election and settings.leader_election_namespace == "rollguard-system"
    assert settings.leader_election_lease == "rollguard-leader"
    monkeypatch.setenv("ROLLGUARD_LEADER_ELECTION_NAMESPACE", "elsewhere")
    assert Settings().leader_election_namespace == "elsewhere"


def test_elect_without_a_namespace_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.delenv("ROLLGUARD_LEADER_ELECTION_NAMESPACE", raising=False)
    with pytest.raises(SystemExit, match="ROLLGUARD_LEADER_ELECTION_NAMESPACE"):
        leader.elect(Settings(leader_election=True), api=None)


def test_a_standby_answers_healthz_then_frees_the_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with leader.standby_health(port):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            assert response.status == 200 and b"standby" in response.read()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
        assert missing.value.code == 404
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does
        again.bind(("0.0.0.0", port))  # kopf's liveness endpoint can take the port over


def test_a_clean_shutdown_hands_the_lease_over_at_once() -> None:
    cluster = FakeCluster()
    long_lease = {"lease_seconds": 60}  # waiting it out would take a minute; a released Lease takes a retry
    a, b = Candidate(cluster, "pod-a", **long_lease), Candidate(cluster, "pod-b", **long_lease)
    a.elector.start()
    assert a.elector.leading.wait(5)
    b.elector.start()
    time.sleep(FAST["retry_period"] + 0.5)
    assert not b.elector.leading.is_set(), "the standby waits while the Lease is held"
    released = time.monotonic()
    a.elector.release()
    assert a.holder() != "pod-a", "the released Lease no longer names the old leader"
    assert b.elector.leading.wait(10), "the standby takes the released Lease long before it would expire"
    assert b.holder() == "pod-b"
    time.sleep(FAST["renew_deadline"] + FAST["retry_period"] + 0.5)  # a's renew loop gives up meanwhile
    assert a.exit_codes == [], "a released leader is not 'lost': it does not exit non-zero"
    assert b.holder() == "pod-b", "the released leader's election thread never takes the Lease back"
    print(f"handed over {time.monotonic() - released:.1f}s after release")


def test_release_leaves_a_lease_someone_else_holds() -> None:
    cluster = FakeCluster()
    a = Candidate(cluster, "pod-a")
    a.elector.start()
    assert a.elector.leading.wait(5)
    cluster.leases[("rollguard-system", "rollguard-leader")].spec.holder_identity = "intruder"
    assert a.elector.lease.release() is False
    assert a.holder() == "intruder", "release only ever empties its own holder"
