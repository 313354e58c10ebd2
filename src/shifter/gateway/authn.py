"""Who sent a request: the munge credential in its `authentication` header.

The credential is decoded by libmunge against the munged of the platform named in the URL
(`Platforms.<system>.mungeSocketPath`), so each system's clients sign with their own key.
munge vouches for the uid and gid and refuses expired, replayed and forged credentials;
the user name and supplementary groups come from this host's user database (the original
ran `id -G`; remembered for a minute), and the payload may carry registry credentials
(`{"authorized_locations": ...}`).

Every API request except `/`, `queue`, `/metrics`, `/healthz` and the OpenAPI pages must
carry a valid credential. The original let a request without the header through as "nobody", which
opened lookup and list of public images to anyone who could reach the port; here a missing
header is 401.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shifter.gateway.config import GatewayConfig, UnknownPlatformError
from shifter.gateway.failures import BadRequest, Forbidden, Unauthorized, Unavailable
from shifter.gateway.records import Requester
from shifter.munge.libmunge import DecodedCredential, Munge, MungeError, MungeStatus

log = logging.getLogger(__name__)

HEADER = "authentication"
CREDENTIAL_MAX = 64 * 1024
REQUESTER_TTL_S = 60.0
NEW_CREDENTIAL_HINT = "make a new credential for every request (munge -n), signed by the " \
    "munge key of this system"

_REFUSALS: Mapping[MungeStatus, tuple[type[Exception], str]] = {
    MungeStatus.CRED_EXPIRED: (Unauthorized, "expired credential"),
    MungeStatus.CRED_REPLAYED: (Unauthorized, "replayed credential"),
    MungeStatus.CRED_REWOUND: (Unauthorized, "credential from the future (clock skew)"),
    MungeStatus.CRED_UNAUTHORIZED: (Forbidden, "credential not meant for the gateway"),
}


@dataclass(frozen=True)
class Session:
    """An authenticated request: who, and the registry credentials they sent."""

    requester: Requester
    authorized: Mapping[str, str] = field(default_factory=dict, hash=False)


def requester_for(uid: int, gid: int) -> Requester:
    """Name and supplementary groups of a uid from this host's user database."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return Requester(uid=uid, gid=gid)
    try:
        groups = frozenset(os.getgrouplist(name, gid))
    except OSError:
        groups = frozenset()
    return Requester(uid=uid, gid=gid, user=name, groups=groups)


class RequesterCache:
    """`requester_for` remembered for `ttl_s` (a minute): the user database is read
    (getpwuid, getgrouplist) once a minute per (uid, gid) instead of on every request, so
    a change of a user's groups is seen within a minute."""

    def __init__(
        self,
        ttl_s: float = REQUESTER_TTL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 4096,
    ) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._found: dict[tuple[int, int], tuple[float, Requester]] = {}

    def get(self, uid: int, gid: int) -> Requester:
        now = self.clock()
        with self._lock:
            cached = self._found.get((uid, gid))
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        found = requester_for(uid, gid)
        with self._lock:
            if len(self._found) >= self.max_entries:
                self._found.clear()
            self._found[(uid, gid)] = (now, found)
        return found


def authorized_locations(payload: bytes) -> dict[str, str]:
    """The `authorized_locations` of a credential's payload; {} when it has none. A payload
    that is not that JSON document is ignored, as the original ignored it."""
    if not payload.strip():
        return {}
    try:
        document = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        log.warning("ignoring a credential payload that is not JSON")
        return {}
    locations = document.get("authorized_locations") if isinstance(document, dict) else None
    if not isinstance(locations, dict):
        log.warning("ignoring a credential payload without authorized_locations")
        return {}
    return {str(k): v for k, v in locations.items() if isinstance(v, str)}


class Authenticator:
    """Decodes credentials with one libmunge context per platform socket."""

    def __init__(
        self, config: GatewayConfig, munge: Callable[[str], Munge] = Munge
    ) -> None:
        self.config = config
        self._make = munge
        self._lock = threading.Lock()
        self._by_socket: dict[str, Munge] = {}
        self._requesters = RequesterCache()

    def _munge(self, socket_path: str) -> Munge:
        with self._lock:
            found = self._by_socket.get(socket_path)
            if found is None:
                found = self._by_socket[socket_path] = self._make(socket_path)
            return found

    def authenticate(self, system: str, credential: str | None) -> Session:
        """The session of a request to `system`; Unauthorized, Forbidden or Unavailable."""
        if not credential:
            raise Unauthorized(
                "missing authentication header",
                hint=f"send a munge credential in the '{HEADER}' header; {NEW_CREDENTIAL_HINT}",
            )
        if len(credential) > CREDENTIAL_MAX or not credential.isascii():
            raise Unauthorized("invalid credential", hint=NEW_CREDENTIAL_HINT)
        try:
            platform = self.config.platform(system)
        except UnknownPlatformError as error:
            raise BadRequest(error.message, hint=error.hint) from None
        decoded = self._decode(platform.munge_socket_path, credential.strip(), system)
        return Session(
            requester=self._requesters.get(decoded.uid, decoded.gid),
            authorized=authorized_locations(decoded.payload),
        )

    def _decode(self, socket_path: str, credential: str, system: str) -> DecodedCredential:
        try:
            return self._munge(socket_path).decode(credential)
        except MungeError as error:
            refusal = _REFUSALS.get(error.status)
            if refusal is not None:
                kind, message = refusal
                raise kind(message, hint=NEW_CREDENTIAL_HINT) from None
            if error.is_credential_problem:
                raise Unauthorized("invalid credential", hint=NEW_CREDENTIAL_HINT) from None
            log.error("munge for %s at %s: %s", system, socket_path, error)
            raise Unavailable(
                f"cannot verify credentials for {system}: munged is not answering",
                hint="the gateway's administrators must check munged",
            ) from None
