"""Image layers written from a small declarative description.

A layer is a list of entries (files, directories, links, whiteouts, special files) written
as a POSIX (PAX) tar in the order given: order is meaningful in a layer, since a later entry
replaces an earlier one at the same path. Names are written exactly as given, so hostile
names (`../x`, `/abs`, bytes that are not UTF-8) reach the tar unchanged. Everything that
could vary between runs is fixed (mtimes, owner names, the gzip header time), so the same
description always yields the same bytes and digests.
"""

from __future__ import annotations

import enum
import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import zstandard

FIXED_MTIME = 1_577_836_800  # 2020-01-01T00:00:00Z: any constant keeps digests stable
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
GZIP_LEVEL = 3  # fast: these layers are rebuilt by every test run
ZSTD_LEVEL = 3

Name = str | bytes  # bytes for names that are not valid UTF-8


class Compression(enum.Enum):
    GZIP = "gzip"
    ZSTD = "zstd"
    NONE = "none"


@dataclass(frozen=True)
class File:
    path: Name
    content: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = FIXED_MTIME
    xattrs: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Dir:
    path: Name
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    mtime: int = FIXED_MTIME
    xattrs: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Symlink:
    path: Name
    target: Name
    uid: int = 0
    gid: int = 0
    mtime: int = FIXED_MTIME


@dataclass(frozen=True)
class HardLink:
    """A hard link to `target`, a path as written in this or a lower layer's tar."""

    path: Name
    target: Name
    mtime: int = FIXED_MTIME


@dataclass(frozen=True)
class Whiteout:
    """Deletes `path` (and what is under it) from lower layers: writes `dir/.wh.name`."""

    path: str


@dataclass(frozen=True)
class Opaque:
    """Hides everything lower layers put in directory `path`: writes `path/.wh..wh..opq`."""

    path: str


@dataclass(frozen=True)
class Device:
    path: Name
    major: int
    minor: int
    block: bool = False
    mode: int = 0o666


@dataclass(frozen=True)
class Fifo:
    path: Name
    mode: int = 0o644


Entry = File | Dir | Symlink | HardLink | Whiteout | Opaque | Device | Fifo


def whiteout_name(path: str) -> str:
    parent, _, base = path.rstrip("/").rpartition("/")
    return f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else f"{WHITEOUT_PREFIX}{base}"


def opaque_name(path: str) -> str:
    return f"{path.rstrip('/')}/{OPAQUE_MARKER}"


def _text(name: Name) -> str:
    # tarfile writes surrogate escapes back as the original bytes (hdrcharset=BINARY).
    return name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name


def _tarinfo(entry: Entry) -> tuple[tarfile.TarInfo, bytes | None]:
    match entry:
        case Whiteout(path=path):
            return _tarinfo(File(whiteout_name(path)))
        case Opaque(path=path):
            return _tarinfo(File(opaque_name(path)))
    info = tarfile.TarInfo(_text(entry.path))
    info.mtime = getattr(entry, "mtime", FIXED_MTIME)
    info.uid = getattr(entry, "uid", 0)
    info.gid = getattr(entry, "gid", 0)
    info.uname = info.gname = ""  # owner names would tie the digest to this machine
    data: bytes | None = None
    match entry:
        case File(content=content, mode=mode):
            info.type, info.mode, info.size, data = tarfile.REGTYPE, mode, len(content), content
        case Dir(mode=mode):
            info.type, info.mode = tarfile.DIRTYPE, mode
        case Symlink(target=target):
            info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, _text(target)
        case HardLink(target=target):
            info.type, info.mode, info.linkname = tarfile.LNKTYPE, 0o644, _text(target)
        case Device(major=major, minor=minor, block=block, mode=mode):
            info.type = tarfile.BLKTYPE if block else tarfile.CHRTYPE
            info.mode, info.devmajor, info.devminor = mode, major, minor
        case Fifo(mode=mode):
            info.type, info.mode = tarfile.FIFOTYPE, mode
    xattrs = getattr(entry, "xattrs", {})
    if xattrs:
        # The PAX convention that GNU tar, Go's archive/tar and containerd read.
        info.pax_headers = {
            f"SCHILY.xattr.{name}": value.decode("utf-8", "surrogateescape")
            for name, value in sorted(xattrs.items())
        }
    return info, data


def write_tar(entries: Iterable[Entry], out: io.BufferedIOBase | io.BytesIO) -> None:
    """Write `entries`, in order, as a PAX tar to the binary stream `out`."""
    with tarfile.open(
        fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8"
    ) as archive:
        for entry in entries:
            info, data = _tarinfo(entry)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)


def tar_bytes(entries: Iterable[Entry]) -> bytes:
    buffer = io.BytesIO()
    write_tar(entries, buffer)
    return buffer.getvalue()


def compress(data: bytes, compression: Compression) -> bytes:
    if compression is Compression.GZIP:
        # mtime=0 keeps the gzip header free of the build time.
        return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
    if compression is Compression.ZSTD:
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
    return data


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Layer:
    """A finished layer blob and the two digests an image needs."""

    blob: bytes
    compression: Compression
    diff_id: str  # sha256 of the uncompressed tar: goes into the config's rootfs
    digest: str  # sha256 of the blob as stored: goes into the manifest
    comment: str = ""

    @property
    def size(self) -> int:
        return len(self.blob)


def build_layer(
    entries: Sequence[Entry],
    compression: Compression = Compression.GZIP,
    *,
    comment: str = "",
) -> Layer:
    tar = tar_bytes(entries)
    blob = compress(tar, compression)
    return Layer(blob, compression, sha256_digest(tar), sha256_digest(blob), comment)


def with_parents(entries: Iterable[Entry], *, mode: int = 0o755) -> list[Entry]:
    """`entries` sorted by path, each preceded by its missing parent directories.

    For well-formed layers whose order does not matter; real tools always write parents
    first, and sorting keeps the tar identical however the description was listed.
    """
    listed = sorted(entries, key=lambda e: _text(_entry_path(e)))
    present = {_text(_entry_path(e)).rstrip("/") for e in listed if isinstance(e, Dir)}
    out: list[Entry] = []
    for entry in listed:
        parts = _text(_entry_path(entry)).strip("/").split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            if parent not in present:
                present.add(parent)
                out.append(Dir(parent, mode=mode))
        out.append(entry)
    return out


def _entry_path(entry: Entry) -> Name:
    match entry:
        case Whiteout(path=path):
            return whiteout_name(path)
        case Opaque(path=path):
            return opaque_name(path)
    return entry.path
