"""The minimal HTTP/1.1 exchange of `shifter.gwclient.plainhttp`, against a real socket
server on the loopback that answers with canned bytes: the framings a gateway may use,
the broken replies it must refuse, and a request identical to what `http.client` sends."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from shifter.gwclient.plainhttp import BrokenReply, dechunk, parse_head, plain_exchange

pytestmark = pytest.mark.unit

HEADERS = {"authentication": "MUNGE:abc", "Accept": "application/json", "Connection": "close"}


class CannedServer:
    """Accepts connections one at a time, records each request, answers `reply`, and
    closes the connection unless `keep_open` (then it waits for the client to close)."""

    def __init__(self, reply: bytes, *, keep_open: bool = False) -> None:
        self.reply = reply
        self.keep_open = keep_open
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                data = b""
                while not _whole_request(data):
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                connection.sendall(self.reply)
                if self.keep_open:
                    connection.recv(1)  # until the client closes

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        self.listener.close()
        self.thread.join(timeout=5)


def _whole_request(data: bytes) -> bool:
    head, found, body = data.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return len(body) >= int(value)
    return True


@pytest.fixture
def serve() -> Iterator[list[CannedServer]]:
    servers: list[CannedServer] = []
    yield servers
    for server in servers:
        server.close()


def _start(servers: list[CannedServer], reply: bytes, **kwargs: bool) -> CannedServer:
    server = CannedServer(reply, **kwargs)
    servers.append(server)
    return server


def _get(server: CannedServer, timeout: float = 5.0) -> tuple[int, str, bytes]:
    return plain_exchange("127.0.0.1", server.port, "GET", "/api/lookup/x/", headers=HEADERS,
                          deadline=time.monotonic() + timeout, limit=1024)  # fmt: skip


@pytest.mark.parametrize(
    ("reply", "keep_open"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
         b"Content-Length: 11\r\n\r\n{\"id\": \"x\"}", True),
        (b"HTTP/1.1 200 OK\r\ncontent-type: Application/JSON\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n"
         b"5\r\n{\"id\"\r\n6;ext=1\r\n: \"x\"}\r\n0\r\n\r\n", True),
        (b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"id\": \"x\"}", False),
    ],
)  # fmt: skip
def test_each_framing_gives_the_same_reply(
    serve: list[CannedServer], reply: bytes, keep_open: bool
) -> None:
    # keep_open: the reply is complete before the server closes (it waits for us).
    server = _start(serve, reply, keep_open=keep_open)
    assert _get(server) == (200, "application/json", b'{"id": "x"}')


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", "ended after 5 of 50 bytes"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", "larger than 1024 bytes"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\n", "closed before the end of the head"),
    ],
)
def test_broken_replies_are_refused(
    serve: list[CannedServer], reply: bytes, problem: str
) -> None:
    server = _start(serve, reply)
    with pytest.raises(BrokenReply, match=problem):
        _get(server)


def test_a_silent_server_ends_at_the_deadline(serve: list[CannedServer]) -> None:
    server = _start(serve, b"", keep_open=True)
    with pytest.raises(TimeoutError):
        _get(server, timeout=0.3)


def test_a_refused_connection(serve: list[CannedServer]) -> None:
    server = _start(serve, b"")
    port = server.port
    server.close()
    with pytest.raises(ConnectionRefusedError):
        plain_exchange("127.0.0.1", port, "GET", "/", headers={}, limit=10)


@pytest.mark.parametrize(("method", "body"), [("GET", None), ("POST", b'{"a":1}'), ("POST", b"")])
def test_the_request_is_what_http_client_sends(
    serve: list[CannedServer], method: str, body: bytes | None
) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    ours, theirs = _start(serve, ok), _start(serve, ok)
    headers = {**HEADERS, **({"Content-Type": "application/json"} if body else {})}
    plain_exchange("127.0.0.1", ours.port, method, "/api/pull/x/", headers=headers, body=body,
                   limit=10)  # fmt: skip
    connection = http.client.HTTPConnection("127.0.0.1", theirs.port, timeout=5)
    connection.request(method, "/api/pull/x/", body=body, headers=headers)
    connection.getresponse().read()
    connection.close()
    assert [r.replace(str(ours.port).encode(), b"PORT") for r in ours.requests] == [
        r.replace(str(theirs.port).encode(), b"PORT") for r in theirs.requests
    ]


def test_pure_parts() -> None:
    assert parse_head(b"HTTP/1.1 404 Not Found\r\nA: 1\r\na: 2") == (404, {"a": "1, 2"})
    assert dechunk(b"3\r\nabc\r\n0\r\n\r\n") == b"abc"
    with pytest.raises(BrokenReply, match="cut off"):
        dechunk(b"5\r\nabc\r\n")


def test_an_ipv6_gateway() -> None:
    # GatewayURL keeps an IPv6 host without brackets; the Host header gets them back.
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    port = listener.getsockname()[1]
    seen: list[bytes] = []

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            seen.append(connection.recv(65536))
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        reply = plain_exchange("::1", port, "GET", "/", headers={}, limit=10,
                               deadline=time.monotonic() + 5)  # fmt: skip
    finally:
        thread.join(timeout=5)
        listener.close()
    assert reply == (200, "", b"ok")
    assert f"Host: [::1]:{port}\r\n".encode() in seen[0]
