"""The image gateway under test: configs, in-process apps, server processes, callers.

- `store_url` (parametrised: sqlite, postgresql): an empty metadata store for one test, a
  fresh SQLite file or the module's PostgreSQL database with its tables dropped; `store`
  is that store opened.
- `gateway_env`: a tmp dir with imageDir, cache, expand dir and an imagemanager.json for
  platform `testsys` (munge socket of the `munged` fixture, admins `root`, the anonymous
  registry as the default location); `write()` writes it with changes.
- `GatewayServer`: `shifter-imagegw serve` as a real process on a free port (stopped by
  PID, SIGTERM then SIGKILL); `TlsRelay`: HTTPS in front of a plain-HTTP registry, and
  `private_registry`: the htpasswd registry behind one, the gateway's location `private`.
- `Caller`: request headers with a fresh munge credential, minted as any test account.
- `Site`, `start_site`: a login node (a udiRoot.conf naming the gateways, per-user config
  homes) where `shifterimg` runs as real users, against a gateway process started from
  `gateway_env` as it is then.

Service settings are short (2 s leases) so takeovers happen within seconds; tests wait by
polling (`wait_for`) and never assert on durations.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from shifter.devtools.service import free_port

T = TypeVar("T")

SYSTEM = "testsys"
ADMIN = "root"
# Accounts created by scripts/install.sh; shiftertest1 is also in shiftertestgrp.
USER_A, USER_B, USER_C = "shiftertest1", "shiftertest2", "shifterdemo"
GROUP_A = "shiftertestgrp"
TEST_SETTINGS = {
    "SHIFTER_IMAGEGW_LEASE_S": "2",
    "SHIFTER_IMAGEGW_POLL_S": "0.2",
    "SHIFTER_IMAGEGW_FAILURE_HOLD_S": "1",
}
SERVER_START_TIMEOUT_S = 30.0
BIN = Path(sys.executable).parent  # the venv's commands
PRIVATE = "private"  # the gateway's Locations name for the password-protected registry


def uid_of(user: str) -> int:
    return pwd.getpwnam(user).pw_uid


def wait_for(check: Callable[[], T | None], *, timeout: float = 60.0, what: str = "") -> T:
    """Poll `check` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or check}")
        time.sleep(0.05)


# -- stores --------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty metadata store: the same tests run on both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/gateway.sqlite"
    url: str = request.getfixturevalue("postgres_database")
    from sqlalchemy import create_engine

    from shifter.gateway.store_schema import metadata

    engine = create_engine(url)
    with engine.begin() as conn:
        metadata.drop_all(conn)
    engine.dispose()
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Any]:
    """The metadata store at `store_url`, opened (schema created) as a gateway opens it."""
    from shifter.gateway.store import MetadataStore

    opened = MetadataStore.open(store_url)
    try:
        yield opened
    finally:
        opened.close()


# -- callers -------------------------------------------------------------------------------


@dataclass
class Caller:
    """Makes `authentication` headers: a new munge credential per request, as any user."""

    munged: Any

    def headers(self, user: str | None = ADMIN, payload: bytes = b"") -> dict[str, str]:
        uid = uid_of(user) if user is not None else None
        return {"authentication": self.munged.encode(payload, uid=uid)}

    def with_credentials(self, user: str, locations: dict[str, str]) -> dict[str, str]:
        payload = json.dumps({"authorized_locations": locations}).encode()
        return self.headers(user, payload)


@pytest.fixture
def caller(munged: Any) -> Caller:
    return Caller(munged)


# -- configuration -------------------------------------------------------------------------


@dataclass
class GatewayEnv:
    """A gateway's directories and configuration in a tmp dir."""

    root: Path
    munge_socket: str
    registry_netloc: str
    registry_url: str
    store: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def image_dir(self) -> Path:
        return self.root / "images"

    @property
    def expand_dir(self) -> Path:
        return self.root / "expand"

    @property
    def config_path(self) -> Path:
        return self.root / "imagemanager.json"

    def __post_init__(self) -> None:
        for directory in (self.image_dir, self.expand_dir, self.root / "cache"):
            directory.mkdir(parents=True, exist_ok=True)
        self.data = {
            "DefaultImageLocation": self.registry_netloc,
            "DefaultImageFormat": "squashfs",
            "PullUpdateTimeout": 300,
            "ImageExpirationTimeout": "90:00:00:00",
            "CacheDirectory": str(self.root / "cache"),
            "ExpandDirectory": str(self.expand_dir),
            "MetadataStore": self.store,
            "WorkerThreads": 2,
            "Metrics": True,
            "ImportUsers": [USER_A],
            "Locations": {self.registry_netloc: {"url": self.registry_url}},
            "Platforms": {
                SYSTEM: {
                    "mungeSocketPath": self.munge_socket,
                    "accesstype": "local",
                    "admins": [ADMIN],
                    "local": {"imageDir": str(self.image_dir)},
                }
            },
        }

    def add_location(self, name: str, url: str, ca_file: str | None = None) -> None:
        entry: dict[str, str] = {"url": url}
        if ca_file is not None:
            entry["sslcacert"] = ca_file
        self.data["Locations"][name] = entry

    def write(self, **changes: Any) -> Path:
        self.data.update(changes)
        self.config_path.write_text(json.dumps(self.data, indent=2))
        self.config_path.chmod(0o644)
        return self.config_path

    def config(self, **changes: Any) -> Any:
        from shifter.gateway.config import load_gateway_config

        return load_gateway_config(str(self.write(**changes)))

    def image_files(self) -> list[str]:
        return sorted(p.name for p in self.image_dir.iterdir() if not p.name.startswith("."))


def make_env(root: Path, munged: Any, registry: Any, store: str) -> GatewayEnv:
    root.chmod(0o755)  # the munge-minting users and the import tests walk below it
    return GatewayEnv(root, str(munged.socket), registry.netloc, registry.url, store)


@pytest.fixture
def gateway_env(tmp_path: Path, munged: Any, registry_anon: Any) -> GatewayEnv:
    """A gateway configuration with an SQLite store in tmp_path."""
    return make_env(tmp_path, munged, registry_anon, f"sqlite:///{tmp_path}/gateway.sqlite")


def short_settings(**changes: str) -> Any:
    from shifter.gateway.settings import ServiceSettings

    return ServiceSettings.from_environ({**TEST_SETTINGS, **changes})


@contextlib.contextmanager
def running_app(config: Any, **settings: str) -> Iterator[Any]:
    """The app in this process (TestClient runs its lifespan: store and workers)."""
    with warnings.catch_warnings():  # starlette's notice about its httpx-based client
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from shifter.gateway.app import create_app

    app = create_app(config, settings=short_settings(**settings))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


# -- server processes ----------------------------------------------------------------------


class GatewayServer:
    """`shifter-imagegw serve` in its own process on a free port."""

    def __init__(self, config_path: Path, log_path: Path, **settings: str) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.port = free_port()
        self.settings = {**TEST_SETTINGS, **settings}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "shifter.cli.imagegw", "serve", "--config",
                str(self.config_path), "--host", "127.0.0.1", "--port", str(self.port)]

    def start(self) -> GatewayServer:
        env = {**os.environ, **self.settings}
        env.pop("GWCONFIG", None)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv(), env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=1
            ):
                return self
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"the gateway did not start:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: the gateway dies mid-work, as a crash or an OOM kill would."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def gateway_servers(tmp_path: Path) -> Iterator[Callable[..., GatewayServer]]:
    """Starts gateway processes; stops every one of them at the end of the test."""
    started: list[GatewayServer] = []

    def start(config_path: Path, **settings: str) -> GatewayServer:
        server = GatewayServer(config_path, tmp_path / f"gateway-{len(started)}.log", **settings)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


# -- a login node ------------------------------------------------------------------------


@dataclass
class Site:
    """A login node's view: a root-owned udiRoot.conf naming the gateways, per-user config
    homes (the login files land there, never in a real home) and the munged socket."""

    directory: Path
    munged: Any
    gateways: list[str]
    homes: dict[str, Path] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.directory / "udiRoot.conf"

    def write_config(self) -> None:
        self.config.write_text(
            "udiMount=/var/udiMount\nloopMount=/var/udiLoopMount\nimagePath=/images\n"
            f"rootfsType=tmpfs\npopulateEtcDynamically=1\nsystem={SYSTEM}\n"
            f"imageGateway={' '.join(self.gateways)}\ngatewayTimeout=30\n"
        )
        self.config.chmod(0o644)

    def home(self, user: str) -> Path:
        if user not in self.homes:
            home = self.directory / f"config-{user}"
            home.mkdir(mode=0o700)
            os.chown(home, uid_of(user), uid_of(user) if user != ADMIN else 0)
            self.homes[user] = home
        return self.homes[user]

    def env(self, user: str) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "SHIFTER_CONFIG": str(self.config),
            "SHIFTER_MUNGE_SOCKET": str(self.munged.socket),
            "XDG_CONFIG_HOME": str(self.home(user)),
            "TZ": "UTC",
        }

    def argv(self, user: str, args: tuple[str, ...]) -> list[str]:
        argv = [str(BIN / "shifterimg"), *args]
        return argv if user == ADMIN else ["/usr/sbin/runuser", "-u", user, "--", *argv]

    def run(
        self, *args: str, user: str = USER_A, stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(user, args), env=self.env(user), input=stdin,
                              capture_output=True, text=True, timeout=300)


@pytest.fixture
def site_dir() -> Iterator[Path]:
    # Under /tmp and searchable: the test users read udiRoot.conf and their config homes.
    directory = Path(tempfile.mkdtemp(prefix="shifterimg-e2e-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def start_site(
    site_dir: Path, gateway_env: GatewayEnv, gateway_servers: Callable[..., GatewayServer],
    munged: Any,
) -> Callable[..., Site]:
    """Start the gateway with `gateway_env` as it is now; `before` puts gateways in front,
    `settings` are SHIFTER_IMAGEGW_* service settings."""

    def start(before: tuple[str, ...] = (), **settings: str) -> Site:
        server = gateway_servers(gateway_env.write(), **settings)
        site = Site(site_dir, munged, [*before, server.url])
        site.write_config()
        return site

    return start


# -- an HTTPS front for a plain registry ---------------------------------------------------


class TlsRelay:
    """Terminates TLS on a free loopback port and relays the bytes to `upstream` (host,
    port): HTTPS with a throw-away CA in front of the htpasswd registry, so credentials
    travel as they must, never over plain http."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.directory = Path(tempfile.mkdtemp(prefix="shifter-tls-relay-"))
        from tests.services.tls import make_ca, make_server_cert

        ca_key, ca_cert = make_ca(self.directory)
        cert, key = make_server_cert(self.directory, ca_key, ca_cert)
        self.ca_file = self.directory / "ca.crt"
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> TlsRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close does not)
        self.listener.close()
        self._thread.join(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            secure = self.context.wrap_socket(client, server_side=True)
            upstream = socket.create_connection(self.upstream)
            pump = threading.Thread(target=_pump, args=(upstream, secure), daemon=True)
            pump.start()
            _pump(secure, upstream)
            pump.join(timeout=30)
        client.close()


@pytest.fixture
def private_registry(gateway_env: GatewayEnv, registry_basic: Any) -> Iterator[Any]:
    """The htpasswd registry behind HTTPS, known to the gateway as location `private`."""
    host, port = registry_basic.netloc.rsplit(":", 1)
    with TlsRelay((host, int(port))) as relay:
        gateway_env.add_location(PRIVATE, relay.url, ca_file=str(relay.ca_file))
        yield registry_basic


def _pump(source: socket.socket, dest: socket.socket) -> None:
    with contextlib.suppress(OSError, ssl.SSLError):
        while data := source.recv(65536):
            dest.sendall(data)
    with contextlib.suppress(OSError):
        dest.shutdown(socket.SHUT_WR)
