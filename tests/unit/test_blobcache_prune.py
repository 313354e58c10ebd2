"""Keeping the layer cache under its size: least recently used blobs go first, with their
lock files; a blob a pull has pinned stays until that pull releases it (also when the pull
is another process); a dry run removes nothing; lock files of digests with nothing left go.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from shifter.registry.blobcache import BlobCache
from shifter.registry.manifest import Descriptor

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def blob(cache: BlobCache, content: bytes, *, age_s: float) -> Descriptor:
    """A complete blob last used `age_s` ago, with its lock file (as a download leaves it)."""
    hex_digest = hashlib.sha256(content).hexdigest()
    path = cache.blobs / hex_digest
    path.write_bytes(content)
    (cache.locks / hex_digest).touch()
    then = time.time() - age_s
    os.utime(path, (then, then))
    return Descriptor(media_type=LAYER, digest=f"sha256:{hex_digest}", size=len(content))


def names(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


def hexes(*descriptors: Descriptor) -> set[str]:
    return {d.digest.split(":", 1)[1] for d in descriptors}


def test_least_recently_used_blobs_go_first_with_their_lock_files(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path).prepare()
    old = blob(cache, b"o" * 3000, age_s=300)
    middle = blob(cache, b"m" * 2000, age_s=200)
    new = blob(cache, b"n" * 1000, age_s=100)
    orphan = hashlib.sha256(b"gone").hexdigest()
    (cache.locks / orphan).touch()

    dry = cache.prune(3500, dry_run=True)
    assert ([h for h, _ in dry.removed], dry.bytes_before, dry.bytes_after) == (
        [old.digest[7:]], 6000, 3000)
    assert names(cache.blobs) == hexes(old, middle, new)  # a dry run removes nothing

    done = cache.prune(3500)
    assert (done.removed, done.bytes_after, done.in_use) == (((old.digest[7:], 3000),), 3000, 0)
    assert names(cache.blobs) == hexes(middle, new)
    assert names(cache.locks) == hexes(middle, new)  # the old blob's and the orphan's went
    assert cache.prune(3500).removed == ()


def test_a_pinned_blob_stays_until_its_pull_releases_it(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path).prepare()
    used = blob(cache, b"u" * 1000, age_s=500)  # the oldest, but a running pull uses it
    unused = blob(cache, b"x" * 1000, age_s=10)
    pull = BlobCache(tmp_path).prepare()
    assert pull.cached(used) == cache.blobs / used.digest[7:]
    assert (cache.blobs / used.digest[7:]).stat().st_mtime > time.time() - 60  # marked used

    result = cache.prune(0)
    assert (result.removed, result.in_use) == (((unused.digest[7:], 1000),), 1)
    assert names(cache.blobs) == hexes(used)
    pull.release()
    assert cache.prune(0).removed == ((used.digest[7:], 1000),)
    assert names(cache.blobs) == set() and names(cache.locks) == set()


def test_a_blob_pinned_by_another_process_stays(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path).prepare()
    used = blob(cache, b"p" * 100, age_s=500)
    code = (
        "import sys\n"
        "from shifter.registry.blobcache import BlobCache\n"
        "from shifter.registry.manifest import Descriptor\n"
        f"cache = BlobCache({str(tmp_path)!r}).prepare()\n"
        f"assert cache.cached(Descriptor(media_type={LAYER!r}, digest={used.digest!r}, "
        f"size={used.size}))\n"
        "print('pinned', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "pinned\n"
        assert cache.prune(0).in_use == 1
        assert names(cache.blobs) == hexes(used)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    assert cache.prune(0).removed == ((used.digest[7:], 100),)


def test_a_pruned_digest_is_downloaded_again_under_a_new_lock_file(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path).prepare()
    content = b"layer bytes"
    descriptor = blob(cache, content, age_s=100)
    cache.prune(0)
    assert cache.cached(descriptor) is None

    def download(file: object) -> None:
        file.write(content)  # type: ignore[attr-defined]

    pull = BlobCache(tmp_path).prepare()
    path = pull.fetch(descriptor, download)
    assert path.read_bytes() == content
    assert names(cache.locks) == hexes(descriptor)
    assert cache.prune(0).in_use == 1  # fetched means pinned
    pull.release()
