"""`GET /healthz`: whether this gateway process can serve requests now, for load balancers
and monitoring (docs/gateway.md, "Health").

Healthy means: the metadata store answers a query, and for every platform a credential
made through its munged socket decodes through it (the path every request's credential
takes). The answer is 200 `{"status": "ok"}`, or 503 `{"status": "failing", "problems":
[...]}` with one line per failing part. Probes may come every second from several load
balancers: a result is reused for at most `MAX_AGE_S`, and one check runs at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import text

from shifter.errors import ShifterError
from shifter.gateway.config import GatewayConfig
from shifter.gateway.store import MetadataStore
from shifter.munge.libmunge import Munge

MAX_AGE_S = 1.0


class HealthCheck:
    """The checks of one gateway process, with their last result."""

    def __init__(
        self,
        config: GatewayConfig,
        store: Callable[[], MetadataStore],
        *,
        munge: Callable[[str], Munge] = Munge,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.store = store
        self.munge = munge
        self.clock = clock
        self._lock = threading.Lock()
        self._last: tuple[float, tuple[str, ...]] | None = None

    def problems(self) -> tuple[str, ...]:
        """What is failing now (empty: healthy), at most MAX_AGE_S old."""
        with self._lock:
            now = self.clock()
            if self._last is None or now - self._last[0] >= MAX_AGE_S:
                self._last = (now, tuple(self._check()))
            return self._last[1]

    def _check(self) -> list[str]:
        found = []
        try:
            with self.store().reading() as conn:
                conn.execute(text("SELECT 1"))
        except ShifterError as error:
            found.append(f"metadata store: {error.message}")
        for name, platform in sorted(self.config.platforms.items()):
            socket_path = platform.munge_socket_path
            try:
                munge = self.munge(socket_path)
                munge.decode(munge.encode())
            except ShifterError as error:
                found.append(f"munge of platform {name} at {socket_path}: {error.message}")
        return found
