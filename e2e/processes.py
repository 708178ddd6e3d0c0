"""Child processes of the test harness: start with a log file, stop by pid, never by name.

Each process writes stdout and stderr to its own log file (appended across restarts, with a
header line per start), so a failure message can quote the tail of the log that explains it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("e2e.processes")

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to SIGKILL it if the harness dies.

    This keeps a crashed or killed pytest from leaking an apiserver. (The signal fires when the
    thread that started the child exits, so start processes from the main thread.)
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, or a note saying it does not exist."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return f"(no log file at {path})"
    return "\n".join(text.splitlines()[-lines:])


def pid_matches(pid: int, executable: str) -> bool:
    """True if ``pid`` is a live (not zombie) process whose argv[0] is ``executable``.

    Guards ``down`` against pid reuse: a recorded pid is only signalled if it still runs the
    program we started.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and argv0 == executable


def stop_pid(pid: int, executable: str, name: str, timeout: float = 10.0) -> None:
    """SIGTERM a process that is not our child (e.g. started by ``cluster up``), SIGKILL after ``timeout``."""
    if not pid_matches(pid, executable):
        return
    log.info("stopping %s (pid %d)", name, pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_matches(pid, executable):
        if time.monotonic() > deadline:
            log.warning("%s (pid %d) ignored SIGTERM for %.0fs; sending SIGKILL", name, pid, timeout)
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)


class ManagedProcess:
    """One program run by the harness; can be stopped, killed and started again (chaos tests).

    ``detached=True`` (used by ``python -m e2e.cluster up``) lets the process outlive the
    Python that started it; otherwise the kernel kills it if the harness dies.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        detached: bool = False,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.detached = detached
        self._popen: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} alive={self.is_alive()}>"

    def start(self) -> None:
        if self.is_alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as logf:
            logf.write(f"\n==== {time.strftime('%H:%M:%S')} starting: {' '.join(self.argv)}\n".encode())
            logf.flush()
            preexec: Callable[[], None] | None = None if self.detached else _die_with_parent
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env} if self.env is not None else None,
                cwd=self.cwd,
                start_new_session=True,  # Ctrl-C in the terminal goes to pytest, which stops us in order
                preexec_fn=preexec,  # noqa: PLW1509 - only calls prctl(); processes start from the main thread
            )
        self.pid = self._popen.pid
        log.info("started %s (pid %d), log: %s", self.name, self.pid, self.log_path)

    def is_alive(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        return self.pid is not None and pid_matches(self.pid, self.argv[0])

    def exit_code(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if still running after ``timeout`` seconds. Safe to repeat."""
        if self._popen is None:
            if self.pid is not None:
                stop_pid(self.pid, self.argv[0], self.name, timeout)
            return
        if self._popen.poll() is not None:
            return
        log.info("stopping %s (pid %d)", self.name, self._popen.pid)
        self._popen.terminate()
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) ignored SIGTERM for %.0fs; sending SIGKILL", self.name, self._popen.pid, timeout)
            self._popen.kill()
            self._popen.wait(timeout)

    def kill(self) -> None:
        """SIGKILL right away: a crash, with no chance to clean up."""
        if self.is_alive() and self.pid is not None:
            log.info("killing %s (pid %d) with SIGKILL", self.name, self.pid)
            os.kill(self.pid, signal.SIGKILL)
            if self._popen is not None:
                self._popen.wait(10)

    def restart(self, timeout: float = 10.0) -> None:
        self.stop(timeout)
        self.start()

    def log_tail(self, lines: int = 25) -> str:
        return tail(self.log_path, lines)

    def describe_failure(self, what: str, lines: int = 25) -> str:
        """An error message for a newcomer: what failed, whether the process died, and its log."""
        code = self.exit_code()
        state = f"exited with code {code}" if code is not None else "still running"
        return f"{what} ({self.name} {state}; log {self.log_path}). Last log lines:\n{self.log_tail(lines)}"

    def record(self) -> dict[str, Any]:
        """What ``state.json`` keeps so that another Python process can stop this one."""
        return {
            "name": self.name,
            "pid": self.pid,
            "argv": self.argv,
            "log": str(self.log_path),
            "env": self.env,  # a restart from another Python process runs the same command
            "cwd": str(self.cwd) if self.cwd else None,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ManagedProcess:
        cwd = record.get("cwd")
        proc = cls(
            record["name"],
            record["argv"],
            Path(record["log"]),
            env=record.get("env"),
            cwd=Path(cwd) if cwd else None,
            detached=True,
        )
        proc.pid = int(record["pid"]) if record.get("pid") is not None else None
        return proc
