"""Where the control-plane binaries come from: ``e2e/build-control-plane.sh`` and its cache.

The script builds kube-apiserver & co. from the Go module proxy once, caches them under
``$ROLLGUARD_CACHE_DIR`` (default ``~/.cache/rollguard``) and is fast when they are cached.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("e2e.binaries")

BUILD_SCRIPT = Path(__file__).with_name("build-control-plane.sh")
REQUIRED = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "helm")


class MissingBinariesError(RuntimeError):
    """The control plane cannot be built or found; the message says what is missing."""


def cache_dir() -> Path:
    explicit = os.environ.get("ROLLGUARD_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rollguard"


@dataclass(frozen=True)
class Binaries:
    """Paths of the cached tools (``bin/``) and data (kwok stages, Gateway API CRDs)."""

    cache: Path

    @property
    def bin_dir(self) -> Path:
        return self.cache / "bin"

    def __getitem__(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def kwok_stage_dir(self) -> Path:
        return self.cache / "kwok-stage"

    @property
    def gateway_api_crd_dir(self) -> Path:
        return self.cache / "gateway-api-crds"

    def missing(self) -> list[str]:
        missing = [n for n in REQUIRED if not os.access(self[n], os.X_OK)]
        missing += [str(p) for p in (self.kwok_stage_dir, self.gateway_api_crd_dir) if not p.is_dir()]
        return missing


def ensure_binaries(cache: Path | None = None) -> Binaries:
    """Run the build script (idempotent; about a second when cached) and return the paths.

    Without Go the cached binaries are used if they are all there; otherwise this raises
    MissingBinariesError naming what is missing (Go, the module proxy, a binary).
    """
    bins = Binaries(cache or cache_dir())
    if shutil.which("go") is None:
        if not bins.missing():
            log.info("Go is not installed; using the cached binaries in %s", bins.bin_dir)
            return bins
        raise MissingBinariesError(
            f"Go is missing and the control-plane cache is incomplete (missing: {', '.join(bins.missing())}). "
            "Install Go >= 1.26 with access to the Go module proxy, then run e2e/build-control-plane.sh "
            "(a cold build takes about 10 minutes on 2 cores)."
        )
    env = {**os.environ, "ROLLGUARD_CACHE_DIR": str(bins.cache)}
    log.info("checking the control-plane binaries with %s (a cold build takes ~10 min)", BUILD_SCRIPT)
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise MissingBinariesError(
            f"{BUILD_SCRIPT} failed (exit {result.returncode}); it needs Go >= 1.26 and the Go module proxy. "
            f"Its output ends with:\n{result.stderr[-3000:]}"
        )
    if bins.missing():
        raise MissingBinariesError(f"{BUILD_SCRIPT} succeeded but these are missing: {', '.join(bins.missing())}")
    return bins
