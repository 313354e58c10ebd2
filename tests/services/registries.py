"""The four docker-registry variants the tests run against, and what a test gets to see.

Each variant is one `shifter.devtools.registry.RegistryServer` in its own temp directory on
a free loopback port: anonymous plain HTTP, HTTPS with a throw-away CA, htpasswd Basic auth
and bearer tokens from `TokenIssuer`. `running_registry` starts one and always stops it (by
PID) and removes its directory, whatever happens in between.
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, get_args

import bcrypt
import httpx

from shifter.devtools.registry import RegistryServer, TLSFiles, TokenAuth
from tests.services.tls import make_ca, make_server_cert, make_signing_key
from tests.services.token_issuer import TokenIssuer

Kind = Literal["anon", "tls", "basic", "token"]
KINDS: tuple[Kind, ...] = get_args(Kind)

# htpasswd has no authorization: both users may push. Same passwords as the token issuer's
# users of the same names, so a test can switch variants without switching secrets.
BASIC_USERS: Mapping[str, str] = MappingProxyType(
    {"pusher": "pusher-secret", "puller": "puller-secret"}
)
READY_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class RegistryEndpoint:
    """A running registry as tests see it.

    `url` is `scheme://127.0.0.1:PORT`; `netloc` is `127.0.0.1:PORT` (what goes in an image
    reference); `ca_file` is the CA to verify HTTPS with (None for plain HTTP);
    `credentials` maps user to password (empty for anon/tls); `issuer` is the token server
    (token variant only); `workdir` is the temp dir holding config, storage, keys and the
    registry log (`server.log_path`), removed when the registry stops.
    """

    kind: Kind
    url: str
    netloc: str
    server: RegistryServer
    workdir: Path
    ca_file: Path | None = None
    credentials: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    issuer: TokenIssuer | None = None

    @property
    def pid(self) -> int:
        pid = self.server.pid
        if pid is None:
            raise RuntimeError(f"{self.kind} registry is not running")
        return pid

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What httpx's `verify=` needs to talk to this registry."""
        if self.ca_file is None:
            return True
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client(self, *, auth: tuple[str, str] | None = None) -> httpx.Client:
        """An httpx client with the right trust settings and the base URL set."""
        return httpx.Client(base_url=self.url, verify=self.ssl_context(), auth=auth, timeout=30.0)

    def stop(self) -> None:
        self.server.stop()
        if self.issuer is not None:
            self.issuer.stop()


def write_htpasswd(path: Path, users: Mapping[str, str]) -> None:
    """bcrypt entries (the only kind docker-registry 2.8 accepts); rounds=4 keeps tests fast."""
    lines = [
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}"
        for user, pw in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")


def wait_ready(url: str, verify: ssl.SSLContext | bool = True) -> None:
    """Poll `GET /v2/` until the registry answers 200 or 401 (it logs its port before serving)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last: Exception | int | None = None
    while time.monotonic() < deadline:
        try:
            status = httpx.get(f"{url}/v2/", verify=verify, timeout=2.0).status_code
        except httpx.TransportError as error:
            last = error
        else:
            if status in (200, 401):
                return
            last = status
        time.sleep(0.05)
    raise TimeoutError(f"registry at {url} not ready after {READY_TIMEOUT_S} s: {last!r}")


def _started(
    kind: Kind,
    workdir: Path,
    server: RegistryServer,
    *,
    ca_file: Path | None = None,
    credentials: Mapping[str, str] = MappingProxyType({}),
    issuer: TokenIssuer | None = None,
) -> RegistryEndpoint:
    endpoint = RegistryEndpoint(
        kind=kind,
        url=server.url,
        netloc=server.netloc,
        server=server,
        workdir=workdir,
        ca_file=ca_file,
        credentials=credentials,
        issuer=issuer,
    )
    try:
        wait_ready(endpoint.url, endpoint.ssl_context())
    except BaseException:
        endpoint.stop()
        raise
    return endpoint


def start_anon(workdir: Path) -> RegistryEndpoint:
    return _started("anon", workdir, RegistryServer(workdir / "registry").start())


def start_tls(workdir: Path) -> RegistryEndpoint:
    ca_key, ca_cert = make_ca(workdir)
    certificate, key = make_server_cert(workdir, ca_key, ca_cert)
    server = RegistryServer(workdir / "registry", tls=TLSFiles(certificate, key)).start()
    return _started("tls", workdir, server, ca_file=workdir / "ca.crt")


def start_basic(workdir: Path) -> RegistryEndpoint:
    htpasswd = workdir / "htpasswd"
    write_htpasswd(htpasswd, BASIC_USERS)
    server = RegistryServer(workdir / "registry", htpasswd=htpasswd).start()
    return _started("basic", workdir, server, credentials=BASIC_USERS)


def start_token(workdir: Path) -> RegistryEndpoint:
    issuer = TokenIssuer(make_signing_key(workdir)).start()
    auth = TokenAuth(
        realm=issuer.realm,
        service=issuer.service,
        issuer=issuer.issuer,
        root_cert_bundle=issuer.signer.certificate,
    )
    try:
        server = RegistryServer(workdir / "registry", token=auth).start()
    except BaseException:
        issuer.stop()
        raise
    return _started("token", workdir, server, credentials=issuer.credentials, issuer=issuer)


_STARTERS = {"anon": start_anon, "tls": start_tls, "basic": start_basic, "token": start_token}


@contextlib.contextmanager
def running_registry(kind: Kind) -> Iterator[RegistryEndpoint]:
    """Start one variant in a fresh temp dir; stop it and remove the dir on the way out."""
    workdir = Path(tempfile.mkdtemp(prefix=f"shifter-registry-{kind}-"))
    try:
        endpoint = _STARTERS[kind](workdir)
        try:
            yield endpoint
        finally:
            endpoint.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

