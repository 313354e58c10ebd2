"""The layer cache: blobs stored by digest, shared by every pull on the host.

Layout under the cache root (CacheDirectory):

    sha256/<hex>     a complete, verified blob; never written in place
    partial/<hex>    the download in progress (kept after a network failure for resume)
    locks/<hex>      the lock file of that digest (flock; empty, never removed)

A blob appears under `sha256/` only by `rename(2)` of a partial file that was verified and
fsynced, so a reader sees the whole blob or nothing. Whoever holds the digest's flock owns
its partial file: two processes (or two threads: each opens its own descriptor, and flock
locks belong to open file descriptions) never write the same partial, and the second one
finds the blob complete once it gets the lock. flock is released by the kernel when a
process dies, so a killed pull leaves no stale lock, only a partial file to resume from.

Such a partial file is worth keeping for a while (the same image is often pulled again
soon), not for ever: opening the cache removes partial files nobody holds the lock of and
nobody wrote to for `STALE_PARTIAL_S`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from shifter.registry.errors import BlobCacheError, DigestMismatchError
from shifter.registry.manifest import DIGEST, Descriptor, check_digest

log = logging.getLogger(__name__)

CACHE_HINT = "free space there, or choose another cache directory (CacheDirectory, --cache)"
STALE_PARTIAL_S = 24 * 3600.0  # an interrupted download is resumed within a day, or removed


def _cache_error(what: str, path: Path, exc: OSError) -> BlobCacheError:
    detail = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        detail = "no space left" if exc.errno == errno.ENOSPC else "disk quota exceeded"
    return BlobCacheError(f"cannot {what} in the layer cache {path}: {detail}", hint=CACHE_HINT)


def fsync_directory(path: Path) -> None:
    """Make a rename in `path` durable (also used for the engine's image files)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobCache:
    """Content-addressed blobs under `root`; safe to share between threads and processes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.blobs = self.root / "sha256"
        self.partials = self.root / "partial"
        self.locks = self.root / "locks"

    def prepare(self) -> BlobCache:
        """Create the directories and remove stale partial files (`reap_partials`);
        BlobCacheError when the root cannot be used."""
        for directory in (self.blobs, self.partials, self.locks):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _cache_error("create directories", self.root, exc) from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise BlobCacheError(f"the layer cache {self.root} is not writable", hint=CACHE_HINT)
        self.reap_partials(STALE_PARTIAL_S)
        return self

    def reap_partials(self, stale_after_s: float) -> list[str]:
        """Remove the partial files last written more than `stale_after_s` ago whose lock
        nobody holds (a pull killed mid-download, never resumed); their hex digests.

        A partial file whose lock is held is being downloaded, whatever its age; its age is
        checked again under the lock, since a pull may have resumed it meanwhile. Failures
        are logged, never raised: a pull must not fail over another pull's leftovers.
        """
        removed: list[str] = []
        try:
            with os.scandir(self.partials) as entries:
                candidates = [
                    entry.name
                    for entry in entries
                    if _is_hex_digest(entry.name)  # anything else is not ours to remove
                    and entry.is_file(follow_symlinks=False)
                    and self._stale(entry.path, stale_after_s)
                ]
        except OSError as exc:
            log.warning("cannot list %s: %s", self.partials, exc.strerror or exc)
            return removed
        for hex_digest in candidates:
            try:
                with self._locked(hex_digest, wait=False) as held:
                    partial = self.partials / hex_digest
                    if held and self._stale(partial, stale_after_s):
                        size = partial.stat().st_size
                        partial.unlink()
                        removed.append(hex_digest)
                        log.info("removed a stale partial download %s (%d bytes)", partial, size)
            except (OSError, BlobCacheError) as exc:
                log.warning("cannot remove the stale partial download %s: %s", hex_digest, exc)
        return removed

    @staticmethod
    def _stale(path: str | os.PathLike[str], stale_after_s: float) -> bool:
        try:
            return os.stat(path, follow_symlinks=False).st_mtime < time.time() - stale_after_s
        except FileNotFoundError:
            return False  # finished (renamed into sha256/) or reaped by someone else

    def path(self, digest: str) -> Path:
        return self.blobs / check_digest(digest, "layer cache").split(":", 1)[1]

    def cached(self, descriptor: Descriptor) -> Path | None:
        """The blob's path if a complete copy is here (same size; content was verified
        before it was renamed into place)."""
        path = self.path(descriptor.digest)
        try:
            return path if path.stat().st_size == descriptor.size else None
        except FileNotFoundError:
            return None

    def fetch(self, descriptor: Descriptor, download: Callable[[BinaryIO], None]) -> Path:
        """The blob's path, calling `download(partial_file)` first if it is not cached.

        `download` completes the file (it may hold the start of the blob already) and
        verifies it. On DigestMismatchError or a local I/O error the partial file is
        removed; after a network failure it is kept for the next attempt to resume.
        """
        found = self.cached(descriptor)
        if found is not None:
            return found
        hex_digest = descriptor.digest.split(":", 1)[1]
        with self._locked(hex_digest):
            found = self.cached(descriptor)
            if found is not None:
                log.debug("%s was downloaded by another pull", descriptor.digest)
                return found
            final = self.path(descriptor.digest)
            final.unlink(missing_ok=True)  # a wrong-sized leftover is corrupt
            partial = self.partials / hex_digest
            self._download_into(partial, download)
            try:
                os.replace(partial, final)
                fsync_directory(self.blobs)
            except OSError as exc:
                partial.unlink(missing_ok=True)
                raise _cache_error("store a layer", self.root, exc) from exc
        return final

    def _download_into(self, partial: Path, download: Callable[[BinaryIO], None]) -> None:
        try:
            fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _cache_error("create a download file", self.root, exc) from exc
        file = os.fdopen(fd, "r+b")
        try:
            download(file)
            file.flush()
            os.fsync(file.fileno())
            file.close()
        except DigestMismatchError:
            _discard(file, partial)
            raise
        except OSError as exc:
            _discard(file, partial)
            raise _cache_error("write a layer", self.root, exc) from exc
        except BaseException:
            # A network failure: what arrived is kept for the next try to resume from.
            try:
                file.close()
                keep = partial.stat().st_size > 0
            except OSError:
                keep = False
            if not keep:
                _discard(file, partial)
            raise

    @contextlib.contextmanager
    def _locked(self, hex_digest: str, *, wait: bool = True) -> Iterator[bool]:
        """Hold the digest's lock; without `wait`, yields False at once if another holds it."""
        lock_path = self.locks / hex_digest
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _cache_error("create a lock file", self.root, exc) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    yield False
                    return
                log.info("waiting for another pull to finish downloading sha256:%s", hex_digest)
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield True
        finally:
            os.close(fd)  # closing the last descriptor releases the lock


def _is_hex_digest(name: str) -> bool:
    return DIGEST.fullmatch(f"sha256:{name}") is not None


def _discard(file: BinaryIO, partial: Path) -> None:
    """Remove a partial file whose content is wrong or could not be written."""
    with contextlib.suppress(OSError):
        file.close()  # may fail flushing onto a full disk; the file goes anyway
    partial.unlink(missing_ok=True)
