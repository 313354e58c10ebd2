"""`shifter-imagegw serve` for the gateway benchmark: its configuration and its process.

The configuration keeps the gateway's defaults (LogLevel info: one access line per request;
Metrics off; WorkerThreads 2) except the paths, and a PullUpdateTimeout of an hour: a pull
of a READY image older than PullUpdateTimeout starts a new pull, which is not what the
pull measurement is about.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from pathlib import Path

from bench.postgres import free_port
from shifter import proc
from shifter.devtools.service import ServiceProcess
from shifter.errors import ToolError

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 40.0
STARTED = "Application startup complete."  # uvicorn, once per server process


def gateway_config(
    directory: Path, *, store_url: str, system: str, munge_socket: str,
    registry_netloc: str, registry_url: str,
) -> Path:
    """Write `directory/imagemanager.json` (and the directories it names)."""
    for name in ("images", "expand", "cache"):
        (directory / name).mkdir(parents=True, exist_ok=True)
    data = {
        "DefaultImageLocation": registry_netloc,
        "DefaultImageFormat": "squashfs",
        "PullUpdateTimeout": 3600,
        "CacheDirectory": str(directory / "cache"),
        "ExpandDirectory": str(directory / "expand"),
        "MetadataStore": store_url,
        "Locations": {registry_netloc: {"url": registry_url}},
        "Platforms": {
            system: {
                "mungeSocketPath": munge_socket,
                "accesstype": "local",
                "admins": ["root"],
                "local": {"imageDir": str(directory / "images")},
            }
        },
    }
    path = directory / "imagemanager.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


class ServerProcess(ServiceProcess):
    """`shifter-imagegw serve --workers N` on a free loopback port, stopped by its PID."""

    stop_timeout_s = STOP_TIMEOUT_S

    def __init__(self, config: Path, log_path: Path, *, workers: int) -> None:
        self.config = config
        self.log_path = log_path
        self.workers = workers
        self.port = free_port()
        super().__init__()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        command = Path(sys.executable).parent / "shifter-imagegw"
        self._process = proc.spawn(
            [command, "serve", "--config", self.config, "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(self.workers)],
            output_path=self.log_path,
        )
        self._wait_until_serving()
        return self

    def _wait_until_serving(self) -> None:
        """Until every server process has started (uvicorn logs each) and `/` answers."""
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self._process.poll() is None:
            started = self.log_path.read_text(errors="replace").count(STARTED)
            if started >= self.workers and self._answers():
                return
            time.sleep(0.1)
        tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
        self.stop()
        raise ToolError("the gateway did not start", stderr_tail=tail)

    def _answers(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/")
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

