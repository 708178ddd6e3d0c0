"""A counting proxy in front of the API server: what the operator asked, as the API server saw it.

The operator is pointed at http://127.0.0.1:<port> (a kubeconfig with the same token); every
request is recorded (method, path and query) and forwarded over TLS. Each request gets its own
upstream connection (`Connection: close`), so the bytes can be piped without parsing responses,
watches included.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from e2e import manifests


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with its query string

    @property
    def watch(self) -> bool:
        return "watch=true" in self.path or "watch=1" in self.path

    @property
    def write(self) -> bool:
        return self.method not in ("GET", "HEAD", "OPTIONS")


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class CountingProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 443
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._tls = ssl.create_default_context()
        self._tls.check_hostname = False
        self._tls.verify_mode = ssl.CERT_NONE  # the e2e apiserver's certificate is self-signed
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="api-proxy", daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def kubeconfig(self, path: Path, token: str) -> Path:
        return manifests.write_yaml(path, manifests.kubeconfig(f"http://127.0.0.1:{self.port}", token))

    def since(self, mark: int) -> list[Request]:
        with self._lock:
            return list(self.requests[mark:])

    def mark(self) -> int:
        with self._lock:
            return len(self.requests)

    def _handle(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                return
            head += chunk
        head_part, _, rest = head.partition(b"\r\n\r\n")
        lines = head_part.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = [line for line in lines[1:] if not line.lower().startswith(("connection:", "host:"))]
        headers += [f"Host: {self.upstream_host}:{self.upstream_port}", "Connection: close"]
        with self._lock:
            self.requests.append(Request(method, target))
        # The whole body first, then one direction at a time: reading and writing one TLS socket from two
        # threads at once can crash CPython's ssl module (it did, with a segfault, in a full e2e run).
        length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), 0)
        while len(rest) < length:
            chunk = client.recv(65536)
            if not chunk:
                return
            rest += chunk
        upstream = self._tls.wrap_socket(
            socket.create_connection((self.upstream_host, self.upstream_port), timeout=30),
            server_hostname=self.upstream_host,
        )
        upstream.settimeout(None)
        client.settimeout(None)
        upstream.sendall("\r\n".join([lines[0], *headers]).encode("latin-1") + b"\r\n\r\n" + rest)
        _pipe(upstream, client)  # Connection: close — the response ends the exchange
