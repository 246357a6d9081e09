"""A fault-injecting HTTP proxy on loopback, between boto3 and the S3 endpoint.

Each request is, by a seeded draw: answered ``503 Slow Down`` / ``500``, cut off mid-body (the
connection dropped while the client is still sending), or passed through.  Every connection
carries one request (``Connection: close``), so faults never leak between requests.

A request with ``Expect: 100-continue`` (botocore's PutObject/UploadPart) gets its ``100
Continue`` at once, as S3 sends it, so the client sends the body without first waiting out its
1 s timeout for the answer (a second per PUT through the proxy); the header is not forwarded.
"""

from __future__ import annotations

import random
import socket
import socketserver
import threading
from dataclasses import dataclass, field


@dataclass
class FaultPlan:
    error_rate: float = 0.0  # share of requests answered 500/503
    drop_rate: float = 0.0  # share of requests whose connection is dropped mid-body
    seed: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"pass": 0, "error": 0, "drop": 0})
    _rng: random.Random = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self._rng = random.Random(self.seed)

    def draw(self) -> str:
        with self._lock:
            x = self._rng.random()
            fate = (
                "error"
                if x < self.error_rate
                else "drop"
                if x < self.error_rate + self.drop_rate
                else "pass"
            )
            self.counts[fate] += 1
            return fate

    def error_status(self) -> tuple[bytes, bytes]:
        """The status line and S3 error code of an injected error, drawn from the seeded plan."""
        with self._lock:
            if self._rng.random() < 0.5:
                return b"503 Slow Down", b"SlowDown"
            return b"500 Internal Server Error", b"InternalError"


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return b"", b""
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def _expects_continue(head: bytes) -> bool:
    return any(
        line.lower().replace(b" ", b"") == b"expect:100-continue" for line in head.split(b"\r\n")
    )


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        plan: FaultPlan = self.server.plan
        client = self.request
        head, body = _read_head(client)
        if not head:
            return
        need = _content_length(head)
        if need > len(body) and _expects_continue(head):
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        fate = plan.draw()
        if fate == "drop":
            # read part of the body, then vanish: the client sees a reset mid-upload
            want = max(0, min(need, need // 2) - len(body))
            while want > 0:
                chunk = client.recv(min(65536, want))
                if not chunk:
                    break
                want -= len(chunk)
            client.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            client.close()
            return
        while len(body) < need:
            chunk = client.recv(min(1 << 20, need - len(body)))
            if not chunk:
                return
            body += chunk
        if fate == "error":
            status, code = plan.error_status()
            xml = (
                b"<?xml version='1.0'?><Error><Code>"
                + code
                + b"</Code><Message>injected</Message></Error>"
            )
            client.sendall(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: application/xml\r\nContent-Length: "
                + str(len(xml)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + xml
            )
            return
        lines = [
            ln
            for ln in head.rstrip(b"\r\n").split(b"\r\n")
            if not ln.lower().startswith((b"connection:", b"keep-alive:", b"expect:"))
        ]
        head = b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n"
        with socket.create_connection(self.server.upstream) as up:
            up.sendall(head + body)
            while chunk := up.recv(1 << 20):
                client.sendall(chunk)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class FaultProxy:
    """``with FaultProxy(("127.0.0.1", port), FaultPlan(...)) as url: ...``"""

    def __init__(self, upstream: tuple[str, int], plan: FaultPlan):
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.upstream = upstream
        self.server.plan = plan
        self.plan = plan
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        host, port = self.server.server_address
        return f"http://{host}:{port}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
