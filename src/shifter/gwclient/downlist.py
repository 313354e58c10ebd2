"""Gateways that did not answer, remembered for a short while across processes.

With two gateways listed and the first one hung, every `shifter` and `shifterimg` call
would wait for it before trying the second. A gateway that did not answer (refused the
connection, or sent nothing within gatewayConnectTimeout) is written here with the time;
for `MEMORY_S` after that, the calls of this user try it last. A gateway that answers is
struck off. When every gateway is down, they are all tried, in their usual order.

The file is the user's own, `$XDG_RUNTIME_DIR/shifter/gateways-down` (else
`~/.cache/shifter/gateways-down`): one `<epoch seconds> <gateway URL>` line per gateway,
replaced atomically. It is used only when its directory belongs to the effective user and
nobody else may write there, so root (setupRoot) never follows a path a user controls.
Nothing here may fail a launch: every error only means no memory.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # `collections` costs `shifterimg lookup` ~1 ms
if TYPE_CHECKING:
    from collections.abc import Mapping

MEMORY_S = 60.0
FILE_NAME = "gateways-down"


def memory_path(environ: Mapping[str, str]) -> str | None:
    """Where this user's list lives, or None when there is no safe place for it."""
    runtime = environ.get("XDG_RUNTIME_DIR")
    home = environ.get("HOME")
    for base, below in ((runtime, "shifter"), (home, ".cache/shifter")):
        if base and os.path.isabs(base) and _owned(base):
            return os.path.join(base, below, FILE_NAME)
    return None


def _owned(directory: str) -> bool:
    try:
        info = os.stat(directory)
    except OSError:
        return False
    return info.st_uid == os.geteuid() and not info.st_mode & 0o022


class DownList:
    """The list in one file (`memory_path`)."""

    def __init__(self, path: str, *, clock: object = time.time) -> None:
        self.path = path
        self._clock = clock

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def down(self) -> dict[str, float]:
        """Gateways found down within MEMORY_S, with when."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return {}
        try:
            text = os.read(fd, 65536).decode("utf-8", "replace")
        except OSError:
            return {}
        finally:
            os.close(fd)
        found = {}
        now = self._now()
        for line in text.splitlines():
            when, _, url = line.partition(" ")
            try:
                seconds = float(when)
            except ValueError:
                continue
            if url and now - MEMORY_S < seconds <= now:
                found[url] = seconds
        return found

    def mark(self, url: str) -> None:
        self._write({**self.down(), url: self._now()})

    def clear(self, url: str) -> None:
        down = self.down()
        if url in down:
            del down[url]
            self._write(down)

    def _write(self, down: Mapping[str, float]) -> None:
        directory = os.path.dirname(self.path)
        temp = f"{self.path}.{os.getpid()}"
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            if not _owned(directory):
                return
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, "".join(f"{when:.3f} {url}\n" for url, when in down.items()
                                     ).encode())
            finally:
                os.close(fd)
            os.replace(temp, self.path)
        except OSError:
            import contextlib  # only on this failure path: the launch never pays for it

            with contextlib.suppress(OSError):
                os.unlink(temp)
