"""The operator as users get it: the image ``make image`` builds, run by podman, as the chart's pod.

The container gets exactly what a pod of the chart gets from the kubelet: the ServiceAccount's token,
the cluster CA and its namespace under /var/run/secrets/kubernetes.io/serviceaccount, the
KUBERNETES_SERVICE_* env, uid 65532, a read-only root filesystem with a writable /tmp (the chart's
emptyDir). kwok runs no images, so podman does, on the host network, against the local control
plane. Why the podman options are what they are: see ``e2e/image.py``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from e2e import image, md
from e2e.cluster import ControlPlane
from e2e.processes import ManagedProcess, free_port, tail
from e2e.test_canary import canary, start_stable
from e2e.test_chart import CHART, create_namespace, helm, kubectl_ok
from e2e.waiting import http_get, wait_for

RELEASE = "rollguard-image"
SIZE_LIMIT_BYTES = 150_000_000
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def built_image() -> image.BuiltImage:
    built = image.ensure_image()
    print(f"image {built.ref}: {built.size_bytes / 1e6:.1f} MB, build/check took {built.build_seconds:.1f}s")
    return built


class Operator:
    def __init__(self, process: ManagedProcess, name: str, health_port: int, metrics_port: int) -> None:
        self.process, self.name = process, name
        self.health_port, self.metrics_port = health_port, metrics_port

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")


@pytest.fixture
def operator_from_image(
    control_plane: ControlPlane, namespace: str, built_image: image.BuiltImage, tmp_path: Path
) -> Iterator[Operator]:
    """The chart installed (RBAC for ``namespace`` only), its ServiceAccount's identity handed to the
    image's entrypoint, which runs under podman until the test ends."""
    cp = control_plane
    if not cp.owns_apiserver:
        pytest.skip("the container gets the local apiserver's CA and address; another cluster runs the chart itself")
    release_ns = f"{namespace}-operator"
    create_namespace(cp, release_ns, restricted=True)
    helm(cp, "install", RELEASE, str(CHART), f"--namespace={release_ns}", f"--set=watchNamespaces={{{namespace}}}",
         f"--set=prometheus.url={cp.prometheus_url}", "--wait", "--timeout=120s")  # fmt: skip
    secrets_dir = tmp_path / "serviceaccount"
    secrets_dir.mkdir()
    token = kubectl_ok(cp, "create", "token", RELEASE, f"--namespace={release_ns}", "--duration=1h").strip()
    (secrets_dir / "token").write_text(token)
    shutil.copy(cp.state_dir / "pki" / "apiserver.crt", secrets_dir / "ca.crt")
    (secrets_dir / "namespace").write_text(release_ns)
    for path in secrets_dir.iterdir():  # readable by uid 65532, as the kubelet's projected volume is
        path.chmod(0o644)
    secrets_dir.chmod(0o755)

    name = f"rollguard-e2e-{os.urandom(3).hex()}"
    health_port, metrics_port = free_port(), free_port()
    env = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(cp.ports["apiserver"]),
        "ROLLGUARD_NAMESPACES": namespace,
        "ROLLGUARD_PROMETHEUS_URL": cp.prometheus_url,
        "ROLLGUARD_HEALTH_PORT": str(health_port),
        "ROLLGUARD_METRICS_PORT": str(metrics_port),
        "ROLLGUARD_RESYNC_SECONDS": "1",
    }
    argv = image.run_argv(built_image.ref, name, env, {secrets_dir: SERVICE_ACCOUNT_DIR}, ("run",))
    process = cp.start_process(name, argv)
    operator = Operator(process, name, health_port, metrics_port)
    try:

        def healthy() -> bool:
            if not process.is_alive():
                raise AssertionError(f"the container exited:\n{tail(process.log_path, 40)}")
            return http_get(f"http://127.0.0.1:{health_port}/healthz", timeout=1.0)[0] == 200

        wait_for(healthy, 90, message=f"the container's /healthz on {health_port}; log:\n{tail(process.log_path)}")
        yield operator
    finally:
        process.stop()
        image.podman("rm", "--force", "--ignore", name)
        helm(cp, "uninstall", RELEASE, f"--namespace={release_ns}", "--wait", check=False)
        cp.kubectl("delete", "namespace", release_ns, "--wait=false")


def test_image_is_small_non_root_and_has_no_shell_or_build_tools(built_image: image.BuiltImage) -> None:
    assert built_image.size_bytes < SIZE_LIMIT_BYTES, f"{built_image.size_bytes / 1e6:.1f} MB"
    config = built_image.config
    assert config["User"] == "65532:65532", config
    assert config["Entrypoint"] == ["rollguard"] and config["Cmd"] == ["run"], config
    root = image.mount_image(built_image.ref)
    try:
        present = [p for p in ("bin/sh", "usr/bin/apt", "usr/bin/gcc", "opt/rollguard/bin/pip") if (root / p).exists()]
        assert present == [], f"no shell, package manager, compiler or pip in the image: {present}"
        assert (root / "opt/rollguard/bin/rollguard").exists()
    finally:
        image.unmount_image(built_image.ref)


def test_operator_from_the_image_promotes_a_canary_and_rolls_one_back(
    control_plane: ControlPlane, kube_api: client.ApiClient, namespace: str, operator_from_image: Operator
) -> None:
    pid = image.main_pid(operator_from_image.name)
    uids = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
    assert uids.split()[1:] == ["65532"] * 4, f"the entrypoint runs as uid 65532: {uids}"

    started = time.monotonic()
    start_stable(control_plane, kube_api, namespace, canary("imaged", "1.0.0"))
    md.apply(control_plane, namespace, canary("imaged", "1.1.0"))
    wait_for(lambda: md.serving(kube_api, namespace, "imaged", "1.1.0"), 120, message="canary 1.1.0 promoted")
    promoted = time.monotonic()
    md.apply(control_plane, namespace, canary("imaged", "2.0.0", env={"SIMULATED_ERROR_RATE": "0.3"}))
    status = md.wait_phase(kube_api, namespace, "imaged", "RolledBack", timeout=120)
    rolled_back_after = time.monotonic() - promoted
    print(f"from the image: promoted after {promoted - started:.0f}s, rolled back {rolled_back_after:.0f}s later")
    assert status["rejected"]["version"] == "2.0.0" and status["rejected"]["check"] == "error-rate", status["rejected"]
    assert status["servingVersion"] == "1.1.0"

    log = operator_from_image.log()
    assert '"reason": "RolledBack"' in log or '"reason":"RolledBack"' in log, "the container's JSON log has it"
    forbidden = [line[:300] for line in log.splitlines() if "Forbidden" in line or "status=403" in line]
    assert forbidden == [], "every request under the chart's ServiceAccount was allowed"
    status_code, body = http_get(f"http://127.0.0.1:{operator_from_image.metrics_port}/metrics", timeout=2)
    assert status_code == 200 and "rollguard_rollbacks_total" in body
