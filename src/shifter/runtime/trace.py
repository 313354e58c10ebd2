"""Launch steps and their durations, logged at debug level with `--verbose`.

Without `--verbose` nothing is imported or formatted: `logging` alone costs the launch
path several milliseconds.
"""

from __future__ import annotations

import time


class Steps:
    """`done(name)` logs the time since the previous step (and since the start)."""

    __slots__ = ("last", "log", "start")

    def __init__(self, enabled: bool) -> None:
        self.start = self.last = time.monotonic()
        self.log = None
        if enabled:
            import logging

            self.log = logging.getLogger("shifter.launch")

    def done(self, name: str) -> None:
        if self.log is None:
            return
        now = time.monotonic()
        self.log.debug(
            "%s: %.1f ms (%.1f ms since start)",
            name,
            (now - self.last) * 1000,
            (now - self.start) * 1000,
        )
        self.last = now
