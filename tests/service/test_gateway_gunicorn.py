"""The gateway under gunicorn with uvicorn workers, the app path docs/gateway.md gives:

    gunicorn -k uvicorn_worker.UvicornWorker 'shifter.gateway.app:create_app_from_env()'

Two worker processes share one SQLite store; a pull sent to either is done once, and every
request is answered the same whichever worker takes it.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from pathlib import Path
from typing import Any

from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image
from tests.services.gateway_fixtures import (
    SYSTEM,
    USER_A,
    USER_B,
    Caller,
    GatewayEnv,
    GatewayServer,
)
from tests.services.registries import RegistryEndpoint

APP = "shifter.gateway.app:create_app_from_env()"


class GunicornGateway(GatewayServer):
    def argv(self) -> list[str]:
        return [
            str(Path(sys.executable).with_name("gunicorn")), "-k", "uvicorn_worker.UvicornWorker",
            "-w", "2", "-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "20",
            "--env", f"GWCONFIG={self.config_path}", APP,
        ]


def call(server: GatewayServer, method: str, path: str, headers: dict[str, str]
         ) -> tuple[int, dict[str, str], Any]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        return response.status, dict(response.getheaders()), json.loads(body)
    finally:
        connection.close()


def test_gunicorn_with_uvicorn_workers_serves_the_whole_flow(
    gateway_env: GatewayEnv, caller: Caller, registry_anon: RegistryEndpoint, repo_name: str,
    tmp_path: Path,
) -> None:
    push_image(catalog.build("busybox"), registry_anon.url, repo_name, "v1")
    tag = f"{repo_name}:v1"
    server = GunicornGateway(gateway_env.write(), tmp_path / "gunicorn.log")
    server.start()
    try:
        statuses: list[str] = []
        deadline = time.monotonic() + 120
        while not statuses or statuses[-1] not in ("READY", "FAILURE"):
            assert time.monotonic() < deadline, f"pull stuck at {statuses[-1:]}"
            status, headers, record = call(server, "POST", f"/api/pull/{SYSTEM}/docker/{tag}/",
                                           caller.headers(USER_A))
            assert status == 200, record
            assert headers["content-type"] == "application/json"
            statuses.append(record["status"])
            time.sleep(0.2)
        assert statuses[0] == "INIT" and statuses[-1] == "READY", statuses
        # Each lookup opens a new connection, so both workers answer some of them.
        ids = set()
        for _ in range(10):
            status, _, record = call(server, "GET", f"/api/lookup/{SYSTEM}/docker/{tag}/",
                                     caller.headers(USER_B))
            assert status == 200, record
            ids.add(record["id"])
        assert len(ids) == 1
        image_id = ids.pop()
        assert gateway_env.image_files() == [
            f"{image_id}.{suffix}" for suffix in ("json", "meta", "squashfs")]
        status, _, refused = call(server, "GET", f"/api/lookup/{SYSTEM}/docker/{tag}/", {})
        assert (status, refused["error"]) == (401, "missing authentication header (hint: send "
                                              "a munge credential in the 'authentication' "
                                              "header; make a new credential for every request "
                                              "(munge -n), signed by the munge key of this "
                                              "system)")
        log = server.log_tail(200)
        assert "Booting worker" in log and log.count("Application startup complete") == 2
    finally:
        server.stop()
    assert server.process is not None and server.process.returncode == 0
