"""The layer cache: blobs stored by digest, shared by every pull on the host.

Layout under the cache root (CacheDirectory):

    sha256/<hex>     a complete, verified blob; never written in place
    partial/<hex>    the download in progress (kept after a network failure for resume)
    locks/<hex>      the lock file of that digest (flock; empty, removed with its blob)

A blob appears under `sha256/` only by `rename(2)` of a partial file that was verified and
fsynced, so a reader sees the whole blob or nothing. Whoever holds the digest's flock owns
its partial file: two processes (or two threads: each opens its own descriptor, and flock
locks belong to open file descriptions) never write the same partial, and the second one
finds the blob complete once it gets the lock. flock is released by the kernel when a
process dies, so a killed pull leaves no stale lock, only a partial file to resume from.

Such a partial file is worth keeping for a while (the same image is often pulled again
soon), not for ever: opening the cache removes partial files nobody holds the lock of and
nobody wrote to for `STALE_PARTIAL_S`.

The cache is kept under a size by `prune`, least recently used blobs first. A pull *pins*
each blob it uses (a shared flock on the blob file, from `cached`/`fetch` until `release`)
and marks it used (its mtime); `prune` removes a blob only while holding its lock file and
an exclusive flock on the blob, so never one a running pull uses, and removes the lock file
with it. Whoever takes a lock checks afterwards that the path still names the file it
locked (`_locked`, `_pin`), so a file removed meanwhile is never mistaken for the live one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class PruneResult:
    """What `prune` did (or, dry, would do): the blobs removed (hex digest, bytes), the
    bytes of blobs before and after, and how many it left because a pull uses them."""

    removed: tuple[tuple[str, int], ...]
    bytes_before: int
    bytes_after: int
    in_use: int


class BlobCache:
    """Content-addressed blobs under `root`; safe to share between threads and processes.
    One instance per pull: it holds that pull's pins until `release`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.blobs = self.root / "sha256"
        self.partials = self.root / "partial"
        self.locks = self.root / "locks"
        self._pins: dict[str, int] = {}
        self._pins_lock = threading.Lock()

    def prepare(self) -> BlobCache:
        """Create the directories and remove stale partial files (`reap_partials`);
        BlobCacheError when the root cannot be used."""
        for directory in (self.blobs, self.partials, self.locks):
            try:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
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
        before it was renamed into place), pinned for this pull."""
        path = self.path(descriptor.digest)
        try:
            if path.stat().st_size != descriptor.size:
                return None
        except FileNotFoundError:
            return None
        return path if self._pin(path) else None

    def _pin(self, path: Path) -> bool:
        """Hold a shared flock on the blob until `release` and mark it used; False when it
        is gone or being pruned."""
        with self._pins_lock:
            if path.name in self._pins:
                return True
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return False
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                if os.fstat(fd).st_ino != path.stat().st_ino:
                    raise FileNotFoundError(path)  # pruned between open and flock
                os.utime(fd)
            except (BlockingIOError, FileNotFoundError):
                os.close(fd)
                return False
            except OSError:
                os.close(fd)
                raise
            self._pins[path.name] = fd
            return True

    def release(self) -> None:
        """Unpin every blob this instance pinned (the pull is done with them)."""
        with self._pins_lock:
            pins, self._pins = self._pins, {}
        for fd in pins.values():
            os.close(fd)

    def prune(self, limit_bytes: int, *, dry_run: bool = False) -> PruneResult:
        """Remove the least recently used blobs until their total is at most `limit_bytes`,
        skipping any a pull uses, and the lock files of digests with no blob or download
        left. With `dry_run`, only say what would go."""
        blobs = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self.blobs) as entries:
            for entry in entries:
                if _is_hex_digest(entry.name) and entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    blobs.append((info.st_mtime, entry.name, info.st_size))
        before = total = sum(size for _, _, size in blobs)
        removed: list[tuple[str, int]] = []
        in_use = 0
        for _, hex_digest, size in sorted(blobs):
            if total <= limit_bytes:
                break
            if self._remove_blob(hex_digest, dry_run):
                removed.append((hex_digest, size))
                total -= size
            else:
                in_use += 1
        if not dry_run:
            self._remove_orphan_locks()
        if removed:
            log.info("layer cache %s: %s %d blob(s), %d of %d bytes left", self.root,
                     "would remove" if dry_run else "removed", len(removed), total, before)
        return PruneResult(tuple(removed), before, total, in_use)

    def _remove_blob(self, hex_digest: str, dry_run: bool) -> bool:
        """Remove one blob and its lock file unless a pull holds either; False if one does."""
        path = self.blobs / hex_digest
        with self._locked(hex_digest, wait=False) as held:
            if not held:
                return False
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return True  # removed by another prune meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False  # pinned by a running pull
            try:
                if not dry_run:
                    path.unlink()
                    (self.locks / hex_digest).unlink(missing_ok=True)
            finally:
                os.close(fd)
            return True

    def _remove_orphan_locks(self) -> None:
        with contextlib.suppress(FileNotFoundError), os.scandir(self.locks) as entries:
            names = [entry.name for entry in entries if _is_hex_digest(entry.name)]
        for hex_digest in names:
            if (self.blobs / hex_digest).exists() or (self.partials / hex_digest).exists():
                continue
            with self._locked(hex_digest, wait=False, create=False) as held:
                if held and not (self.partials / hex_digest).exists():
                    (self.locks / hex_digest).unlink(missing_ok=True)

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
                self._pin(final)
            except OSError as exc:
                partial.unlink(missing_ok=True)
                raise _cache_error("store a layer", self.root, exc) from exc
        return final

    def _download_into(self, partial: Path, download: Callable[[BinaryIO], None]) -> None:
        try:
            fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
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
    def _locked(
        self, hex_digest: str, *, wait: bool = True, create: bool = True
    ) -> Iterator[bool]:
        """Hold the digest's lock; without `wait`, yields False at once if another holds it
        (or, without `create`, if there is no lock file)."""
        lock_path = self.locks / hex_digest
        while True:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0),
                             0o600)
            except FileNotFoundError:
                if create:
                    raise
                yield False
                return
            except OSError as exc:
                raise _cache_error("create a lock file", self.root, exc) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    os.close(fd)
                    yield False
                    return
                log.info("waiting for another pull to finish downloading sha256:%s", hex_digest)
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, lock_path):
                break
            os.close(fd)  # pruned while we waited: lock the file that is there now
        try:
            yield True
        finally:
            os.close(fd)  # closing the last descriptor releases the lock


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def _is_hex_digest(name: str) -> bool:
    return DIGEST.fullmatch(f"sha256:{name}") is not None


def _discard(file: BinaryIO, partial: Path) -> None:
    """Remove a partial file whose content is wrong or could not be written."""
    with contextlib.suppress(OSError):
        file.close()  # may fail flushing onto a full disk; the file goes anyway
    partial.unlink(missing_ok=True)
