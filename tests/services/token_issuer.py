"""A small Docker-style token server for the bearer-token registry.

It answers `GET /token?service=…&scope=…&account=…` the way Docker Hub's auth server does:
callers authenticate with HTTP Basic (or not at all), every requested scope is granted only
the actions the caller's grants allow, and the answer is 200 with reduced access rather than
a refusal, so the registry is the one that says `insufficient_scope`. Tokens are RS256 JWTs
signed by a key whose cert is in the registry's root bundle, identified by its libtrust `kid`.

Switches for tests (`configured`): token lifetime, tokens that are already expired, and a
fault status (500 or 401) answered to every request. `tokens_issued` counts tokens so a test
can check that a client reuses or refreshes them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import fnmatch
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from urllib.parse import SplitResult, parse_qs, urlsplit

import jwt

from tests.services.tls import SigningKey

log = logging.getLogger(__name__)

# The registry accepts tokens up to 60 s past `exp`; "expired" tokens must be well past that.
EXPIRED_BY_S = 600
# Repositories under this prefix are not pullable anonymously (Docker Hub's private repos).
PRIVATE_PREFIX = "private/"
PULL = frozenset({"pull"})


@dataclass(frozen=True)
class Grant:
    """Actions allowed on resources of one type whose name matches a glob (`*` spans `/`)."""

    pattern: str
    actions: frozenset[str]
    type: str = "repository"

    def allows(self, type_: str, name: str) -> bool:
        return type_ == self.type and fnmatch.fnmatchcase(name, self.pattern)


@dataclass(frozen=True)
class Account:
    password: str
    grants: tuple[Grant, ...]


def default_accounts() -> Mapping[str, Account]:
    """The user table. Everyone, anonymous included, may also pull non-`private/` repos.

    - pusher: pull, push and delete on every repository, and the catalog;
    - puller: pull on every repository, `private/` ones included;
    - alice: pull on `private/*` only (plus the public pull everyone has).
    """
    return MappingProxyType(
        {
            "pusher": Account(
                "pusher-secret",
                (
                    Grant("*", frozenset({"pull", "push", "delete"})),
                    Grant("catalog", frozenset({"*"}), type="registry"),
                ),
            ),
            "puller": Account("puller-secret", (Grant("*", PULL),)),
            "alice": Account("alice-secret", (Grant(PRIVATE_PREFIX + "*", PULL),)),
        }
    )


@dataclass(frozen=True)
class Scope:
    """One requested scope, `type:name:actions` (`repository:foo/bar:pull,push`)."""

    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Scope:
        # Names contain '/' and (with a registry host) could contain ':', actions never do.
        resource, _, actions = text.rpartition(":")
        type_, _, name = resource.partition(":")
        if not type_ or not name or not actions:
            raise ValueError(f"malformed scope {text!r}")
        return cls(type_, name, tuple(a for a in actions.split(",") if a))


def parse_scopes(values: list[str]) -> list[Scope]:
    """Repeated `scope` parameters, each of which may hold several space-separated scopes."""
    return [Scope.parse(part) for value in values for part in value.split()]


@dataclass(frozen=True)
class Settings:
    """What tests switch: `fault_status` 500 or 401 answers every request with that status."""

    lifetime_s: int = 300
    expired: bool = False
    fault_status: int | None = None


@dataclass(frozen=True)
class IssuedToken:
    """A record of one token: who asked, what for, what was granted."""

    subject: str
    requested: tuple[Scope, ...]
    access: tuple[Mapping[str, object], ...]
    token: str
    claims: Mapping[str, object] = field(repr=False)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, issuer: TokenIssuer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.issuer = issuer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        log.debug("token issuer: " + format, *args)

    def do_GET(self) -> None:
        status, body, headers = self.server.issuer.answer(
            urlsplit(self.path), self.headers.get("Authorization")
        )
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


Answer = tuple[int, dict[str, object], dict[str, str]]


class TokenIssuer:
    """The token server; `start()` binds a free loopback port, `stop()` shuts the thread down."""

    def __init__(
        self,
        signer: SigningKey,
        *,
        service: str = "shifter-test-registry",
        issuer: str = "shifter-test-issuer",
        accounts: Mapping[str, Account] | None = None,
    ) -> None:
        self.signer = signer
        self.service = service
        self.issuer = issuer
        self.accounts = accounts if accounts is not None else default_accounts()
        self._signing_pem = signer.private_pem()
        self._settings = Settings()
        self._issued: list[IssuedToken] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> TokenIssuer:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="token-issuer", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> TokenIssuer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("token issuer not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    @property
    def credentials(self) -> Mapping[str, str]:
        return MappingProxyType({user: a.password for user, a in self.accounts.items()})

    # -- switches and counters -------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._settings

    @contextlib.contextmanager
    def configured(
        self,
        *,
        lifetime_s: int | None = None,
        expired: bool | None = None,
        fault_status: int | None = None,
    ) -> Iterator[TokenIssuer]:
        """Change settings for the `with` block; the previous settings come back after it."""
        changes: dict[str, object] = {}
        if lifetime_s is not None:
            changes["lifetime_s"] = lifetime_s
        if expired is not None:
            changes["expired"] = expired
        if fault_status is not None:
            if fault_status not in (401, 500):
                raise ValueError("fault_status must be 401 or 500")
            changes["fault_status"] = fault_status
        previous = self._settings
        self._settings = replace(previous, **changes)  # type: ignore[arg-type]
        try:
            yield self
        finally:
            self._settings = previous

    def reset(self) -> None:
        """Default settings (counters keep counting: tests compare before and after)."""
        self._settings = Settings()

    @property
    def tokens_issued(self) -> int:
        with self._lock:
            return len(self._issued)

    @property
    def issued(self) -> tuple[IssuedToken, ...]:
        with self._lock:
            return tuple(self._issued)

    # -- the protocol ----------------------------------------------------------------------

    def answer(self, url: SplitResult, authorization: str | None) -> Answer:
        """Status, JSON body and extra headers for one request (runs in a server thread)."""
        settings = self._settings
        path = url.path
        query = parse_qs(url.query, keep_blank_values=True)
        if settings.fault_status == 500:
            return 500, {"details": "token issuer fault injected by a test"}, {}
        if settings.fault_status == 401:
            return self._unauthorized("token issuer refusal injected by a test")
        if path != "/token":
            return 404, {"details": f"no such endpoint {path}"}, {}
        service = query.get("service", [self.service])[0]
        if service != self.service:
            return 400, {"details": f"unknown service {service!r}"}, {}
        try:
            scopes = parse_scopes(query.get("scope", []))
        except ValueError as error:
            return 400, {"details": str(error)}, {}
        subject = self._authenticate(authorization)
        if subject is None:
            return self._unauthorized("incorrect username or password")
        return 200, self._issue(subject, scopes, settings), {}

    def _unauthorized(self, details: str) -> Answer:
        challenge = {"WWW-Authenticate": 'Basic realm="shifter-test-issuer"'}
        return 401, {"details": details}, challenge

    def _authenticate(self, authorization: str | None) -> str | None:
        """'' for anonymous, the user name for good Basic credentials, None for bad ones."""
        if authorization is None:
            return ""
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        account = self.accounts.get(user)
        if account is None or account.password != password:
            return None
        return user

    def allowed_actions(self, subject: str, scope: Scope) -> list[str]:
        """The requested actions this caller may have, in the order they were asked for."""
        allowed: set[str] = set()
        if scope.type == "repository" and not scope.name.startswith(PRIVATE_PREFIX):
            allowed |= PULL
        account = self.accounts.get(subject) if subject else None
        for grant in account.grants if account else ():
            if grant.allows(scope.type, scope.name):
                allowed |= grant.actions
        if "*" in allowed:
            return list(scope.actions)
        return [a for a in scope.actions if a in allowed]

    def _issue(self, subject: str, scopes: list[Scope], settings: Settings) -> dict[str, object]:
        now = int(time.time())
        # An expired token is one issued long enough ago that even the leeway has run out.
        issued_at = now - EXPIRED_BY_S - settings.lifetime_s if settings.expired else now
        access = tuple(
            {"type": s.type, "name": s.name, "actions": self.allowed_actions(subject, s)}
            for s in scopes
        )
        claims: dict[str, object] = {
            "iss": self.issuer,
            # docker-registry 2.8 rejects `aud` as a list, so it is the plain service name.
            "aud": self.service,
            "sub": subject,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + settings.lifetime_s,
            "jti": uuid.uuid4().hex,
            "access": list(access),
        }
        token = jwt.encode(
            claims, self._signing_pem, algorithm="RS256", headers={"kid": self.signer.kid}
        )
        with self._lock:
            self._issued.append(IssuedToken(subject, tuple(scopes), access, token, claims))
        stamp = datetime.datetime.fromtimestamp(issued_at, datetime.UTC)
        # Both token keys: Docker clients read `token`, OAuth2-minded ones `access_token`.
        # `expires_in` states the lifetime even for expired tokens: the point of that switch
        # is a token the client believes valid and the registry refuses.
        return {
            "token": token,
            "access_token": token,
            "expires_in": settings.lifetime_s,
            "issued_at": stamp.isoformat().replace("+00:00", "Z"),
        }
