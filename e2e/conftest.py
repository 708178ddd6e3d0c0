"""Fixtures for end-to-end tests against a real control plane (see e2e/cluster.py).

* ``control_plane`` (session): etcd, kube-apiserver, controllers, kwok, Prometheus, simulator;
  started once, stopped at the end even when tests fail. Never skipped: if the binaries cannot
  be built the error says what is missing (Go, the module proxy).
* ``kube_api`` (session): a kubernetes ApiClient for the admin.
* ``namespace`` (function): a fresh namespace, deleted afterwards.
* ``prometheus_url`` (session).
* ``own_control_plane`` / ``own_prometheus``: the control plane for chaos tests; they skip, saying
  why, when ROLLGUARD_E2E_KUBECONFIG / ROLLGUARD_E2E_PROMETHEUS_URL point elsewhere.

Every test under e2e/ gets the ``e2e`` marker: ``pytest -m "not e2e"`` runs only unit tests.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e.cluster import ENV_KUBECONFIG, ENV_PROMETHEUS_URL, ControlPlane

log = logging.getLogger("e2e.conftest")

E2E_DIR = Path(__file__).resolve().parent
MODEL_DEPLOYMENT_CRD = "modeldeployments.rollguard.io"


def pytest_configure(config: pytest.Config) -> None:
    # The test apiserver's certificate is self-signed and the kubeconfig skips verification.
    config.addinivalue_line("filterwarnings", "ignore::urllib3.exceptions.InsecureRequestWarning")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    state_dir = tmp_path_factory.mktemp("control-plane")
    cp = ControlPlane.from_environment(state_dir)
    try:
        cp.start()  # stops whatever it started if it fails
        yield cp
    finally:
        cp.stop()
        print(f"\ne2e control plane logs: {cp.log_dir}")


@pytest.fixture
def own_control_plane(control_plane: ControlPlane) -> ControlPlane:
    """The control plane, for chaos tests that stop the apiserver; skips on "any cluster"."""
    if not control_plane.owns_apiserver:
        pytest.skip(f"{ENV_KUBECONFIG} is set: the harness cannot stop another cluster's apiserver")
    return control_plane


@pytest.fixture
def own_prometheus(control_plane: ControlPlane) -> ControlPlane:
    """The control plane, for tests that stop Prometheus or add scrape targets; skips if it is not ours."""
    if not control_plane.owns_prometheus:
        pytest.skip(f"{ENV_PROMETHEUS_URL} is set: that Prometheus is not ours to stop or reconfigure")
    return control_plane


@pytest.fixture(scope="session")
def kube_api(control_plane: ControlPlane) -> client.ApiClient:
    return control_plane.api


@pytest.fixture(scope="session")
def prometheus_url(control_plane: ControlPlane) -> str:
    return control_plane.prometheus_url


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower().removeprefix("test_")).strip("-")[:40].strip("-")
    return f"e2e-{slug}-{secrets.token_hex(3)}"


@contextmanager
def _fresh_namespace(api: client.ApiClient, name: str) -> Iterator[str]:
    """Creates `name`; on exit removes ModelDeployment finalizers (no operator may be left to clear
    them) and deletes the namespace (not waited for)."""
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        _drop_model_deployment_finalizers(api, name)
        try:
            core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kube_api: client.ApiClient) -> Iterator[str]:
    """A new namespace named after the test, cleaned up afterwards."""
    with _fresh_namespace(kube_api, _namespace_name(request.node.name)) as name:
        yield name


@pytest.fixture
def second_namespace(namespace: str, kube_api: client.ApiClient) -> Iterator[str]:
    """Another namespace for the same test (`<namespace>-b`), for what must not leak across namespaces."""
    with _fresh_namespace(kube_api, f"{namespace}-b") as name:
        yield name


def _drop_model_deployment_finalizers(api: client.ApiClient, namespace: str) -> None:
    try:
        crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(MODEL_DEPLOYMENT_CRD)
    except ApiException as e:
        if e.status == 404:
            return
        raise
    custom = client.CustomObjectsApi(api)
    group, plural = crd.spec.group, crd.spec.names.plural
    for version in (v.name for v in crd.spec.versions if v.served):
        listed = cast(dict[str, Any], custom.list_namespaced_custom_object(group, version, namespace, plural))
        for obj in listed["items"]:
            if obj["metadata"].get("finalizers"):
                log.info(
                    "removing finalizers %s from %s/%s",
                    obj["metadata"]["finalizers"],
                    namespace,
                    obj["metadata"]["name"],
                )
                custom.patch_namespaced_custom_object(
                    group,
                    version,
                    namespace,
                    plural,
                    obj["metadata"]["name"],
                    {"metadata": {"finalizers": None}},
                    _content_type="application/merge-patch+json",
                )
        break  # every served version shows the same objects


# rollguard's own fixtures (crd, start_rollguard, rollguard) live beside the harness's.
from e2e.operator_fixtures import crd, rollguard, start_rollguard  # noqa: E402, F401
