"""The operator image (``make image``) as e2e tests run it: built or reused, then started by podman.

Why these podman options (measured on the 2-core CI machines, podman 4.3 from Debian bookworm):
* ``--runtime runc``: crun refuses this kernel's hybrid cgroup layout ("cgroups in hybrid mode not
  supported, drop all controllers from cgroupv2"); runc works with cgroup v1.
* ``--ulimit nofile=<our limits> --ulimit nproc=4096``: rootful podman asks for RLIMIT_NOFILE
  1048576 and RLIMIT_NPROC 4194304 by default, above the hard limits its processes get here
  (NOFILE 20000; NPROC 32768 for conmon), and raising a hard limit is refused (setrlimit:
  Operation not permitted), with crun and runc alike; ``--ulimit host`` did not help (podman 4.3
  still sets them). nofile=20000 and nproc=32768 start; 20001 or 32769 do not.
* ``--network host``: the control plane listens on 127.0.0.1; netavark is not needed.
"""

from __future__ import annotations

import json
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "tools" / "image" / "build.sh"
NPROC_LIMIT = 4096


@dataclass(frozen=True)
class BuiltImage:
    ref: str
    build_seconds: float
    size_bytes: int
    config: dict[str, object]


def ensure_image() -> BuiltImage:
    """Build the image with ``tools/image/build.sh`` (reused when the Dockerfile and sources are unchanged)."""
    started = time.monotonic()
    built = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800, check=False)
    seconds = time.monotonic() - started
    if built.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed ({built.returncode}); its output ends with:\n{built.stderr[-3000:]}")
    ref = built.stdout.strip().splitlines()[-1]
    inspected = json.loads(podman("image", "inspect", ref))[0]
    return BuiltImage(ref, seconds, int(inspected["Size"]), dict(inspected["Config"]))


def podman(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def run_argv(
    image: str, name: str, env: dict[str, str], mounts: dict[Path, str], args: tuple[str, ...] = ()
) -> list[str]:
    """``podman run`` as the chart's pod would run it: uid 65532, read-only root, a writable /tmp only."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    argv = [
        "podman",
        "--runtime=runc",
        "run",
        "--rm",
        f"--name={name}",
        "--network=host",
        "--read-only",
        "--read-only-tmpfs=false",
        "--tmpfs=/tmp:rw,size=64m",
        "--user=65532:65532",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        f"--ulimit=nofile={soft}:{hard}",
        f"--ulimit=nproc={NPROC_LIMIT}:{NPROC_LIMIT}",
    ]
    argv += [f"--volume={host}:{inside}:ro" for host, inside in mounts.items()]
    argv += [f"--env={key}={value}" for key, value in env.items()]
    return [*argv, image, *args]


def main_pid(name: str) -> int:
    """The host pid of the container's entrypoint process."""
    return int(podman("inspect", "--format", "{{.State.Pid}}", name).strip())


def mount_image(ref: str) -> Path:
    """The image's root filesystem, mounted read-only by podman (``unmount_image`` releases it)."""
    return Path(podman("image", "mount", ref).strip())


def unmount_image(ref: str) -> None:
    podman("image", "unmount", ref)
