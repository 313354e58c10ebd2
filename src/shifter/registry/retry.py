"""Bounded retries with exponential backoff for registry requests.

A request is retried on a dropped connection and on statuses that mean "not now" (5xx,
429, 408). The budget is a count of failures in a row and a time without progress; both
restart when bytes arrive, so a long download over a flaky link keeps going while a
registry that answers 500 forever is given up on within seconds.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import httpx

from shifter.registry.errors import RegistryError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: `attempts` failures in a row, or `deadline_s` seconds without any
    progress, end a request; the delay doubles from `first_delay_s` up to `max_delay_s`."""

    attempts: int = 5
    first_delay_s: float = 0.5
    max_delay_s: float = 10.0
    deadline_s: float = 120.0


class Retrier:
    """Counts the failures of one logical request and sleeps between tries."""

    def __init__(self, policy: RetryPolicy, what: str) -> None:
        self.policy = policy
        self.what = what
        self.failures = 0
        self.since = time.monotonic()

    def progressed(self) -> None:
        self.failures = 0
        self.since = time.monotonic()

    def failed(self, reason: str, retry_after: float | None = None) -> None:
        """Sleep before the next try, or raise `RegistryError` when the budget is spent."""
        self.failures += 1
        delay = min(self.policy.max_delay_s, self.policy.first_delay_s * 2 ** (self.failures - 1))
        delay *= random.uniform(0.5, 1.0)  # jitter: a thousand pulls do not retry in step
        if retry_after is not None:
            delay = min(max(delay, retry_after), self.policy.max_delay_s)
        elapsed = time.monotonic() - self.since
        if self.failures >= self.policy.attempts or elapsed + delay > self.policy.deadline_s:
            raise RegistryError(
                f"giving up on {self.what} after {self.failures} attempts "
                f"in {elapsed:.0f} s: {reason}",
                hint="the registry or the network is failing; try again later",
            )
        log.warning("%s: %s; retrying in %.1f s", self.what, reason, delay)
        time.sleep(delay)


def retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (the HTTP-date form is rare from registries and ignored)."""
    value = response.headers.get("retry-after", "").strip()
    return float(value) if value.isdigit() else None


def transport_reason(exc: httpx.TransportError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
