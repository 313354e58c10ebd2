"""What every private service (registry, munged, PostgreSQL, a gateway) has in common.

A subclass starts its program with `shifter.proc.spawn` in `start()` and keeps the handle in
`self._process`; this base stops it by its PID (`stop_signal`, then SIGKILL after
`stop_timeout_s`) and makes it a context manager. `free_port` finds a port for services
that must be told theirs.
"""

from __future__ import annotations

import signal
import socket
from types import TracebackType
from typing import Self

from shifter import proc


def free_port() -> int:
    """A loopback port nobody listens on now (the caller binds it soon after)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServiceProcess:
    stop_signal: int = signal.SIGTERM
    stop_timeout_s: float = 10.0

    def __init__(self) -> None:
        self._process: proc.Process[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            proc.stop(process, timeout=self.stop_timeout_s, signum=self.stop_signal)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
