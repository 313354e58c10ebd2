"""A fault-injecting HTTP forwarder to put in front of a real registry, and a SOCKS5 relay.

`FaultProxy(upstream)` listens on 127.0.0.1:0 and forwards every request to the upstream
registry, streaming bodies, unless a fault that matches the request is armed. Faults match
a method and a path regex and fire `times` times (None: forever):

- `status`: answer with a status (500, 429 with Retry-After, 403...) instead of forwarding;
- `drop`: send the headers and `after_bytes` of the body, then close the connection;
- `truncate`: send only `after_bytes` of the body, with a Content-Length that says so;
- `corrupt`: flip one byte in the middle of the body (a digest mismatch);
- `redirect`: answer 307 to `target` + `/_redirected` + path (any proxy, this one included,
  serves `/_redirected/...` by forwarding the rest of the path);
- `replace`: answer 200 with a given body and Content-Type (a registry serving a document
  we must refuse), without Docker-Content-Digest;
- `delay`: wait before forwarding.

A request whose target is an absolute URL (`GET http://host:port/path`) is forwarded to that
host: the proxy then doubles as the `http_proxy` of a client. `request_hook` may rewrite the
headers of forwarded requests (to replace a token, say). Every request is recorded.

`Socks5Proxy` is a minimal SOCKS5 server (no authentication, CONNECT only) that relays TCP
connections and counts them, for `all_proxy=socks5://...`.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import select
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

BLOBS = r"/v2/.+/blobs/sha256:"
MANIFESTS = r"/v2/.+/manifests/"
REDIRECT_PREFIX = "/_redirected"
CHUNK = 64 * 1024
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

FaultKind = Literal["status", "drop", "truncate", "corrupt", "redirect", "replace", "delay"]


@dataclass
class Fault:
    kind: FaultKind
    path: str = BLOBS
    method: str = "GET"
    times: int | None = 1
    status: int = 500
    after_bytes: int = 0
    target: str = ""
    body: bytes = b""
    content_type: str = "application/json"
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        return method == self.method and re.search(self.path, path) is not None


@dataclass(frozen=True)
class Recorded:
    """One request as the proxy saw it, and the status it answered."""

    method: str
    path: str  # as forwarded: without the host of an absolute URL or /_redirected
    raw_path: str  # as received
    headers: dict[str, str]
    status: int
    fault: str | None
    proxied: bool  # absolute-URL request: we were the client's http_proxy

    @property
    def range(self) -> str | None:
        return self.headers.get("range")

    @property
    def authorized(self) -> bool:
        return "authorization" in self.headers


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, proxy: FaultProxy) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.proxy = proxy


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _handle(self) -> None:
        proxy = self.server.proxy
        upstream, path, proxied = proxy.upstream, self.path, False
        if path.startswith("http://"):
            parts = urlsplit(path)
            upstream, proxied = f"http://{parts.netloc}", True
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        redirected = path.startswith(REDIRECT_PREFIX)
        path = path.removeprefix(REDIRECT_PREFIX)
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        fault = proxy.take_fault(self.command, path, redirected=redirected)
        status = self._answer(fault, upstream, path, headers, body)
        kind = fault.kind if fault else None
        proxy.record(Recorded(self.command, path, self.path, headers, status, kind, proxied))

    def _answer(
        self,
        fault: Fault | None,
        upstream: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None,
    ) -> int:
        if fault is not None and fault.kind == "status":
            payload = b'{"errors":[{"code":"FAULT","message":"injected by the test proxy"}]}'
            return self._reply(
                fault.status, payload, {"Content-Type": "application/json", **fault.headers}
            )
        if fault is not None and fault.kind == "redirect":
            return self._reply(307, b"", {"Location": fault.target + REDIRECT_PREFIX + path})
        if fault is not None and fault.kind == "replace":
            return self._reply(200, fault.body, {"Content-Type": fault.content_type})
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay_s)
        return self._forward(fault, upstream, path, headers, body)

    def _reply(self, status: int, payload: bytes, headers: dict[str, str]) -> int:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        return status

    def _forward(
        self,
        fault: Fault | None,
        upstream: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None,
    ) -> int:
        parts = urlsplit(upstream)
        outgoing = {k: v for k, v in headers.items() if k not in HOP_BY_HOP and k != "host"}
        hook = self.server.proxy.request_hook
        if hook is not None:
            hook(self.command, path, outgoing)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            connection.request(self.command, path, body=body, headers=outgoing)
            response = connection.getresponse()
            return self._relay(fault, response)
        finally:
            connection.close()

    def _relay(self, fault: Fault | None, response: http.client.HTTPResponse) -> int:
        kind = fault.kind if fault is not None else None
        header_items = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        declared = response.getheader("Content-Length")
        if declared is None and self.command != "HEAD":
            data = response.read()  # error documents come chunked: small, buffer them
            declared = str(len(data))
            source: Callable[[int], bytes] = _reader(data)
        else:
            source = response.read
        total = int(declared or 0)
        limit = min(total, fault.after_bytes) if kind in ("drop", "truncate") else total
        self.send_response(response.status)
        for name, value in header_items:
            if name.lower() == "content-length":
                continue
            self.send_header(name, value)
        self.send_header("Content-Length", str(limit if kind == "truncate" else total))
        self.end_headers()
        if self.command == "HEAD":
            return response.status
        sent, flip_at = 0, total // 2
        while sent < limit:
            chunk = source(min(CHUNK, limit - sent))
            if not chunk:
                break
            if kind == "corrupt" and sent <= flip_at < sent + len(chunk):
                index = flip_at - sent
                chunk = chunk[:index] + bytes([chunk[index] ^ 0xFF]) + chunk[index + 1 :]
            self.wfile.write(chunk)
            sent += len(chunk)
        if kind == "drop":
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        return response.status


def _reader(data: bytes) -> Callable[[int], bytes]:
    position = 0

    def read(size: int) -> bytes:
        nonlocal position
        chunk = data[position : position + size]
        position += len(chunk)
        return chunk

    return read


class FaultProxy:
    """The forwarder; `start()` binds a free loopback port, `stop()` shuts it down."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.request_hook: Callable[[str, str, dict[str, str]], None] | None = None
        self._faults: list[Fault] = []
        self._records: list[Recorded] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FaultProxy:
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def netloc(self) -> str:
        assert self._server is not None, "proxy not started"
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.netloc}"

    # -- faults and records ----------------------------------------------------------------

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, method: str, path: str, *, redirected: bool = False) -> Fault | None:
        """The first armed fault for this request (a redirect never redirects itself)."""
        with self._lock:
            for fault in self._faults:
                if redirected and fault.kind == "redirect":
                    continue
                if fault.matches(method, path):
                    fault.fired += 1
                    return fault
        return None

    def record(self, entry: Recorded) -> None:
        with self._lock:
            self._records.append(entry)

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._records)

    def count(self, path: str = "", method: str | None = "GET") -> int:
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method) and re.search(path, r.path)
        )


class _SocksHandler(socketserver.BaseRequestHandler):
    server: _SocksServer

    def handle(self) -> None:
        client = self.request
        version, methods = _recv_exact(client, 2)
        _recv_exact(client, methods)
        if version != 5:
            return
        client.sendall(b"\x05\x00")  # no authentication
        _, command, _, address_type = _recv_exact(client, 4)
        if address_type == 1:
            host = socket.inet_ntoa(_recv_exact(client, 4))
        elif address_type == 3:
            host = _recv_exact(client, _recv_exact(client, 1)[0]).decode()
        else:
            client.sendall(b"\x05\x08\x00\x01" + bytes(6))
            return
        (port,) = struct.unpack("!H", _recv_exact(client, 2))
        if command != 1:
            client.sendall(b"\x05\x07\x00\x01" + bytes(6))
            return
        self.server.connections.append((host, port))
        with socket.create_connection((host, port), timeout=30) as upstream:
            client.sendall(b"\x05\x00\x00\x01" + bytes(6))
            _relay(client, upstream)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("socks client went away")
        data += chunk
    return data


def _relay(a: socket.socket, b: socket.socket) -> None:
    sockets = [a, b]
    while True:
        readable, _, _ = select.select(sockets, [], [], 30)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(CHUNK)
            if not data:
                return
            (b if sock is a else a).sendall(data)


class _SocksServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SocksHandler)
        self.connections: list[tuple[str, int]] = []


class Socks5Proxy:
    """SOCKS5 relay on a free loopback port; `connections` lists (host, port) relayed."""

    def __init__(self) -> None:
        self._server = _SocksServer()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Socks5Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"socks5://127.0.0.1:{self._server.server_address[1]}"

    @property
    def connections(self) -> list[tuple[str, int]]:
        return list(self._server.connections)
