"""pytest fixtures for running rollguard against the harness (loaded from e2e/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from e2e import md
from e2e.rollguard_process import RollguardProcess


@pytest.fixture(scope="session")
def crd(control_plane: Any) -> None:
    """The committed ModelDeployment CRD, installed once per session."""
    md.install_crd(control_plane)


@contextmanager
def operators(
    control_plane: Any, namespace: str, tag: str, kubeconfig: Path | None = None, prometheus: bool = True
) -> Iterator[Callable[..., RollguardProcess]]:
    """Factory of operator processes for one test's namespace (as `kubeconfig`'s identity, default the
    admin); every process it started is stopped on exit."""
    started: list[RollguardProcess] = []

    def start(prometheus: bool = prometheus, **env: str) -> RollguardProcess:
        process = RollguardProcess(
            kubeconfig=kubeconfig or control_plane.kubeconfig,
            log_file=control_plane.log_dir / f"rollguard-{namespace}{tag}-{len(started)}.log",
            namespaces=[namespace],
            prometheus_url=control_plane.prometheus_url if prometheus else None,
            extra_env=env,
        )
        started.append(process)
        return process.start()

    try:
        yield start
    finally:
        for process in started:
            process.stop()


@pytest.fixture
def start_rollguard(control_plane: Any, namespace: str, crd: None) -> Iterator[Callable[..., RollguardProcess]]:
    """Factory: start the operator for the test's namespace; every process started is stopped after."""
    with operators(control_plane, namespace, "") as start:
        yield start


@pytest.fixture
def rollguard(start_rollguard: Callable[..., RollguardProcess]) -> RollguardProcess:
    """The operator, running for the test's namespace with the test Prometheus."""
    return start_rollguard()
