"""The gateway as deployed: `shifter-imagegw serve` processes, spoken to over real sockets.

The compatibility checklist of the original (gateway contract §0) item by item with
http.client, so headers are seen exactly as the C client sees them; request bodies that are
too large or too slow; and the server command's own checks.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image
from tests.services.gateway_fixtures import (
    SYSTEM,
    USER_A,
    Caller,
    GatewayEnv,
    GatewayServer,
    wait_for,
)
from tests.services.registries import RegistryEndpoint

IN_PROGRESS = {"INIT", "PENDING", "PULLING", "EXAMINATION", "CONVERSION", "TRANSFER"}


def request(server: GatewayServer, method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


def c_client_path(mode: str, tag: str) -> str:
    """The URL the C shifterimg builds: type and tag escaped with curl_easy_escape."""
    return f"/api/{mode}/{SYSTEM}/docker/{quote(tag, safe='-._~')}/"


def check_json_headers(response: http.client.HTTPResponse, body: bytes) -> Any:
    """Compat items 1-2: exactly `application/json`, an exact Content-Length, no chunking."""
    assert response.getheader("Content-Type") == "application/json"
    assert response.getheader("Content-Length") == str(len(body))
    assert response.getheader("Transfer-Encoding") is None
    return json.loads(body)


@pytest.fixture
def server(gateway_env: GatewayEnv, gateway_servers: Callable[..., GatewayServer]
           ) -> GatewayServer:
    return gateway_servers(gateway_env.write())


def test_the_compatibility_checklist(
    server: GatewayServer, caller: Caller, registry_anon: RegistryEndpoint, repo_name: str,
    gateway_env: GatewayEnv,
) -> None:
    push_image(catalog.build("busybox"), registry_anon.url, repo_name, "v1")
    tag = f"{repo_name}:v1"
    path = c_client_path("pull", tag)
    assert "%2F" in path and "%3A" in path
    pull_headers = {"Content-type": "application/json"}

    statuses = []
    while not statuses or statuses[-1] in IN_PROGRESS:
        # Item 7: the client re-POSTs the same pull (empty body) until it is done.
        response, body = request(server, "POST", path,
                                 {**pull_headers, **caller.headers(USER_A)}, b"")
        assert response.status == 200
        record = check_json_headers(response, body)
        statuses.append(record["status"])
        assert record["tag"] in ([], [tag])
        time.sleep(0.1)
    assert statuses[0] == "INIT" and "INIT" not in statuses[1:]
    assert statuses[-1] == "READY"

    response, body = request(server, "GET", c_client_path("lookup", tag), caller.headers(USER_A))
    record = check_json_headers(response, body)
    # Item 3: last_pull is a JSON float; item 4: the id is bare hex, no "sha256:".
    assert re.search(rb'"last_pull":\d+\.\d+', body)
    assert re.fullmatch(r"[0-9a-f]{64}", record["id"])
    assert record["tag"] == [tag]

    # Item 6: <id>.<fmt> and <id>.meta in imageDir; ENTRY as a Python list repr.
    assert gateway_env.image_files() == [f"{record['id']}.{suffix}"
                                         for suffix in ("json", "meta", "squashfs")]
    meta = (gateway_env.image_dir / f"{record['id']}.meta").read_text().splitlines()
    assert meta[0] == "FORMAT: squashfs"
    assert "ENTRY: ['/bin/echo', 'shifter-test-entrypoint']" in meta

    response, body = request(server, "GET", f"/api/list/{SYSTEM}/", caller.headers(USER_A))
    assert [entry["id"] for entry in check_json_headers(response, body)["list"]] == [record["id"]]

    # Item 5: anything that is not 200 is a failure, with the original's error body.
    response, body = request(server, "GET", c_client_path("lookup", "not/there:1"),
                             caller.headers(USER_A))
    assert response.status == 404
    assert check_json_headers(response, body) == {
        "status": 404, "error": "image not found",
        "message": f"Not Found: http://127.0.0.1:{server.port}"
                   f"/api/lookup/{SYSTEM}/docker/not/there:1/",
    }


def test_queue_and_index_need_no_credential(server: GatewayServer) -> None:
    response, body = request(server, "GET", f"/api/queue/{SYSTEM}/")
    assert check_json_headers(response, body) == {"list": []}
    response, body = request(server, "GET", "/")
    assert (response.status, body) == (200, b"{lookup,pull,expire,list}")


def raw_exchange(server: GatewayServer, head: bytes, body_parts: list[bytes],
                 pause_s: float = 0.0) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head)
        for part in body_parts:
            time.sleep(pause_s)
            try:
                sock.sendall(part)
            except OSError:
                break  # the server answered and closed early, as it should
        chunks = []
        with contextlib.suppress(ConnectionResetError):  # what arrived is what we check
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def pull_head(caller: Caller, extra: str) -> bytes:
    credential = caller.headers(USER_A)["authentication"]
    return (f"POST /api/pull/{SYSTEM}/docker/x%2Fy%3A1/ HTTP/1.1\r\nHost: gw\r\n"
            f"authentication: {credential}\r\nContent-Type: application/json\r\n{extra}\r\n"
            ).encode()


def test_a_huge_declared_body_is_refused_before_it_is_sent(
    server: GatewayServer, caller: Caller
) -> None:
    reply = raw_exchange(server, pull_head(caller, "Content-Length: 50000000\r\n"), [])
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b'"error":"the request body is larger than 65536 bytes"' in reply


def test_a_chunked_body_over_the_limit_is_cut_off(
    gateway_env: GatewayEnv, gateway_servers: Callable[..., GatewayServer], caller: Caller
) -> None:
    # A small limit: the whole body fits in what the server reads at once, so it closes
    # the connection cleanly (unread data would turn the close into a reset).
    small = gateway_servers(gateway_env.write(), SHIFTER_IMAGEGW_MAX_BODY_BYTES="1000")
    chunk = b"%x\r\n%s\r\n" % (500, b" " * 500)
    reply = raw_exchange(small, pull_head(caller, "Transfer-Encoding: chunked\r\n"),
                         [chunk * 3 + b"0\r\n\r\n"])
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b'"error":"the request body is larger than 1000 bytes"' in reply


def test_a_body_that_trickles_in_is_refused(
    gateway_env: GatewayEnv, gateway_servers: Callable[..., GatewayServer], caller: Caller
) -> None:
    slow = gateway_servers(gateway_env.write(), SHIFTER_IMAGEGW_BODY_TIMEOUT_S="1")
    reply = raw_exchange(slow, pull_head(caller, "Content-Length: 100\r\n"),
                         [b"{", b" "], pause_s=0.6)
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert b'"error":"the request body arrived too slowly"' in reply


def test_serve_refuses_a_config_without_platforms(
    gateway_env: GatewayEnv, tmp_path: Path
) -> None:
    gateway_env.data["Platforms"] = {}
    server = GatewayServer(gateway_env.write(), tmp_path / "refused.log")
    with pytest.raises(pytest.fail.Exception):
        server.start()
    assert server.process is not None and server.process.returncode == 1
    assert f"{gateway_env.config_path} key 'Platforms': names no Platforms" in server.log_tail()


def test_a_running_gateway_logs_each_request(
    server: GatewayServer, caller: Caller
) -> None:
    request(server, "GET", f"/api/list/{SYSTEM}/", caller.headers(USER_A))
    wait_for(lambda: "path=/api/list/testsys/ status=200 user=shiftertest1(" in server.log_tail(),
             timeout=10, what="the access log line")
    line = next(line for line in server.log_tail().splitlines() if "path=/api/list/" in line)
    host = re.escape(os.uname().nodename)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z " + host + r" \d+ INFO "
                    r"shifter\.gateway\.access \[[0-9a-f]{12}\]: request method=GET", line), line
    # The server's own lines (uvicorn's start-up) come in the same format.
    started = next(line for line in server.log_tail().splitlines() if "Uvicorn running" in line)
    assert re.match(r"\d{4}-\d\d-\d\dT\S+Z " + host + r" \d+ INFO uvicorn\.error \[-\]: ",
                    started), started
    # A percent-encoded newline must not forge a log line.
    request(server, "GET", f"/api/lookup/{SYSTEM}/docker/a%0Aforged:1/", caller.headers(USER_A))
    wait_for(lambda: "a\\nforged:1/ status=404" in server.log_tail(), timeout=10,
             what="the escaped access log line")
    assert not any(line.startswith("forged") for line in server.log_tail().splitlines())


def test_a_log_file_in_json_lines_with_polls_at_debug(
    gateway_env: GatewayEnv, gateway_servers: Callable[..., GatewayServer], caller: Caller,
    tmp_path: Path,
) -> None:
    log_file = tmp_path / "gateway.jsonl"
    server = gateway_servers(gateway_env.write(LogFile=str(log_file), LogFormat="json"))
    request(server, "GET", f"/api/list/{SYSTEM}/", caller.headers(USER_A))
    request(server, "GET", "/healthz", {})

    def entries() -> list[dict[str, Any]] | None:
        found = [json.loads(line) for line in log_file.read_text().splitlines()]
        return found if any("path=/api/list/" in e["message"] for e in found) else None

    found = wait_for(entries, timeout=10, what="the access line in the log file")
    assert all(set(e) >= {"time", "host", "pid", "level", "logger", "request_id", "message"}
               for e in found)
    listed = next(e for e in found if "path=/api/list/" in e["message"])
    assert (listed["level"], listed["logger"], len(listed["request_id"])) == (
        "INFO", "shifter.gateway.access", 12)
    assert not any("path=/healthz" in e["message"] for e in found)  # a probe: DEBUG
    assert any(e["logger"] == "uvicorn.error" for e in found)
