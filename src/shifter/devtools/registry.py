"""A private instance of Debian's `docker-registry` (the CNCF distribution registry).

Used by the demo and by the tests: each instance has its own storage directory and a free
loopback port chosen by the kernel (`127.0.0.1:0`; the registry logs the port it got), and is
stopped by its PID. Auth variants: anonymous, htpasswd (bcrypt entries only) and bearer
token (tokens signed by a certificate in `token.root_cert_bundle`).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from shifter import proc
from shifter.devtools.service import ServiceProcess
from shifter.errors import ToolError
from shifter.proc import find_tool

_LISTENING = re.compile(r'listening on (?:\[::\]|[\d.]+):(\d+)')
START_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class TokenAuth:
    """The registry side of bearer-token auth: who issues tokens and which certs sign them."""

    realm: str
    service: str
    issuer: str
    root_cert_bundle: Path


@dataclass(frozen=True)
class TLSFiles:
    certificate: Path
    key: Path


class RegistryServer(ServiceProcess):
    """One `docker-registry serve` process; use as a context manager or call start/stop."""

    def __init__(
        self,
        workdir: Path,
        *,
        tls: TLSFiles | None = None,
        htpasswd: Path | None = None,
        token: TokenAuth | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        if htpasswd is not None and token is not None:
            raise ValueError("a registry takes one auth method: htpasswd or token")
        self.workdir = Path(workdir)
        self.tls = tls
        self.htpasswd = htpasswd
        self.token = token
        self.host = host
        self.port: int | None = None
        super().__init__()

    @property
    def netloc(self) -> str:
        if self.port is None:
            raise RuntimeError("registry not started")
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.netloc}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "registry.log"

    def config_text(self) -> str:
        """The registry's YAML config (JSON-style flow mappings, which YAML accepts)."""
        storage = self.workdir / "data"
        http = f'addr: "{self.host}:0", secret: "shifter-test-secret"'
        if self.tls:
            http += f', tls: {{certificate: "{self.tls.certificate}", key: "{self.tls.key}"}}'
        lines = [
            "version: 0.1",
            "log: {level: info}",
            f'storage: {{filesystem: {{rootdirectory: "{storage}"}}, delete: {{enabled: true}}}}',
            f"http: {{{http}}}",
        ]
        if self.htpasswd:
            lines.append(
                f'auth: {{htpasswd: {{realm: "shifter-test", path: "{self.htpasswd}"}}}}'
            )
        if self.token:
            t = self.token
            lines.append(
                f'auth: {{token: {{realm: "{t.realm}", service: "{t.service}", '
                f'issuer: "{t.issuer}", rootcertbundle: "{t.root_cert_bundle}"}}}}'
            )
        return "\n".join(lines) + "\n"

    def start(self) -> RegistryServer:
        binary = find_tool("docker-registry")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.htpasswd is not None and not self.htpasswd.exists():
            # The registry would invent a user with a random password instead of failing.
            raise FileNotFoundError(f"htpasswd file {self.htpasswd} does not exist")
        config = self.workdir / "config.yml"
        config.write_text(self.config_text())
        # docker-registry reads REGISTRY_* variables as overrides of its config file (and
        # skopeo's REGISTRY_AUTH_FILE breaks it): the instance gets exactly our config.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self._process = proc.spawn(
            [binary, "serve", str(config)], output_path=self.log_path, env=env
        )
        self.port = self._wait_for_port()
        return self

    def _wait_for_port(self) -> int:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log_path.read_text(errors="replace"))
            if match:
                return int(match.group(1))
            if self._process.poll() is not None:
                break
            time.sleep(0.02)
        tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-10:])
        self.stop()
        raise ToolError("docker-registry did not start", stderr_tail=tail)

