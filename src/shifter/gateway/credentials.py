"""Registry credentials from a request's `authorized_locations`, held only in memory.

The C client sends every credential the user saved with `shifterimg login` for this system,
keyed by location name or "default" (seed, "Specifications for authorized locations"). The
credential for a pull is the one named after its location; "default" is used only when the
location is the gateway's DefaultImageLocation and no credential names it. (The original
used "default" for any location, which hands a user's default password to every registry.)

Credentials are never written to the store or a log. The process that accepted a pull keeps
them in its `CredentialVault` until a worker of the same process has finished the job; see
`store_jobs` for what happens when that process stops first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

DEFAULT_LOCATION_KEY = "default"
# A pull the client has stopped caring about should not pin a password forever.
VAULT_TTL_S = 24 * 3600.0


@dataclass(frozen=True)
class RegistryCredentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never in a traceback or log line
        return f"RegistryCredentials(username={self.username!r}, password=<hidden>)"

    def as_tuple(self) -> tuple[str, str]:
        return self.username, self.password


def parse_credential(text: str) -> RegistryCredentials | None:
    """`user:password` (the password may hold colons, which the original dropped)."""
    username, colon, password = text.partition(":")
    if not colon or not username:
        return None
    return RegistryCredentials(username, password)


def credentials_for(
    location: str, authorized: Mapping[str, str], default_location: str
) -> RegistryCredentials | None:
    """The credential to pull from `location` with, or None for anonymous access."""
    text = authorized.get(location)
    if text is None and location == default_location:
        text = authorized.get(DEFAULT_LOCATION_KEY)
    return parse_credential(text) if text else None


class CredentialVault:
    """Credentials of accepted pulls in this process's memory.

    Keyed by a random reference that the job stores (the reference is no secret: it only
    finds the credentials in the memory of the process holding them). A reference is never
    reused, so credentials put for a transaction that then lost a race cannot end up
    attached to someone else's job."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[str, tuple[float, RegistryCredentials]] = {}

    def put(self, reference: str, credentials: RegistryCredentials) -> None:
        with self._lock:
            self._forget_stale()
            self._held[reference] = (self._clock() + VAULT_TTL_S, credentials)

    def get(self, reference: str) -> RegistryCredentials | None:
        with self._lock:
            entry = self._held.get(reference)
        return entry[1] if entry is not None else None

    def discard(self, reference: str) -> None:
        """Forget credentials (their job finished, or was never created)."""
        with self._lock:
            self._held.pop(reference, None)

    def _forget_stale(self) -> None:
        now = self._clock()
        for key in [key for key, (until, _) in self._held.items() if until < now]:
            del self._held[key]
