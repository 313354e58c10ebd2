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
import lzma
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

import zstandard

from shifter.convert import tario
from shifter.convert.inflate import INFLATE_ERRORS, open_gzip
from shifter.errors import ShifterError

# What reading a corrupt or truncated layer raises, from the decompressors and the reader.
READ_ERRORS = (
    tario.TarFormatError,
    OSError,
    EOFError,
    zlib.error,
    *INFLATE_ERRORS,
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


class Header(NamedTuple):
    """The parts of one tar header that flattening uses; `member` counts from 0 per layer.

    `start` and `offset` place the member in the uncompressed layer (its first block, and
    its own header, which its data follows); `plain` says its blocks can be copied into the
    merged tar unchanged (see `tario`). A NamedTuple: a plan makes one per member, and a
    frozen dataclass costs several times more to create.
    """

    member: int
    name: str
    kind: Kind
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    size: int = 0
    linkname: str = ""
    start: int = 0
    offset: int = 0
    plain: bool = False
    owner_names: bool = False


def header_of(ordinal: int, member: tario.TarMember) -> Header:
    kind = _KINDS.get(member.type, Kind.OTHER)
    return Header(
        ordinal,
        member.name,
        kind,
        member.mode,
        member.uid,
        member.gid,
        member.mtime,
        member.size if kind is Kind.FILE else 0,
        member.linkname,
        member.start,
        member.offset,
        member.plain,
        member.owner_names,
    )


@contextlib.contextmanager
def open_layer(path: Path) -> Iterator[tuple[BinaryIO, int | None]]:
    """The layer's uncompressed tar bytes as a read-only stream, and their size when known
    (an uncompressed layer, read straight from the file)."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise LayerError(f"cannot open layer {path}: {exc.strerror}") from exc
    with raw:
        head = raw.read(8)
        raw.seek(0)
        with decompressed(raw, head) as stream:
            if stream is None:
                yield raw, os.fstat(raw.fileno()).st_size
            else:
                yield stream, None


@contextlib.contextmanager
def decompressed(raw: BinaryIO, head: bytes) -> Iterator[BinaryIO | None]:
    """`raw` decompressed as its first bytes `head` (not yet read from it) say; None for a
    plain tar. Only `read` is called on `raw`, so it may be a pipe or a download."""
    compression = detect_compression(head)
    with contextlib.ExitStack() as stack:
        if compression is Compression.GZIP:
            stream: BinaryIO = stack.enter_context(open_gzip(raw))
        elif compression is Compression.ZSTD:
            # Layers may hold several concatenated frames; read them all.
            reader = zstandard.ZstdDecompressor().stream_reader(
                raw, read_size=tario.CHUNK, read_across_frames=True, closefd=False
            )
            stream = stack.enter_context(reader)  # type: ignore[arg-type]
        elif compression is Compression.XZ:
            stream = stack.enter_context(lzma.LZMAFile(raw))
        elif compression is Compression.BZIP2:
            stream = stack.enter_context(bz2.BZ2File(raw))
        else:
            yield None
            return
        yield stream


def stream_members(path: Path) -> Iterator[tuple[int, tario.TarMember, tario.TarReader]]:
    """Every member of a layer with its ordinal, in archive order, streamed.

    The reader is yielded too so the merge can read the current member's data with
    `reader.data()`; that only works before the iterator advances.
    """
    with open_layer(path) as (stream, size):
        reader = tario.TarReader(stream, size=size)
        yield from _numbered(reader, path)


def _numbered(
    reader: tario.TarReader, path: Path
) -> Iterator[tuple[int, tario.TarMember, tario.TarReader]]:
    members = iter(reader)
    ordinal = 0
    while True:
        try:
            member = next(members, None)
        except READ_ERRORS as exc:
            raise unreadable(path, exc) from exc
        if member is None:
            return
        yield ordinal, member, reader
        ordinal += 1


def read_headers(path: Path) -> Iterator[Header]:
    """The headers of a layer, in order, without keeping any file data."""
    for ordinal, member, _reader in stream_members(path):
        yield header_of(ordinal, member)


def read_stream_headers(raw: BinaryIO, head: bytes, path: Path) -> list[Header]:
    """The headers of a layer read from a stream (its first bytes `head` still unread in
    it) rather than from its file; `path` names it in errors."""
    try:
        with decompressed(raw, head) as stream:
            reader = tario.TarReader(stream or raw)
            return [header_of(n, member) for n, member, _ in _numbered(reader, path)]
    except READ_ERRORS as exc:  # raised while opening (a gzip header) or closing
        raise unreadable(path, exc) from exc


def member_data(path: Path, reader: tario.TarReader) -> Iterator[bytes]:
    """The current member's data; read errors become `LayerError`, write errors pass by."""
    try:
        yield from reader.data()
    except READ_ERRORS as exc:
        raise unreadable(path, exc) from exc


def unreadable(path: Path, exc: BaseException) -> LayerError:
    return LayerError(
        f"layer {path.name} is not a readable tar archive: {exc}",
        hint="the blob may be truncated or corrupt; remove it from the layer cache and pull again",
    )
