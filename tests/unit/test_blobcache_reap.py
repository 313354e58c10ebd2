"""Stale partial downloads in the layer cache: removed when nobody holds their lock and
nobody wrote to them for a day; kept while another process holds the lock, whatever their
age, and kept while recent (a pull may resume them)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from shifter.registry.blobcache import STALE_PARTIAL_S, BlobCache
from shifter.registry.manifest import Descriptor

DAY = 24 * 3600


def digest_hex(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def partial(cache: BlobCache, hex_digest: str, *, age_s: float, data: bytes = b"start") -> Path:
    path = cache.partials / hex_digest
    path.write_bytes(data)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


@contextmanager
def lock_held_elsewhere(lock: Path) -> Iterator[int]:
    """Another process holding the flock of `lock` (as a pull downloading it would); its pid."""
    code = (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        yield holder.pid
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # it exits at end of input, releasing the lock
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            holder.kill()  # by its pid: only the process this test started
            holder.wait()


def test_a_stale_unlocked_partial_is_removed_on_opening_the_cache(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path).prepare()
    stale = partial(cache, digest_hex(1), age_s=STALE_PARTIAL_S + 60)
    BlobCache(tmp_path).prepare()
    assert not stale.exists()


def test_a_recent_partial_is_kept_for_resuming(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path).prepare()
    recent = partial(cache, digest_hex(2), age_s=STALE_PARTIAL_S - 600)
    BlobCache(tmp_path).prepare()
    assert recent.read_bytes() == b"start"


def test_a_partial_whose_lock_another_process_holds_is_kept_whatever_its_age(
    tmp_path: Path,
) -> None:
    cache = BlobCache(tmp_path).prepare()
    held = partial(cache, digest_hex(3), age_s=30 * DAY)
    free = partial(cache, digest_hex(4), age_s=30 * DAY)
    with lock_held_elsewhere(cache.locks / digest_hex(3)):
        assert cache.reap_partials(STALE_PARTIAL_S) == [digest_hex(4)]
        assert held.exists() and not free.exists()
    # Once the holder is gone (killed mid-download, say) the file is fair game.
    assert cache.reap_partials(STALE_PARTIAL_S) == [digest_hex(3)]
    assert not held.exists()


def test_files_that_are_not_partial_downloads_are_left_alone(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path).prepare()
    others = [partial(cache, name, age_s=30 * DAY) for name in ("notes.txt", digest_hex(5)[:63])]
    (cache.partials / "subdir").mkdir()
    assert cache.reap_partials(STALE_PARTIAL_S) == []
    assert all(path.exists() for path in others)


def test_a_fetch_after_reaping_downloads_the_blob_whole(tmp_path: Path) -> None:
    blob = b"the whole blob"
    digest = hashlib.sha256(blob).hexdigest()
    cache = BlobCache(tmp_path).prepare()
    partial(cache, digest, age_s=2 * DAY, data=b"stale garbage")
    cache = BlobCache(tmp_path).prepare()
    written: list[int] = []

    def download(file: BinaryIO) -> None:
        written.append(file.seek(0, os.SEEK_END))  # a download resumes from the file's end
        file.write(blob)

    descriptor = Descriptor("application/octet-stream", f"sha256:{digest}", len(blob))
    path = cache.fetch(descriptor, download)
    assert written == [0], "the download started from the stale bytes"
    assert path.read_bytes() == blob
