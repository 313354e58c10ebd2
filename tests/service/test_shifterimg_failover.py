"""Gateway failover and what the client puts on the wire, against real local servers.

The gateways here are stand-ins made with the standard library's `http.server`: they fail
on purpose (a dead port, HTTP 500, a hang past gatewayTimeout, a 200 that is not JSON) to
show that the client moves on, in order, and what it sends. Every credential they receive
is checked with the real munged (`unmunge`), which also proves that each request carries a
fresh one. Real gateway behaviour is tested in test_shifterimg_e2e.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shifter.gwclient import (
    Acl,
    GatewayAuthError,
    GatewayClient,
    GatewayUnavailableError,
    ImageNotFoundError,
)
from tests.services.faultproxy import FaultProxy
from tests.services.gateway_fixtures import USER_A, Site
from tests.services.munged import MungeDaemon
from tests.services.tls import make_ca, make_server_cert

IMAGE_ID = "ab" * 32
RECORD = {
    "id": IMAGE_ID, "system": "testsys", "itype": "docker", "tag": ["org/repo:tag"],
    "status": "READY", "userACL": [], "groupACL": [], "ENV": [], "ENTRY": None,
    "WORKDIR": "MISSING", "LABELS": "MISSING", "last_pull": 1717600000.5,
    "status_message": "Transferring image",
}


@dataclass
class Seen:
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes
    payload: bytes
    uid: int


@dataclass
class StubGateway:
    """Answers every request with `status`/`body`, or hangs for `hang_s` first."""

    munged: MungeDaemon
    status: int = 200
    body: bytes = json.dumps(RECORD).encode()
    content_type: str = "application/json"
    hang_s: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        scheme = "https" if isinstance(self.server.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}"


def _handler(stub: StubGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            decoded = stub.munged.decode(self.headers["authentication"])
            stub.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body,
                                  decoded.payload, decoded.uid))
            if stub.hang_s:
                time.sleep(stub.hang_s)
            try:
                self.send_response(stub.status)
                self.send_header("Content-Type", stub.content_type)
                self.send_header("Content-Length", str(len(stub.body)))
                self.end_headers()
                self.wfile.write(stub.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (gatewayTimeout), as the test wanted

        do_POST = do_GET

    return Handler


@pytest.fixture
def gateways(munged: MungeDaemon) -> Iterator[list[StubGateway]]:
    """Start stubs on demand with `start(stub)`; all are stopped after the test."""
    started: list[StubGateway] = []
    yield started
    for stub in started:
        assert stub.server is not None
        stub.server.shutdown()
        stub.server.server_close()


def start(started: list[StubGateway], stub: StubGateway,
          tls: ssl.SSLContext | None = None) -> StubGateway:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    stub.server = server
    threading.Thread(target=server.serve_forever, daemon=True).start()
    started.append(stub)
    return stub


def dead_url() -> str:
    """A port nothing listens on: bound, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def client(urls: list[str], munged: MungeDaemon, **kwargs: object) -> GatewayClient:
    return GatewayClient(urls, "testsys", munge_socket=str(munged.socket), environ={},
                         **kwargs)  # type: ignore[arg-type]


def test_failover_in_order_to_the_first_gateway_that_answers(
    gateways: list[StubGateway], munged: MungeDaemon
) -> None:
    broken = start(gateways, StubGateway(munged, status=500, body=b'{"error": "boom"}'))
    html = start(gateways, StubGateway(munged, content_type="text/html", body=b"<html/>"))
    good = start(gateways, StubGateway(munged))
    gw = client([dead_url(), broken.url, html.url, good.url], munged)
    record = gw.lookup("docker", "org/repo:tag")
    assert record.id == IMAGE_ID
    assert [len(s.seen) for s in (broken, html, good)] == [1, 1, 1]
    # The next request starts with the gateway that answered: the broken ones are skipped.
    gw.lookup("docker", "org/repo:tag")
    assert [len(s.seen) for s in (broken, html, good)] == [1, 1, 2]


def test_every_request_carries_a_fresh_credential_of_the_caller(
    gateways: list[StubGateway], munged: MungeDaemon
) -> None:
    broken = start(gateways, StubGateway(munged, status=503))
    good = start(gateways, StubGateway(munged))
    gw = client([broken.url, good.url], munged)
    for _ in range(3):
        gw.lookup("docker", "org/repo:tag")
    seen = broken.seen + good.seen
    credentials = [s.headers["authentication"] for s in seen]
    assert len(seen) == 4 and len(set(credentials)) == 4  # decoded once each: none replayed
    assert all(c.startswith("MUNGE:") for c in credentials)
    assert {(s.uid, s.payload) for s in seen} == {(os.getuid(), b"")}


def test_the_request_on_the_wire(gateways: list[StubGateway], munged: MungeDaemon) -> None:
    good = start(gateways, StubGateway(munged))
    gw = client([good.url], munged)
    gw.lookup("docker", "org/repo:tag")
    gw.pull("docker", "org/repo:tag", acl=Acl(users=(1001, 1002), groups=(3,)),
            credentials={"default": "alice:pa:ss", "quay.io": "bob:pw"})
    gw.pull("custom", "x:v1")
    lookup, private_pull, plain_pull = good.seen
    assert (lookup.method, lookup.raw_path) == (
        "GET", "/api/lookup/testsys/docker/org%2Frepo%3Atag/"
    )
    assert lookup.body == b"" and "Content-Type" not in lookup.headers
    assert (private_pull.method, private_pull.raw_path) == (
        "POST", "/api/pull/testsys/docker/org%2Frepo%3Atag/"
    )
    assert private_pull.headers["Content-Type"] == "application/json"
    assert json.loads(private_pull.body) == {"allowed_uids": "1001,1002", "allowed_gids": "3"}
    assert json.loads(private_pull.payload) == {
        "authorized_locations": {"default": "alice:pa:ss", "quay.io": "bob:pw"}
    }
    assert (plain_pull.raw_path, plain_pull.body, plain_pull.payload) == (
        "/api/pull/testsys/custom/x%3Av1/", b"", b""
    )


def test_a_hanging_gateway_costs_gateway_timeout_then_the_next_answers(
    gateways: list[StubGateway], munged: MungeDaemon
) -> None:
    hanging = start(gateways, StubGateway(munged, hang_s=5))
    good = start(gateways, StubGateway(munged))
    gw = client([hanging.url, good.url], munged, timeout=1)
    started = time.monotonic()
    assert gw.lookup("docker", "org/repo:tag").id == IMAGE_ID
    assert 1.0 <= time.monotonic() - started < 3.0
    assert len(hanging.seen) == 1 and len(good.seen) == 1


def test_when_every_gateway_fails_each_one_is_named(
    gateways: list[StubGateway], munged: MungeDaemon
) -> None:
    broken = start(gateways, StubGateway(munged, status=500, body=b'{"detail": "db down"}'))
    dead = dead_url()
    with pytest.raises(GatewayUnavailableError) as caught:
        client([dead, broken.url], munged).images()
    error = caught.value
    assert type(error) is GatewayUnavailableError
    assert str(error).splitlines() == [
        "the image list failed on every image gateway",
        f"{dead}: connection refused",
        f"{broken.url}: HTTP 500: db down",
    ]
    assert error.hint is not None and "imageGateway" in error.hint


def test_not_found_and_refused_credentials_are_told_apart(
    gateways: list[StubGateway], munged: MungeDaemon
) -> None:
    missing = start(gateways, StubGateway(munged, status=404,
                                          body=b'{"status": 404, "error": "image not found"}'))
    with pytest.raises(ImageNotFoundError) as caught:
        client([dead_url(), missing.url], munged).lookup("docker", "org/repo:tag")
    assert str(caught.value).startswith(
        "image docker:org/repo:tag is not on the image gateway, or you may not use it"
    )
    assert caught.value.hint == "pull it first: shifterimg pull docker:org/repo:tag"
    refused = start(gateways, StubGateway(munged, status=401, body=b'{"error": "Bad auth"}'))
    with pytest.raises(GatewayAuthError) as auth:
        client([refused.url], munged).lookup("docker", "org/repo:tag")
    assert auth.value.hint is not None and "munged" in auth.value.hint


def test_the_environments_http_proxy_carries_the_request(
    gateways: list[StubGateway], munged: MungeDaemon
) -> None:
    good = start(gateways, StubGateway(munged))
    with FaultProxy(good.url) as proxy:
        gw = GatewayClient([good.url], "testsys", munge_socket=str(munged.socket),
                           environ={"http_proxy": proxy.url})
        assert gw.lookup("docker", "org/repo:tag").id == IMAGE_ID
        bypassing = GatewayClient([good.url], "testsys", munge_socket=str(munged.socket),
                                  environ={"http_proxy": proxy.url, "no_proxy": "127.0.0.1"})
        bypassing.lookup("docker", "org/repo:tag")
        recorded = proxy.requests
    assert [(r.proxied, r.path) for r in recorded] == [
        (True, "/api/lookup/testsys/docker/org%2Frepo%3Atag/")
    ]
    assert len(good.seen) == 2


def test_https_gateways_are_checked_against_the_system_ca_store(
    gateways: list[StubGateway], munged: MungeDaemon, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca_key, ca_cert = make_ca(tmp_path)
    cert, key = make_server_cert(tmp_path, ca_key, ca_cert)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    secure = start(gateways, StubGateway(munged), tls=tls)
    plain = start(gateways, StubGateway(munged))
    # An unknown CA: refused, and the next gateway serves the request.
    gw = client([secure.url, plain.url], munged)
    assert gw.lookup("docker", "org/repo:tag").id == IMAGE_ID
    assert (len(secure.seen), len(plain.seen)) == (0, 1)
    with pytest.raises(GatewayUnavailableError, match="TLS certificate not trusted"):
        client([secure.url], munged).lookup("docker", "org/repo:tag")
    # Trusted through OpenSSL's default paths, as a CA installed on the system would be.
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.crt"))
    assert client([secure.url], munged).lookup("docker", "org/repo:tag").id == IMAGE_ID
    assert len(secure.seen) == 1


def test_ctrl_c_while_waiting_says_the_pull_goes_on(
    gateways: list[StubGateway], munged: MungeDaemon, site_dir: Path
) -> None:
    pulling = {**RECORD, "status": "PULLING", "status_message": "PULLING"}
    stub = start(gateways, StubGateway(munged, body=json.dumps(pulling).encode()))
    site = Site(site_dir, munged, [stub.url])
    site.write_config()
    # Its own process group, as a terminal's foreground job: Ctrl-C signals the group.
    waiting = subprocess.Popen(site.argv(USER_A, ("pull", "org/repo:tag")), env=site.env(USER_A),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        assert waiting.stdout is not None
        assert "status: PULLING" in waiting.stdout.readline()
        os.killpg(waiting.pid, signal.SIGINT)
        _, stderr = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()  # by its pid: only the process this test started
            waiting.wait()
    assert waiting.returncode == 130
    assert stderr.splitlines() == [
        "shifterimg: interrupted; the gateway goes on pulling docker:org/repo:tag",
        "hint: run `shifterimg pull docker:org/repo:tag` again to follow it, or "
        "`shifterimg lookup docker:org/repo:tag` later",
    ]
