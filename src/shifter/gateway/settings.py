"""How the gateway service runs: leases, polling, request limits.

imagemanager.json says what the gateway does (registries, platforms, timeouts users see);
these say how the process behaves and are rarely changed, so they come from the environment
(`SHIFTER_IMAGEGW_*`, read once at start) with defaults that suit a production site.
Tests shorten the lease so that a killed gateway's job is taken over within seconds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from shifter.errors import ConfigError

ENV_PREFIX = "SHIFTER_IMAGEGW_"


@dataclass(frozen=True)
class ServiceSettings:
    """Each field is read from `SHIFTER_IMAGEGW_<FIELD NAME IN UPPER CASE>`."""

    # A claimed job belongs to its worker until this many seconds after the last renewal;
    # then any gateway may take it over. Renewed every lease/3 seconds.
    lease_s: float = 60.0
    # How often an idle worker looks for work queued by other gateway processes (work
    # accepted by this process wakes it at once).
    poll_s: float = 1.0
    # A failed pull answers FAILURE to re-POSTs for this long, so a polling client sees
    # it and stops; the first pull after that retries (capped by PullUpdateTimeout).
    failure_hold_s: float = 10.0
    # The original's window in which a READY image re-pulled with other ACLs is returned
    # as is rather than re-pulled (its code used 10 s).
    recent_pull_s: float = 10.0
    # A job interrupted this many times (its gateway died each time) fails for good.
    max_attempts: int = 3
    # Request bodies are tiny JSON documents; anything larger is refused with 413, and a
    # body that trickles in slower than this is refused with 408.
    max_body_bytes: int = 64 * 1024
    body_timeout_s: float = 10.0
    # Largest file /api/doimport accepts.
    import_max_bytes: int = 256 << 30
    # Finished jobs are kept this long for the record, then deleted.
    job_retention_s: float = 7 * 24 * 3600.0
    # A lookup may answer from the READY record this process read up to this long ago
    # (0: always read the store). Any change this process writes is seen at once; one
    # written by another gateway process, within this time. A job of a thousand nodes
    # looks its image up a thousand times within a second or two.
    lookup_cache_s: float = 2.0

    # Settings where 0 turns a feature off rather than being a mistake.
    may_be_zero = frozenset({"lookup_cache_s"})

    @property
    def heartbeat_s(self) -> float:
        return self.lease_s / 3

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> ServiceSettings:
        values: dict[str, float | int] = {}
        for spec in fields(cls):
            name = ENV_PREFIX + spec.name.upper()
            text = environ.get(name)
            if text is None or text == "":
                continue
            kind = int if spec.type in ("int", int) else float
            try:
                value = kind(text)
            except ValueError:
                raise ConfigError(
                    f"must be a number, not {text!r}", key=name, hint="unset it for the default"
                ) from None
            if value < 0 or (value == 0 and spec.name not in cls.may_be_zero):
                raise ConfigError(f"must be positive, not {text!r}", key=name)
            values[spec.name] = value
        return cls(**values)  # type: ignore[arg-type]
