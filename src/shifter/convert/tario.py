"""A small streaming tar reader, for speed and for control over what passes.

Python's `tarfile` spends ~100 µs parsing each header and its stream mode copies its whole
buffer on every small read; on a 50,000-file image that was most of the conversion time.
This reader parses what layers contain (ustar, GNU long names and base-256 numbers, PAX
extended headers, GNU sparse files in all their encodings) and never holds more than one
chunk of data. Global PAX headers are ignored, as Docker's extractor ignores them.
`tarwrite` is the matching writer.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

BLOCK = 512
CHUNK = 1 << 20
ZERO_BLOCK = bytes(BLOCK)
ENCODING = "utf-8"
ERRORS = "surrogateescape"  # tar names are bytes; keep non-UTF-8 ones unchanged

REGULAR, REGULAR_OLD, CONTIGUOUS, SPARSE_OLD = b"0", b"\x00", b"7", b"S"
DIRECTORY, SYMLINK, HARDLINK = b"5", b"2", b"1"
PAX_LOCAL, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK = b"x", b"g", b"L", b"K"
_META_TYPES = (PAX_LOCAL, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK)
_HEADER_ONLY = (HARDLINK, SYMLINK, DIRECTORY, b"3", b"4", b"6")  # links, dirs, devices, fifos
_MAX_META = 1 << 24  # a PAX or long-name header larger than 16 MiB is not a real layer
_MAX_SPARSE = 1 << 20  # sparse regions in one file; bounds memory on hostile input
# PAX records a plain member may carry: times, which tools read alike as long as `mtime` has a
# fraction (mksquashfs 4.5.1 fails on a PAX mtime without one).
# name, mode, uid, gid, size, mtime, checksum, type, linkname, magic, version, uname, gname,
# devmajor, devminor, prefix: one call instead of a slice per field (a hot path)
_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12x")
_PAX_TIME = re.compile(r"[0-9]+(\.[0-9]*)?")
_PLAIN_PAX = {"mtime": re.compile(r"[0-9]{1,10}\.[0-9]*"), "atime": _PAX_TIME, "ctime": _PAX_TIME}


class TarFormatError(Exception):
    """The bytes are not a tar archive this reader accepts."""


@dataclass(slots=True)
class TarMember:
    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int  # the file's size (expanded, for sparse files)
    linkname: str
    offset: int  # of its own header block; the data follows it
    start: int = 0  # of its first block: PAX or GNU records come before the header
    stored: int = 0  # data bytes in the archive
    plain: bool = False  # its blocks mean the same to any tar reader: see `_plain`
    owner_names: bool = False  # the header names an owner or group (uname, gname)
    sparse: list[tuple[int, int]] | None = None
    sparse_map_in_data: bool = False  # GNU sparse 1.0 keeps its map before the data


def _num(field_: bytes, offset: int) -> int:
    if field_[0] & 0x80:  # GNU base-256, for values octal cannot hold
        value = int.from_bytes(field_[1:], "big")
        return value - (1 << (8 * len(field_) - 8)) if field_[0] == 0xFF else value
    try:
        return int(field_.rstrip(b"\x00 ") or b"0", 8)  # the usual case, ~3x faster
    except ValueError:
        pass  # a NUL before other bytes, or not octal at all
    text = field_.split(b"\x00", 1)[0].strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarFormatError(f"bad number {field_!r} in the header at {offset}") from None


def _text(field_: bytes) -> str:
    return field_.split(b"\x00", 1)[0].decode(ENCODING, ERRORS)


class TarReader:
    """Iterates the members of an uncompressed tar stream; `data()` reads the current one."""

    def __init__(self, stream: BinaryIO, *, size: int | None = None) -> None:
        """`size` is given for a plain file on disk: then file data is seeked past, not read.
        (Decompressors claim to be seekable too, by decompressing: never seek those.)"""
        self._stream = stream
        self._seekable = size is not None
        self._end = size if size is not None else -1  # seeking past the end does not fail
        self._offset = 0
        self._next = 0  # offset of the next header: after the current data and its padding
        self._current: TarMember | None = None
        # A decompressed stream is read a chunk at a time and headers are cut from it: one
        # call into the decompressor per 512-byte header cost more than parsing it.
        self._chunk = b""
        self._used = 0  # bytes of `_chunk` already consumed

    def _read(self, size: int) -> bytes:
        """Up to `size` bytes (fewer only at the end of the stream)."""
        if self._seekable:
            data = self._stream.read(size)
            if 0 < len(data) < size:
                data += self._stream.read(size - len(data))  # a short read from a file
        else:
            end = self._used + size
            if end <= len(self._chunk):
                data = self._chunk[self._used : end]
                self._used = end
            else:
                data = self._read_across(size)
        self._offset += len(data)
        return data

    def _read_across(self, size: int) -> bytes:
        parts = [self._chunk[self._used :]]
        needed = size - len(parts[0])
        self._chunk, self._used = b"", 0
        while needed > 0:
            chunk = self._stream.read(CHUNK)
            if not chunk:
                break
            if len(chunk) > needed:
                self._chunk, self._used = chunk, needed
                chunk = chunk[:needed]
            parts.append(chunk)
            needed -= len(chunk)
        return b"".join(parts)

    def _read_exact(self, size: int) -> bytes:
        data = self._read(size)
        if len(data) != size:
            raise TarFormatError(f"unexpected end of data at offset {self._offset}")
        return data

    def _skip(self, size: int) -> None:
        if size <= 0:
            return
        if self._seekable:
            if self._offset + size > self._end:
                raise TarFormatError(f"unexpected end of data at offset {self._end}")
            self._stream.seek(size, os.SEEK_CUR)
            self._offset += size
            return
        while size:
            step = min(size, len(self._chunk) - self._used)
            if not step:
                self._chunk, self._used = self._stream.read(CHUNK), 0
                if not self._chunk:
                    raise TarFormatError(f"unexpected end of data at offset {self._offset}")
                continue
            self._used += step
            self._offset += step
            size -= step

    def __iter__(self) -> Iterator[TarMember]:
        while (member := self._next_member()) is not None:
            yield member

    def member_at(self, start: int) -> TarMember:
        """The member whose first block is at `start` (not behind the reader), made current."""
        if start < self._offset:
            raise TarFormatError(f"cannot go back to offset {start} from {self._offset}")
        self._next = start
        member = self._next_member()
        if member is None:
            raise TarFormatError(f"no member at offset {start}: the archive ends there")
        return member

    def read_range(self, start: int, end: int) -> Iterator[bytes]:
        """The archive's raw bytes from `start` to `end` (not behind the reader), in chunks."""
        if start < self._offset:
            raise TarFormatError(f"cannot go back to offset {start} from {self._offset}")
        self._current = None
        self._skip(start - self._offset)
        self._next = end
        yield from self._chunks(end - start)

    def _next_member(self) -> TarMember | None:
        pax: dict[str, str] = {}
        longname = longlink = None
        start = -1
        only_pax = True  # GNU records and global headers make a member not plain
        while True:
            self._skip(self._next - self._offset)
            self._current = None
            offset = self._offset
            start = offset if start < 0 else start
            block = self._read(BLOCK)
            if not block or block == ZERO_BLOCK:
                return None  # end of archive (a missing end marker is tolerated, as in tarfile)
            if len(block) != BLOCK:
                raise TarFormatError(f"truncated header at offset {offset}")
            fields = _USTAR.unpack(block)
            unsigned_sum = _check_sum(block, fields[6], offset)
            type_ = fields[7]
            size = _num(fields[4], offset)
            if size < 0:
                raise TarFormatError(f"negative size in the header at {offset}")
            if type_ in _META_TYPES:
                if size > _MAX_META:
                    raise TarFormatError(f"oversized {type_!r} header at offset {offset}")
                data = self._read_exact(size)
                self._next = self._offset + (-size % BLOCK)
                only_pax = only_pax and type_ == PAX_LOCAL
                if type_ == PAX_LOCAL:
                    pax.update(_pax_records(data, offset))
                elif type_ == GNU_LONGNAME:
                    longname = _text(data)
                elif type_ == GNU_LONGLINK:
                    longlink = _text(data)
                continue  # PAX_GLOBAL: ignored, as Docker does
            try:
                member = self._member(block, fields, offset, size, pax, longname, longlink)
            except ValueError:
                raise TarFormatError(f"bad values in the header at offset {offset}") from None
            member.start = start
            member.plain = only_pax and unsigned_sum and _plain(block, fields, member, pax)
            member.owner_names = bool(block[265] or block[297])
            self._next = self._offset + member.stored + (-member.stored % BLOCK)
            self._current = member
            return member

    def _member(
        self,
        block: bytes,
        fields: tuple[bytes, ...],
        offset: int,
        size: int,
        pax: dict[str, str],
        longname: str | None,
        longlink: str | None,
    ) -> TarMember:
        type_ = fields[7]
        name = _text(fields[0])
        if fields[9] == b"ustar\x00" and block[345]:  # POSIX ustar: a name prefix
            name = f"{_text(fields[15])}/{name}"
        if longname is not None:
            name = longname
        if type_ == REGULAR_OLD and name.endswith("/"):
            type_ = DIRECTORY  # pre-POSIX archives mark directories by the slash only
        mode = _num(fields[1], offset) & 0o7777
        uid, gid, mtime = _num(fields[2], offset), _num(fields[3], offset), _num(fields[5], offset)
        linkname = _text(fields[8]) if longlink is None else longlink
        stored = size
        if pax:
            name = pax.get("path", name)
            linkname = pax.get("linkpath", linkname)
            stored = int(pax["size"]) if "size" in pax else size
            uid = int(pax["uid"]) if "uid" in pax else uid
            gid = int(pax["gid"]) if "gid" in pax else gid
            mtime = int(float(pax["mtime"])) if "mtime" in pax else mtime
        if type_ in _HEADER_ONLY:
            stored = 0  # whatever the size field says, as Go's archive/tar and tarfile read it
        member = TarMember(name, type_, mode, uid, gid, mtime, stored, linkname, offset, 0, stored)
        if type_ == SPARSE_OLD:
            self._old_gnu_sparse(member, block)
        elif pax and (
            "GNU.sparse.major" in pax or "GNU.sparse.map" in pax or "GNU.sparse.size" in pax
        ):
            _pax_sparse(member, pax)
        return member

    def _old_gnu_sparse(self, member: TarMember, block: bytes) -> None:
        entries = _sparse_entries(block[386:482], 4, member.offset)
        extended = block[482]
        while extended:
            more = self._read_exact(BLOCK)
            entries += _sparse_entries(more[:504], 21, member.offset)
            extended = more[504]
            if len(entries) > _MAX_SPARSE:
                raise TarFormatError(f"sparse map of {member.name!r} is too long")
        member.type = REGULAR
        member.sparse = entries
        member.size = _num(block[483:495], member.offset)

    def data(self) -> Iterator[bytes]:
        """The current member's content, `member.size` bytes in chunks; sparse holes as zeros."""
        member = self._current
        if member is None:
            raise TarFormatError("no current member to read")
        stored = member.stored
        sparse = member.sparse
        if member.sparse_map_in_data:
            sparse, used = self._sparse_map_from_data(member)
            stored -= used
        if sparse is None:
            yield from self._chunks(stored)
        else:
            yield from self._sparse_chunks(member, sparse, stored)
        self._current = None

    def _chunks(self, size: int) -> Iterator[bytes]:
        while size:
            if self._used < len(self._chunk):  # what the buffer holds, then straight reads
                chunk = self._read(min(size, len(self._chunk) - self._used))
            else:
                chunk = self._stream.read(min(size, CHUNK))
                self._offset += len(chunk)
            if not chunk:
                raise TarFormatError(f"unexpected end of data at offset {self._offset}")
            size -= len(chunk)
            yield chunk

    def _sparse_chunks(
        self, member: TarMember, sparse: list[tuple[int, int]], stored: int
    ) -> Iterator[bytes]:
        position = 0
        for start, length in sparse:
            if start < position or length < 0 or length > stored:
                raise TarFormatError(f"bad sparse map for {member.name!r}")
            yield from _zeros(start - position)
            yield from self._chunks(length)
            stored -= length
            position = start + length
        if position > member.size:
            raise TarFormatError(f"sparse map of {member.name!r} runs past its size")
        yield from _zeros(member.size - position)

    def _sparse_map_from_data(self, member: TarMember) -> tuple[list[tuple[int, int]], int]:
        """GNU sparse 1.0: decimal numbers, one a line, before the data, padded to a block."""
        text = b""
        used = 0
        numbers: list[int] = []
        count = None
        while count is None or len(numbers) < 1 + 2 * count:
            if used >= member.stored or used > _MAX_META:
                raise TarFormatError(f"bad sparse map for {member.name!r}")
            text += self._read_exact(BLOCK)
            used += BLOCK
            *lines, text = text.split(b"\n")
            try:
                numbers += [int(line) for line in lines]
            except ValueError:
                raise TarFormatError(f"bad sparse map for {member.name!r}") from None
            count = numbers[0] if numbers else None
        pairs = numbers[1 : 1 + 2 * numbers[0]]
        return list(zip(pairs[0::2], pairs[1::2], strict=True)), used


def _zeros(size: int) -> Iterator[bytes]:
    while size > 0:
        step = min(size, CHUNK)
        yield bytes(step)
        size -= step


def header_name_size(block: bytes) -> tuple[str, int]:
    """The name and size fields of a plain member's header block (see `_plain`)."""
    return _text(block[0:100]), _num(block[124:136], 0)


def _check_sum(block: bytes, field_: bytes, offset: int) -> bool:
    """Check the header's checksum (`field_`); True for the standard (unsigned) sum."""
    stored = _num(field_, offset)
    unsigned = sum(block) - sum(field_) + 8 * 32
    if stored == unsigned:
        return True
    signed = unsigned - sum(256 for b in block if b > 127)  # some old tars used signed
    if stored != signed:
        raise TarFormatError(f"bad header checksum at offset {offset}")
    return False


def _plain(block: bytes, fields: tuple[bytes, ...], member: TarMember, pax: dict[str, str]) -> bool:
    """Whether the member's blocks can be copied into another archive unchanged and still
    mean exactly what we read: a regular file in a ustar (POSIX or GNU) header, no name
    prefix, octal numbers, a mode without file-type bits, and PAX records (if any) holding
    only times (mksquashfs, which reads the merged tar, takes the whole seconds of `mtime`).
    """
    if member.type != REGULAR or not fields[9].startswith(b"ustar") or block[345]:
        return False
    if (block[100] | block[108] | block[116] | block[124] | block[136]) & 0x80:
        return False  # base-256
    if _num(fields[1], member.offset) != member.mode:
        return False
    for key, value in pax.items():
        pattern = _PLAIN_PAX.get(key)
        if pattern is None or not pattern.fullmatch(value):
            return False
    return "mtime" not in pax or int(pax["mtime"].partition(".")[0]) == member.mtime


def _sparse_entries(raw: bytes, count: int, offset: int) -> list[tuple[int, int]]:
    entries = []
    for i in range(count):
        start = raw[i * 24 : i * 24 + 12]
        length = raw[i * 24 + 12 : i * 24 + 24]
        if start.strip(b"\x00") == b"":
            break
        entries.append((_num(start, offset), _num(length, offset)))
    return entries


def _pax_records(data: bytes, offset: int) -> dict[str, str]:
    """`LEN key=value\\n` records; repeated GNU.sparse.offset/numbytes build a 0.0 map."""
    records: dict[str, str] = {}
    sparse0: list[str] = []
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarFormatError(f"bad PAX record in the header at {offset}") from None
        record = data[space + 1 : pos + length]
        if length <= 0 or space < 0 or not record.endswith(b"\n") or b"=" not in record:
            raise TarFormatError(f"bad PAX record in the header at {offset}")
        key, _, value = record[:-1].partition(b"=")
        text_key = key.decode(ENCODING, ERRORS)
        if text_key in ("GNU.sparse.offset", "GNU.sparse.numbytes"):
            sparse0.append(value.decode())
        elif value:
            records[text_key] = value.decode(ENCODING, ERRORS)
        pos += length
    if sparse0:
        records["GNU.sparse.map"] = ",".join(sparse0)
    return records


def _pax_sparse(member: TarMember, pax: dict[str, str]) -> None:
    try:
        member.type = REGULAR
        member.name = pax.get("GNU.sparse.name", member.name)
        member.size = int(pax.get("GNU.sparse.realsize", pax.get("GNU.sparse.size", member.size)))
        if pax.get("GNU.sparse.major") == "1":
            member.sparse_map_in_data = True
            return
        numbers = [int(n) for n in pax["GNU.sparse.map"].split(",") if n]
        member.sparse = list(zip(numbers[0::2], numbers[1::2], strict=True))
    except (KeyError, ValueError):
        raise TarFormatError(f"bad sparse headers for {member.name!r}") from None
