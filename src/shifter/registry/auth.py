"""Registry authentication: `WWW-Authenticate` challenges and the token dance.

`parse_challenges` is a pure parser for the header (RFC 9110 section 11: one or more
challenges, each a scheme with a token68 or comma-separated parameters). `RegistryAuth` is
an `httpx.Auth` that answers a registry's 401 the way the distribution spec describes: Basic
credentials for a Basic challenge, or a bearer token fetched from the challenge's realm for
the service and scope the registry asked for.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from dataclasses import dataclass

import httpx

from shifter.errors import ParseError, ShifterError

HEADER = "WWW-Authenticate"
DEFAULT_TOKEN_LIFETIME_S = 60.0  # the token spec's default when `expires_in` is absent
EXPIRY_MARGIN_S = 5.0  # renew a little early so a token does not expire in flight

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_OWS = re.compile(r"[ \t]*")
# RFC 9110's quoted-pair (HTAB, SP, VCHAR, obs-text) and qdtext (the same without `"` and
# `\`), written as what they exclude: the class up to U+10FFFF took 20 ms to compile, at
# every start of `shifter-imagegw`.
_QUOTED_PAIR_OK = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]")
_QDTEXT = re.compile(r'[^\x00-\x08\x0a-\x1f"\\\x7f]+')
_REPOSITORY_PATH = re.compile(r"^/v2/(.+)/(?:manifests|blobs|tags)/")


class RegistryAuthError(ShifterError):
    """The registry or its token server would not let us authenticate."""


@dataclass(frozen=True)
class Challenge:
    """One challenge: a lower-case scheme and its lower-case-named parameters, in order."""

    scheme: str
    params: tuple[tuple[str, str], ...] = ()
    token68: str | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower()
        for key, value in self.params:
            if key == wanted:
                return value
        return default

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes asked for: one `scope` value may hold several, space-separated."""
        return tuple((self.get("scope") or "").split())


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def match(self, pattern: re.Pattern[str]) -> str | None:
        found = pattern.match(self.text, self.pos)
        if found is None or not found.group():
            return None
        self.pos = found.end()
        return found.group()

    def skip_ows(self) -> None:
        self.pos = _OWS.match(self.text, self.pos).end()  # type: ignore[union-attr]

    def skip_separators(self) -> None:
        """Skip optional whitespace and empty list elements (`a, , b` is allowed)."""
        while True:
            self.skip_ows()
            if self.peek() != ",":
                return
            self.pos += 1

    def fail(self, what: str) -> ParseError:
        return ParseError(
            f"{what} at column {self.pos + 1} of {self.text!r}",
            source=HEADER,
            hint="the registry sent a malformed authentication challenge",
        )

    def looks_like_param(self) -> bool:
        """True when a `name =` follows, so a comma continues the current challenge."""
        found = _TOKEN.match(self.text, self.pos)
        if found is None:
            return False
        rest = _OWS.match(self.text, found.end())
        return rest is not None and self.text[rest.end() : rest.end() + 1] == "="

    def quoted_string(self) -> str:
        self.pos += 1  # the opening quote
        out: list[str] = []
        while not self.at_end():
            char = self.peek()
            if char == '"':
                self.pos += 1
                return "".join(out)
            if char == "\\":
                self.pos += 1
                escaped = self.peek()
                if not escaped or not _QUOTED_PAIR_OK.match(escaped):
                    raise self.fail("bad escape in a quoted string")
                out.append(escaped)
                self.pos += 1
                continue
            text = self.match(_QDTEXT)
            if text is None:
                raise self.fail("control character in a quoted string")
            out.append(text)
        raise self.fail("unterminated quoted string")


def parse_challenges(header: str) -> tuple[Challenge, ...]:
    """Every challenge in one `WWW-Authenticate` value, or `ParseError`."""
    scanner = _Scanner(header)
    challenges: list[Challenge] = []
    scanner.skip_separators()
    while not scanner.at_end():
        scheme = scanner.match(_TOKEN)
        if scheme is None:
            raise scanner.fail("expected an authentication scheme")
        challenges.append(_challenge_body(scanner, scheme.lower()))
        scanner.skip_separators()
    if not challenges:
        raise scanner.fail("no authentication challenge")
    return tuple(challenges)


def _challenge_body(scanner: _Scanner, scheme: str) -> Challenge:
    before = scanner.pos
    scanner.skip_ows()
    if scanner.at_end() or scanner.peek() == ",":
        return Challenge(scheme)
    if scanner.pos == before:
        raise scanner.fail("expected a space after the scheme")
    token68 = _TOKEN68.match(scanner.text, scanner.pos)
    if token68 is not None:
        after = _OWS.match(scanner.text, token68.end()).end()  # type: ignore[union-attr]
        if after >= len(scanner.text) or scanner.text[after] == ",":
            scanner.pos = after
            return Challenge(scheme, token68=token68.group())
    params: list[tuple[str, str]] = []
    while True:
        name = scanner.match(_TOKEN)
        if name is None:
            raise scanner.fail("expected a parameter name")
        scanner.skip_ows()
        if scanner.peek() != "=":
            raise scanner.fail(f"expected '=' after parameter {name!r}")
        scanner.pos += 1
        scanner.skip_ows()
        value = scanner.quoted_string() if scanner.peek() == '"' else scanner.match(_TOKEN)
        if value is None:
            raise scanner.fail(f"expected a value for parameter {name!r}")
        if any(key == name.lower() for key, _ in params):
            raise scanner.fail(f"parameter {name!r} given twice")
        params.append((name.lower(), value))
        scanner.skip_ows()
        if scanner.at_end():
            break
        if scanner.peek() != ",":
            raise scanner.fail("expected ',' between parameters")
        resume = scanner.pos
        scanner.skip_separators()
        if scanner.at_end() or not scanner.looks_like_param():
            scanner.pos = resume  # the next token starts a new challenge
            break
    return Challenge(scheme, tuple(params))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_challenges(challenges: Iterable[Challenge]) -> str:
    """A `WWW-Authenticate` value for `challenges` (parameters always quoted)."""
    parts = []
    for challenge in challenges:
        if challenge.token68 is not None:
            parts.append(f"{challenge.scheme} {challenge.token68}")
        elif challenge.params:
            params = ",".join(f"{name}={_quote(value)}" for name, value in challenge.params)
            parts.append(f"{challenge.scheme} {params}")
        else:
            parts.append(challenge.scheme)
    return ", ".join(parts)


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float


# (realm, service, scopes): the token server's answer depends on exactly these.
_TokenKey = tuple[str, str, tuple[str, ...]]
# (origin, repository, writes): requests that will meet the same challenge.
_Route = tuple[str, str, bool]


def _route(request: httpx.Request) -> _Route:
    url = request.url
    found = _REPOSITORY_PATH.match(url.path)
    origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
    return origin, found.group(1) if found else "", request.method not in ("GET", "HEAD")


def _basic_header(credentials: tuple[str, str]) -> str:
    user, password = credentials
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class RegistryAuth(httpx.Auth):
    """Answers registry 401s with Basic credentials or bearer tokens, caching tokens.

    Token requests are sent through the same client as the registry requests, so they share
    its TLS verification, proxies and timeouts. Tokens are cached per (realm, service,
    scope); a route that needed a token gets it up front next time. A token is fetched
    again when it has expired or the registry rejects it; a 401 right after a fresh token
    is returned to the caller, never retried in a loop.
    """

    def __init__(
        self,
        credentials: tuple[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        self._tokens: dict[_TokenKey, _Token] = {}
        self._routes: dict[_Route, _TokenKey | None] = {}  # None: Basic

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        flow = self.auth_flow(request)
        outgoing = next(flow)
        while True:
            response = yield outgoing
            if outgoing is not request:  # a token request: its JSON body is needed
                response.read()
            try:
                outgoing = flow.send(response)
            except StopIteration:
                return

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self.auth_flow(request)
        outgoing = next(flow)
        while True:
            response = yield outgoing
            if outgoing is not request:
                await response.aread()
            try:
                outgoing = flow.send(response)
            except StopIteration:
                return

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        route = _route(request)
        if "authorization" not in request.headers:
            self._authorize_up_front(request, route)
        response = yield request
        fetched = False
        while response.status_code == 401:
            challenge = _preferred(response)
            if challenge is None:
                return
            if challenge.scheme == "basic":
                if self._credentials is None:
                    return
                header = _basic_header(self._credentials)
                if request.headers.get("authorization") == header:
                    return  # the registry refused these credentials
                self._routes[route] = None
            else:
                key = _token_key(challenge, response)
                token = self._usable_token(key, request)
                if token is None:
                    if fetched:
                        return  # a fresh token was refused: the caller sees the 401
                    token = self._store(key, (yield self._token_request(key)))
                    fetched = True
                self._routes[route] = key
                header = f"Bearer {token.value}"
            request.headers["Authorization"] = header
            response = yield request

    def _authorize_up_front(self, request: httpx.Request, route: _Route) -> None:
        if route not in self._routes:
            return
        key = self._routes[route]
        if key is None:
            if self._credentials is not None:
                request.headers["Authorization"] = _basic_header(self._credentials)
            return
        token = self._tokens.get(key)
        if token is not None and token.expires_at > self._clock():
            request.headers["Authorization"] = f"Bearer {token.value}"

    def _usable_token(self, key: _TokenKey, request: httpx.Request) -> _Token | None:
        token = self._tokens.get(key)
        if token is None or token.expires_at <= self._clock():
            return None
        if request.headers.get("authorization") == f"Bearer {token.value}":
            # The registry just refused this very token (expired early, revoked, or too
            # little access): only a new one can help.
            self._tokens.pop(key, None)  # another thread may have dropped it already
            return None
        return token

    def _token_request(self, key: _TokenKey) -> httpx.Request:
        realm, service, scopes = key
        params: list[tuple[str, str]] = []
        if service:
            params.append(("service", service))
        params.extend(("scope", scope) for scope in scopes)
        headers = {}
        if self._credentials is not None:
            params.append(("account", self._credentials[0]))
            headers["Authorization"] = _basic_header(self._credentials)
        return httpx.Request("GET", httpx.URL(realm).copy_merge_params(params), headers=headers)

    def _store(self, key: _TokenKey, response: httpx.Response) -> _Token:
        realm = key[0]
        who = f"user {self._credentials[0]!r}" if self._credentials else "anonymous access"
        if response.status_code != 200:
            raise RegistryAuthError(
                f"token server {realm} refused {who} (HTTP {response.status_code})",
                hint="check the registry user name and password"
                if response.status_code in (401, 403)
                else "the registry's token service is failing; try again later",
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise RegistryAuthError(f"token server {realm} did not answer with JSON") from exc
        value = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise RegistryAuthError(f"token server {realm} answered without a token")
        lifetime = body.get("expires_in")
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME_S
        token = _Token(value, self._clock() + float(lifetime) - EXPIRY_MARGIN_S)
        self._tokens[key] = token
        return token


def _preferred(response: httpx.Response) -> Challenge | None:
    """The challenge we can answer, Bearer before Basic; None when we can answer none."""
    challenges: list[Challenge] = []
    for value in response.headers.get_list(HEADER):
        try:
            challenges.extend(parse_challenges(value))
        except ParseError as exc:
            raise RegistryAuthError(
                f"{response.url.host} sent an unreadable authentication challenge: {exc}",
                hint="the registry is misconfigured or is not a container registry",
            ) from exc
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


def _token_key(challenge: Challenge, response: httpx.Response) -> _TokenKey:
    realm = challenge.get("realm")
    if not realm or not realm.startswith(("http://", "https://")):
        raise RegistryAuthError(
            f"{response.url.host} asked for a bearer token without a usable realm ({realm!r})",
            hint="the registry's token auth is misconfigured",
        )
    return realm, challenge.get("service") or "", challenge.scopes
