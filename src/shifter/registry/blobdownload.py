"""One blob into one file: resume with `Range`, restart when we must, verify at the end.

The file may already hold the start of the blob (a download interrupted in this run or an
earlier one); those bytes are hashed again and the rest is asked for with
`Range: bytes=N-`. A 206 is used only if its `Content-Range` starts exactly at N and ends
at the blob's last byte; a 200 (the server ignores ranges) starts the file over. Nothing is
held in memory beyond one chunk.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from typing import BinaryIO, Protocol

import httpx

from shifter.errors import ShifterError
from shifter.registry.errors import DigestMismatchError, RegistryError
from shifter.registry.manifest import Descriptor
from shifter.registry.retry import Retrier, RetryPolicy, transport_reason

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class BlobSource(Protocol):
    """What a download needs from the client: retried GETs and its error mapping."""

    retry: RetryPolicy

    def get(self, path: str, headers: dict[str, str], retrier: Retrier) -> httpx.Response: ...

    def refused(self, response: httpx.Response, what: str) -> ShifterError: ...


class BlobDownload:
    """Complete `partial` with blob `descriptor` from `source`, then check size and sha256."""

    def __init__(
        self,
        source: BlobSource,
        repository: str,
        descriptor: Descriptor,
        partial: BinaryIO,
        what: str,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.source = source
        self.path = f"/v2/{repository}/blobs/{descriptor.digest}"
        self.descriptor = descriptor
        self.file = partial
        self.what = f"blob {descriptor.digest[:19]} of {what}"
        self.progress = progress or (lambda _: None)
        self.hasher = hashlib.sha256()
        self.offset = 0

    def run(self) -> None:
        resumed_from_disk = self._hash_existing()
        retrier = Retrier(self.source.retry, f"downloading {self.what}")
        while True:
            if self.offset < self.descriptor.size:
                self._fetch_rest(retrier)
            digest = "sha256:" + self.hasher.hexdigest()
            if self.offset == self.descriptor.size and digest == self.descriptor.digest:
                return
            if resumed_from_disk:
                # A partial file left by an earlier run may itself be damaged: start over once.
                log.warning("%s: resumed download does not verify; starting over", self.what)
                self._restart()
                resumed_from_disk = False
                continue
            raise DigestMismatchError(
                f"{self.what} does not match its digest: expected {self.descriptor.digest}, "
                f"got {digest} ({self.offset} of {self.descriptor.size} bytes)",
                hint="the registry or something between us altered it; nothing was kept",
            )

    def _hash_existing(self) -> bool:
        """Hash what the file holds already; True when there is something to resume."""
        self.file.seek(0)
        while chunk := self.file.read(CHUNK):
            if self.offset + len(chunk) > self.descriptor.size:
                self._restart()
                return False
            self.hasher.update(chunk)
            self.offset += len(chunk)
        self.progress(self.offset)
        return self.offset > 0

    def _restart(self) -> None:
        self.progress(-self.offset)
        self.file.seek(0)
        self.file.truncate()
        self.hasher = hashlib.sha256()
        self.offset = 0

    def _fetch_rest(self, retrier: Retrier) -> None:
        """Ask for the missing bytes until we have them all or the retry budget is spent."""
        while self.offset < self.descriptor.size:
            headers = {"Accept-Encoding": "identity"}
            if self.offset:
                headers["Range"] = f"bytes={self.offset}-"
            before = self.offset
            with contextlib.closing(self.source.get(self.path, headers, retrier)) as response:
                if not self._usable(response, retrier):
                    continue
                before = self.offset
                try:
                    self._stream(response)
                except httpx.TransportError as exc:
                    reason = f"connection lost: {transport_reason(exc)}"
                else:
                    reason = f"incomplete body ({self.offset} of {self.descriptor.size} bytes)"
            if self.offset < self.descriptor.size:
                if self.offset > before:
                    retrier.progressed()
                retrier.failed(reason)

    def _usable(self, response: httpx.Response, retrier: Retrier) -> bool:
        """Whether the body continues our file; a 200 to a range request starts over."""
        status = response.status_code
        size = self.descriptor.size
        if status == 404:
            raise RegistryError(
                f"{self.what} is missing from the registry",
                hint="the image was changed or deleted while we pulled it; pull it again",
            )
        if status == 206 and self.offset:
            if _content_range(response) in (
                (self.offset, size - 1, size),
                (self.offset, size - 1, None),
            ):
                return True
            self._restart()
            retrier.failed(f"unexpected Content-Range {response.headers.get('content-range')!r}")
            return False
        if status == 200:
            if self.offset:
                log.info("%s: the server ignored Range; downloading from the start", self.what)
                self._restart()
            return True
        if status == 416 and self.offset:
            self._restart()
            retrier.failed("the server refused to resume (HTTP 416)")
            return False
        raise self.source.refused(response, self.what)

    def _stream(self, response: httpx.Response) -> None:
        # Raw bytes: a Content-Encoding some object store adds must not be undone, the
        # digest is over the stored blob. No chunk size: httpx would hold bytes back to
        # fill a chunk, and lose them if the connection drops meanwhile.
        for chunk in response.iter_raw():
            if self.offset + len(chunk) > self.descriptor.size:
                raise DigestMismatchError(
                    f"{self.what} is larger than the {self.descriptor.size} bytes its "
                    "manifest says",
                    hint="the registry or something between us altered it; nothing was kept",
                )
            self.file.write(chunk)
            self.hasher.update(chunk)
            self.offset += len(chunk)
            self.progress(len(chunk))


def _content_range(response: httpx.Response) -> tuple[int, int, int | None] | None:
    """(first, last, total) of `Content-Range: bytes FIRST-LAST/TOTAL` (total None for
    `*`); None when the header is missing or unreadable."""
    unit, _, rest = response.headers.get("content-range", "").partition(" ")
    span, _, total = rest.partition("/")
    first, _, last = span.partition("-")
    if unit.strip().lower() != "bytes" or not first.isdigit() or not last.isdigit():
        return None
    if total != "*" and not total.isdigit():
        return None
    return int(first), int(last), None if total == "*" else int(total)
