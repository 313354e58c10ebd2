"""The tar writer for merged images: ustar headers, and extra records only for what does not
fit: a PAX header for names over 100 bytes and ids or sizes beyond their octal fields, a GNU
long-link record for link targets over 100 bytes.

Long link targets are not PAX `linkpath` records because mksquashfs 4.5.1 strips a leading
`/`, `./` or `../` from those (as from member names), which would turn the symlink
`x -> /usr/lib/...long...` into `x -> usr/lib/...`; it reads GNU long links unchanged.

No owner names, no xattrs, no other PAX records: only what the image should hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

from shifter.convert.tario import (
    BLOCK,
    ENCODING,
    ERRORS,
    GNU_LONGLINK,
    PAX_LOCAL,
    ZERO_BLOCK,
    TarFormatError,
)


class TarWriter:
    """Writes a tar stream: ustar headers, plus PAX or GNU records for what ustar cannot hold."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def add(
        self,
        name: str,
        type_: bytes,
        *,
        mode: int,
        uid: int,
        gid: int,
        mtime: int,
        size: int = 0,
        linkname: str = "",
    ) -> None:
        """Write one header; a regular file's `size` bytes must follow through `write_data`."""
        raw_name = name.encode(ENCODING, ERRORS)
        raw_link = linkname.encode(ENCODING, ERRORS)
        pax: list[tuple[bytes, bytes]] = []
        if len(raw_name) > 100:
            pax.append((b"path", raw_name))
        numbers = {b"uid": (uid, 8), b"gid": (gid, 8), b"size": (size, 12), b"mtime": (mtime, 12)}
        for key, (value, width) in numbers.items():
            if not 0 <= value < 8 ** (width - 1):
                pax.append((key, str(value).encode()))
        if pax:
            if any(not _is_utf8(value) for _key, value in pax):
                pax.insert(0, (b"hdrcharset", b"BINARY"))
            records = b"".join(_pax_record(k, v) for k, v in pax)
            self._out.write(_ustar(b"././@PaxHeader", PAX_LOCAL, 0o644, 0, 0, 0, len(records), b""))
            self._out.write(records + bytes(-len(records) % BLOCK))
        if len(raw_link) > 100:
            record = raw_link + b"\x00"
            size = len(record)
            self._out.write(_ustar(b"././@LongLink", GNU_LONGLINK, 0o644, 0, 0, 0, size, b""))
            self._out.write(record + bytes(-size % BLOCK))
        fits = {k: v for k, (v, w) in numbers.items() if 0 <= v < 8 ** (w - 1)}
        self._out.write(
            _ustar(
                raw_name[:100],
                type_,
                mode,
                fits.get(b"uid", 0),
                fits.get(b"gid", 0),
                fits.get(b"mtime", 0),
                fits.get(b"size", 0),
                raw_link[:100],
            )
        )

    def write_data(self, chunks: Iterator[bytes], size: int) -> None:
        written = 0
        for chunk in chunks:
            self._out.write(chunk)
            written += len(chunk)
        if written != size:
            raise TarFormatError(f"member data was {written} bytes, not {size}")
        self._out.write(bytes(-size % BLOCK))

    def write_raw(self, blocks: Iterable[bytes]) -> None:
        """Blocks copied from another archive: whole members, headers included."""
        for block in blocks:
            self._out.write(block)

    def close(self) -> None:
        self._out.write(ZERO_BLOCK * 2)
        self._out.flush()


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:  # the length counts its own digits
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _ustar(
    name: bytes, type_: bytes, mode: int, uid: int, gid: int, mtime: int, size: int, link: bytes
) -> bytes:
    block = bytearray(BLOCK)
    block[0 : len(name)] = name
    block[100:108] = b"%07o\x00" % mode
    block[108:116] = b"%07o\x00" % uid
    block[116:124] = b"%07o\x00" % gid
    block[124:136] = b"%011o\x00" % size
    block[136:148] = b"%011o\x00" % mtime
    block[148:156] = b" " * 8
    block[156:157] = type_
    block[157 : 157 + len(link)] = link
    block[257:265] = b"ustar\x0000"
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)
