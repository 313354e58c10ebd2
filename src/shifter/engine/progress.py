"""Progress of a pull: how many layers and bytes are done, and what stage we are in.

The engine reports to a `PullProgress`; the CLI picks `TerminalProgress` (a tqdm bar on
stderr) when stderr is a terminal and `SilentProgress` otherwise, so logs and pipes stay
clean. Downloads run in several threads, so reports are serialised here.
"""

from __future__ import annotations

import threading
from typing import IO, Protocol


class PullProgress(Protocol):
    def begin(self, layers: int, total_bytes: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def layer_done(self) -> None: ...

    def stage(self, text: str) -> None: ...

    def close(self) -> None: ...


class SilentProgress:
    """Reports nothing (stderr is not a terminal, or a library caller)."""

    def begin(self, layers: int, total_bytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def layer_done(self) -> None:
        pass

    def stage(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class TerminalProgress:
    """One tqdm bar: bytes with rate, the layer count in its description."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._bar: object | None = None
        self._layers = 0
        self._done = 0

    def begin(self, layers: int, total_bytes: int) -> None:
        from tqdm import tqdm  # only a terminal run pays for it

        with self._lock:
            self._layers = layers
            self._bar = tqdm(
                total=total_bytes,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=self._description(),
                file=self._stream,
                leave=False,
                dynamic_ncols=True,
            )

    def _description(self) -> str:
        return f"layers {self._done}/{self._layers}"

    def advance(self, nbytes: int) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.update(nbytes)  # type: ignore[attr-defined]

    def layer_done(self) -> None:
        with self._lock:
            self._done += 1
            if self._bar is not None:
                self._bar.set_description_str(self._description())  # type: ignore[attr-defined]

    def stage(self, text: str) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()  # type: ignore[attr-defined]
                self._bar = None
            self._stream.write(f"{text}\n")
            self._stream.flush()

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()  # type: ignore[attr-defined]
                self._bar = None
