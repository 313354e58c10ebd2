"""`/healthz` for load balancers: 200 while the store answers and every platform's munged
decodes a credential, 503 naming what fails, within a second of the failure, and 200 again
once it is back. A real munged of the test's own is stopped and started under the gateway.
"""

from __future__ import annotations

import time
from typing import Any

from tests.services.gateway_fixtures import SYSTEM, GatewayEnv, running_app, wait_for
from tests.services.munged import running_munged


def test_healthz_follows_munged(gateway_env: GatewayEnv) -> None:
    with running_munged() as own:
        socket = str(own.socket)
        gateway_env.data["Platforms"][SYSTEM]["mungeSocketPath"] = socket
        with running_app(gateway_env.config()) as client:
            healthy = client.get("/healthz")
            assert (healthy.status_code, healthy.json()) == (200, {"status": "ok"})
            assert client.get("/health").status_code == 200
            assert "healthz" in client.get("/openapi.json").text

            own.stop()

            def failing() -> Any:
                reply = client.get("/healthz")
                return reply if reply.status_code == 503 else None

            started = time.monotonic()
            reply = wait_for(failing, what="healthz to report munged", timeout=10)
            assert time.monotonic() - started < 3  # a result lives at most a second
            (problem,) = reply.json()["problems"]
            assert reply.json()["status"] == "failing"
            assert problem.startswith(f"munge of platform {SYSTEM} at {socket}: ")

            own.start()
            wait_for(lambda: client.get("/healthz").status_code == 200,
                     what="healthz to recover", timeout=10)
