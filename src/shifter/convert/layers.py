"""Reading image layers: decompression chosen by magic bytes, then a streamed tar reader.

A layer is read front to back like a pipe (a plain tar on disk is seeked past file data);
no file data is held in memory beyond one chunk. Both passes of a conversion (the plan and
the merge) read layers through `stream_members`, so they see the same members, numbered
the same way.
"""

from __future__ import annotations

import bz2
import contextlib
import enum
import gzip
import lzma
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from shifter.convert import tario
from shifter.errors import ShifterError

# What reading a corrupt or truncated layer raises, from the decompressors and the reader.
READ_ERRORS = (
    tario.TarFormatError,
    OSError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    zstandard.ZstdError,
)


class LayerError(ShifterError):
    """A layer that cannot be read or flattened (corrupt archive, dangling hard link...)."""


class Compression(enum.Enum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    XZ = "xz"
    BZIP2 = "bzip2"


_MAGIC: tuple[tuple[bytes, Compression], ...] = (
    (b"\x1f\x8b", Compression.GZIP),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"\xfd7zXZ\x00", Compression.XZ),
    (b"BZh", Compression.BZIP2),
)


def detect_compression(head: bytes) -> Compression:
    """The compression of a blob from its first bytes; anything unknown is read as plain tar.

    Magic bytes rather than the media type: registries and old Docker clients label layers
    loosely (a gzip layer typed as plain tar, or the reverse), the bytes never lie.
    """
    for magic, compression in _MAGIC:
        if head.startswith(magic):
            return compression
    return Compression.NONE


class Kind(enum.Enum):
    """What a tar member is, reduced to what flattening cares about."""

    DIR = "dir"
    FILE = "file"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    DEVICE = "device"
    FIFO = "fifo"
    OTHER = "other"


_KINDS = {
    tario.REGULAR: Kind.FILE,
    tario.REGULAR_OLD: Kind.FILE,
    tario.CONTIGUOUS: Kind.FILE,
    tario.DIRECTORY: Kind.DIR,
    tario.SYMLINK: Kind.SYMLINK,
    tario.HARDLINK: Kind.HARDLINK,
    b"3": Kind.DEVICE,  # character
    b"4": Kind.DEVICE,  # block
    b"6": Kind.FIFO,
}


@dataclass(frozen=True, slots=True)
class Header:
    """The parts of one tar header that flattening uses; `member` counts from 0 per layer."""

    member: int
    name: str
    kind: Kind
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    size: int = 0
    linkname: str = ""


def header_of(ordinal: int, member: tario.TarMember) -> Header:
    kind = _KINDS.get(member.type, Kind.OTHER)
    return Header(
        member=ordinal,
        name=member.name,
        kind=kind,
        mode=member.mode,
        uid=member.uid,
        gid=member.gid,
        mtime=member.mtime,
        size=member.size if kind is Kind.FILE else 0,
        linkname=member.linkname,
    )


@contextlib.contextmanager
def open_layer(path: Path) -> Iterator[tuple[BinaryIO, int | None]]:
    """The layer's uncompressed tar bytes as a read-only stream, and their size when known
    (an uncompressed layer, read straight from the file)."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the ExitStack below
    except OSError as exc:
        raise LayerError(f"cannot open layer {path}: {exc.strerror}") from exc
    with contextlib.ExitStack() as stack:
        stack.enter_context(raw)
        compression = detect_compression(raw.read(8))
        raw.seek(0)
        if compression is Compression.GZIP:
            stream: BinaryIO = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        elif compression is Compression.ZSTD:
            # Layers may hold several concatenated frames; read them all.
            reader = zstandard.ZstdDecompressor().stream_reader(
                raw, read_size=tario.CHUNK, read_across_frames=True
            )
            stream = stack.enter_context(reader)  # type: ignore[arg-type]
        elif compression is Compression.XZ:
            stream = stack.enter_context(lzma.LZMAFile(raw))
        elif compression is Compression.BZIP2:
            stream = stack.enter_context(bz2.BZ2File(raw))
        else:
            yield raw, os.fstat(raw.fileno()).st_size
            return
        yield stream, None


def stream_members(path: Path) -> Iterator[tuple[int, tario.TarMember, tario.TarReader]]:
    """Every member of a layer with its ordinal, in archive order, streamed.

    The reader is yielded too so the merge can read the current member's data with
    `reader.data()`; that only works before the iterator advances.
    """
    with open_layer(path) as (stream, size):
        reader = tario.TarReader(stream, size=size)
        members = iter(reader)
        ordinal = 0
        while True:
            try:
                member = next(members, None)
            except READ_ERRORS as exc:
                raise _unreadable(path, exc) from exc
            if member is None:
                return
            yield ordinal, member, reader
            ordinal += 1


def read_headers(path: Path) -> Iterator[Header]:
    """The headers of a layer, in order, without keeping any file data."""
    for ordinal, member, _reader in stream_members(path):
        yield header_of(ordinal, member)


def member_data(path: Path, reader: tario.TarReader) -> Iterator[bytes]:
    """The current member's data; read errors become `LayerError`, write errors pass by."""
    try:
        yield from reader.data()
    except READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc


def _unreadable(path: Path, exc: BaseException) -> LayerError:
    return LayerError(
        f"layer {path.name} is not a readable tar archive: {exc}",
        hint="the blob may be truncated or corrupt; remove it from the layer cache and pull again",
    )
