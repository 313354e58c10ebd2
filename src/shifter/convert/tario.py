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
    offset: int  # of the header, for messages
    stored: int = 0  # data bytes in the archive
    sparse: list[tuple[int, int]] | None = None
    sparse_map_in_data: bool = False  # GNU sparse 1.0 keeps its map before the data


def _num(field_: bytes, offset: int) -> int:
    if field_[:1] in (b"\x80", b"\xff"):  # GNU base-256, for values octal cannot hold
        value = int.from_bytes(field_[1:], "big")
        return value - (1 << (8 * len(field_) - 8)) if field_[0] == 0xFF else value
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
        self._buffer = bytearray(CHUNK)

    def _read(self, size: int) -> bytes:
        parts = []
        while size > 0:
            part = self._stream.read(size)
            if not part:
                break
            parts.append(part)
            size -= len(part)
        data = b"".join(parts) if len(parts) != 1 else parts[0]
        self._offset += len(data)
        return data

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
        view = memoryview(self._buffer)
        while size:
            got = self._stream.readinto(view[: min(size, CHUNK)])  # type: ignore[attr-defined]
            if not got:
                raise TarFormatError(f"unexpected end of data at offset {self._offset}")
            size -= got
            self._offset += got

    def __iter__(self) -> Iterator[TarMember]:
        pax: dict[str, str] = {}
        longname = longlink = None
        while True:
            self._skip(self._next - self._offset)
            self._current = None
            offset = self._offset
            block = self._read(BLOCK)
            if not block or block == ZERO_BLOCK:
                return  # end of archive (a missing end marker is tolerated, as in tarfile)
            if len(block) != BLOCK:
                raise TarFormatError(f"truncated header at offset {offset}")
            _check_sum(block, offset)
            type_ = block[156:157]
            size = _num(block[124:136], offset)
            if size < 0:
                raise TarFormatError(f"negative size in the header at {offset}")
            if type_ in _META_TYPES:
                if size > _MAX_META:
                    raise TarFormatError(f"oversized {type_!r} header at offset {offset}")
                data = self._read_exact(size)
                self._next = self._offset + (-size % BLOCK)
                if type_ == PAX_LOCAL:
                    pax.update(_pax_records(data, offset))
                elif type_ == GNU_LONGNAME:
                    longname = _text(data)
                elif type_ == GNU_LONGLINK:
                    longlink = _text(data)
                continue  # PAX_GLOBAL: ignored, as Docker does
            try:
                member = self._member(block, offset, type_, size, pax, longname, longlink)
            except ValueError:
                raise TarFormatError(f"bad values in the header at offset {offset}") from None
            pax, longname, longlink = {}, None, None
            self._next = self._offset + member.stored + (-member.stored % BLOCK)
            self._current = member
            yield member

    def _member(
        self,
        block: bytes,
        offset: int,
        type_: bytes,
        size: int,
        pax: dict[str, str],
        longname: str | None,
        longlink: str | None,
    ) -> TarMember:
        name = _text(block[0:100])
        if block[257:263] == b"ustar\x00" and block[345]:  # POSIX ustar: a name prefix
            name = f"{_text(block[345:500])}/{name}"
        name = pax.get("path", longname if longname is not None else name)
        if type_ == REGULAR_OLD and name.endswith("/"):
            type_ = DIRECTORY  # pre-POSIX archives mark directories by the slash only
        stored = int(pax["size"]) if "size" in pax else size
        if type_ in _HEADER_ONLY:
            stored = 0  # whatever the size field says, as Go's archive/tar and tarfile read it
        member = TarMember(
            name=name,
            type=type_,
            mode=_num(block[100:108], offset) & 0o7777,
            uid=int(pax["uid"]) if "uid" in pax else _num(block[108:116], offset),
            gid=int(pax["gid"]) if "gid" in pax else _num(block[116:124], offset),
            mtime=int(float(pax["mtime"])) if "mtime" in pax else _num(block[136:148], offset),
            size=stored,
            linkname=pax.get("linkpath", _text(block[157:257]) if longlink is None else longlink),
            offset=offset,
            stored=stored,
        )
        if type_ == SPARSE_OLD:
            self._old_gnu_sparse(member, block)
        elif "GNU.sparse.major" in pax or "GNU.sparse.map" in pax or "GNU.sparse.size" in pax:
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
            chunk = self._read(min(size, CHUNK))
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


def _check_sum(block: bytes, offset: int) -> None:
    stored = _num(block[148:156], offset)
    unsigned = sum(block) - sum(block[148:156]) + 8 * 32
    if stored != unsigned:
        signed = unsigned - sum(256 for b in block if b > 127)  # some old tars used signed
        if stored != signed:
            raise TarFormatError(f"bad header checksum at offset {offset}")


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
