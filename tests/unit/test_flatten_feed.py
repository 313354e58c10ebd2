"""Planning while a layer downloads: `convert.feed.HeaderFeed` and `engine.layerplan.BlobTee`.

The feed must give exactly the headers the layer's file gives, whatever pieces the bytes
arrive in; and whenever it cannot vouch for that (the download started over, bytes are
missing), it must say so, so the headers are read from the file instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from shifter.convert.feed import HeaderFeed
from shifter.convert.layers import LayerError, read_headers
from shifter.engine.layerplan import BlobTee
from shifter.ocibuild.layer import Compression, Dir, File, HardLink, Symlink, build_layer

ENTRIES = [
    Dir("d"),
    *(File(f"d/f{n}", bytes([n]) * (n * 131 % 2000)) for n in range(60)),
    Symlink("d/s", "f1"),
    HardLink("d/h", "d/f2"),
]


def layer_file(tmp_path: Path, compression: Compression) -> Path:
    path = tmp_path / f"layer.{compression.value}"
    path.write_bytes(build_layer(ENTRIES, compression).blob)
    return path


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("compression", list(Compression))
@pytest.mark.parametrize("piece", [1, 100, 65536])
def test_fed_headers_equal_the_files(tmp_path: Path, compression: Compression, piece: int) -> None:
    layer = layer_file(tmp_path, compression)
    blob = layer.read_bytes()
    feed = HeaderFeed(layer, max_buffered=4096)  # small: the writer waits for the reader
    for part in pieces(blob, piece):
        feed.write(part)
    assert feed.headers(len(blob)) == list(read_headers(layer))


def test_an_aborted_feed_has_no_headers(tmp_path: Path) -> None:
    blob = layer_file(tmp_path, Compression.GZIP).read_bytes()
    feed = HeaderFeed(tmp_path / "layer", max_buffered=1024)
    feed.write(blob[:3000])
    feed.abort()
    feed.write(blob[3000:])  # a writer that goes on does not block
    assert feed.headers(len(blob)) is None


def test_a_feed_missing_bytes_has_no_headers(tmp_path: Path) -> None:
    blob = layer_file(tmp_path, Compression.NONE).read_bytes()
    feed = HeaderFeed(tmp_path / "layer")
    feed.write(blob)
    assert feed.headers(len(blob) + 1) is None  # the blob is larger than what was fed


def test_a_feed_never_written_has_no_headers(tmp_path: Path) -> None:
    assert HeaderFeed(tmp_path / "layer").headers(100) is None


def test_a_corrupt_layer_raises_once_all_of_it_was_fed(tmp_path: Path) -> None:
    blob = bytearray(layer_file(tmp_path, Compression.GZIP).read_bytes())
    blob[40:400] = bytes(360)
    feed = HeaderFeed(tmp_path / "layer.gz", max_buffered=512)
    for part in pieces(bytes(blob), 300):
        feed.write(part)  # the reader failed early: the writer must not wait for it
    with pytest.raises(LayerError, match=r"layer\.gz is not a readable tar archive"):
        feed.headers(len(blob))


def test_bytes_after_the_end_of_the_archive_do_not_block_the_writer(tmp_path: Path) -> None:
    blob = layer_file(tmp_path, Compression.NONE).read_bytes() + bytes(1 << 20)
    feed = HeaderFeed(tmp_path / "layer", max_buffered=1024)
    for part in pieces(blob, 4096):
        feed.write(part)
    assert feed.headers(len(blob)) == list(read_headers(tmp_path / "layer.none"))


# --- the tee between the download and the feed ------------------------------------------------


@contextlib.contextmanager
def tee_over(tmp_path: Path, start: bytes = b"") -> Iterator[tuple[BlobTee, HeaderFeed, Path]]:
    """A tee over a partial file holding `start`, as the layer cache hands it to a download."""
    partial = tmp_path / "partial"
    partial.write_bytes(start)
    feed = HeaderFeed(tmp_path / "blob")
    with open(partial, "r+b") as file:
        yield BlobTee(file, feed), feed, partial


def test_a_download_in_one_go_is_fed_whole(tmp_path: Path) -> None:
    layer = layer_file(tmp_path, Compression.GZIP)
    blob = layer.read_bytes()
    with tee_over(tmp_path) as (tee, feed, partial):
        for part in pieces(blob, 1000):
            assert tee.write(part) == len(part)
        tee.flush()
        assert partial.read_bytes() == blob
        assert feed.headers(len(blob)) == list(read_headers(layer))


def test_a_resumed_download_feeds_the_bytes_it_reads_back(tmp_path: Path) -> None:
    layer = layer_file(tmp_path, Compression.ZSTD)
    blob = layer.read_bytes()
    with tee_over(tmp_path, blob[:5000]) as (tee, feed, _):
        tee.seek(0)
        assert tee.read(3000) + tee.read(-1) == blob[:5000]  # hashed again before resuming
        tee.write(blob[5000:])
        tee.flush()
        assert feed.headers(len(blob)) == list(read_headers(layer))


def test_a_download_that_starts_over_aborts_the_feed(tmp_path: Path) -> None:
    blob = layer_file(tmp_path, Compression.GZIP).read_bytes()
    with tee_over(tmp_path) as (tee, feed, partial):
        tee.write(blob[:2000])
        tee.seek(0)
        tee.truncate()
        tee.write(blob)
        tee.flush()
        assert partial.read_bytes() == blob
        assert feed.headers(len(blob)) is None  # the headers come from the file instead


def test_rewriting_fed_bytes_aborts_the_feed(tmp_path: Path) -> None:
    blob = layer_file(tmp_path, Compression.NONE).read_bytes()
    with tee_over(tmp_path) as (tee, feed, _):
        tee.write(blob[:2000])
        tee.seek(1000)
        tee.write(blob[1000:])
        tee.flush()
        assert feed.headers(len(blob)) is None
