"""Reading a layer's tar headers while the layer downloads, instead of after.

The plan needs every header of every layer, which means inflating each layer once before the
image can be built; done after the download, that is time nothing else uses. A `HeaderFeed`
takes the blob's bytes as the download writes them and reads the headers in a thread of its
own (zlib and zstd release the GIL while they inflate), so the plan of a layer is ready
moments after its last byte arrived.

The bytes are not trusted more than a file's: the download verifies the blob's digest, and
a pull that fails verification fails whatever the feed read. Memory is bounded: the writer
waits while `max_buffered` bytes are queued, so a slow reader slows the download instead of
holding the layer in memory.
"""

from __future__ import annotations

import collections
import threading
from pathlib import Path

from shifter.convert.layers import Header, read_stream_headers

FEED_BUFFER = 8 << 20  # queued, not yet read, per layer
_HEAD = 8  # bytes needed to tell the compression


class _Aborted(Exception):
    """The feed was abandoned; the reader thread stops quietly."""


class HeaderFeed:
    """Bytes of one layer blob in (`write`, from one thread), its headers out (`headers`)."""

    def __init__(self, path: Path, *, max_buffered: int = FEED_BUFFER) -> None:
        """`path` is where the blob will be, for messages about a bad layer."""
        self._path = path
        self._max = max_buffered
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._received = 0
        self._closed = False  # the writer is done
        self._aborted = False
        self._reading = True  # the reader thread wants more
        self._headers: list[Header] | None = None
        self._error: BaseException | None = None
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"plan-{path.name[:12]}")
        self._thread.daemon = True  # never keeps a failing process alive; joined normally
        self._thread.start()

    # --- the writer's side (the download) ---

    def write(self, data: bytes) -> None:
        """The next bytes of the blob; waits while the reader is `max_buffered` behind."""
        with self._ready:
            self._received += len(data)
            while self._queued >= self._max and self._reading and not self._aborted:
                self._ready.wait()
            if self._reading and not self._aborted and data:
                self._queue.append(bytes(data))
                self._queued += len(data)
                self._ready.notify_all()

    def abort(self) -> None:
        """Give up: the bytes no longer match the blob (the download started over), or the
        pull failed. `headers()` then returns None. Harmless after `close`."""
        with self._ready:
            self._aborted = True
            self._queue.clear()
            self._queued = 0
            self._ready.notify_all()
        self._thread.join()

    def headers(self, size: int) -> list[Header] | None:
        """Close the feed and wait for the reader: the layer's headers, or None when they
        must be read from the file instead (aborted, or the feed did not get all `size`
        bytes of the blob). A layer that is not a readable tar raises `LayerError`."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._thread.join()
        if self._aborted or self._received != size:
            return None
        if self._error is not None:
            raise self._error
        return self._headers

    # --- the reader's side (this feed's thread) ---

    def read(self, size: int = -1) -> bytes:
        with self._ready:
            while not self._queue and not self._closed and not self._aborted:
                self._ready.wait()
            if self._aborted:
                raise _Aborted
            if not self._queue:
                return b""  # end of the blob
            chunk = self._queue.popleft()
            if 0 <= size < len(chunk):
                self._queue.appendleft(chunk[size:])
                chunk = chunk[:size]
            self._queued -= len(chunk)
            self._ready.notify_all()
            return chunk

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _run(self) -> None:
        try:
            head = b""
            while len(head) < _HEAD and (more := self.read(_HEAD - len(head))):
                head += more
            if head:
                with self._ready:
                    self._queue.appendleft(head)
                    self._queued += len(head)
            self._headers = read_stream_headers(self, head, self._path)
        except _Aborted:
            pass
        except BaseException as exc:  # handed to whoever asks for the headers
            self._error = exc
        finally:
            with self._ready:
                self._reading = False  # the rest of the blob (past the tar's end) is not needed
                self._queue.clear()
                self._queued = 0
                self._ready.notify_all()
