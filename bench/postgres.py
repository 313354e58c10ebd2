"""The gateway benchmark's PostgreSQL: `shifter.devtools.postgres`, with fsync on (the
default, as a gateway's store would run). Re-exported here for `bench.gateway` and
`bench.gateway_server`."""

from __future__ import annotations

from shifter.devtools.postgres import PostgresServer
from shifter.devtools.service import free_port

__all__ = ["PostgresServer", "free_port"]
