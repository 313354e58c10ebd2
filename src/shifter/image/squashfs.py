"""Just enough of the squashfs 4.0 format to find and decompress a regular file's data
blocks, given the file's inode number (as squashfuse_ll reports it in `st_ino`).

The launch uses it to decompress part of the command's file on the launcher's own threads
while squashfuse decompresses the rest (runtime/image/fill.py): squashfuse serves one
request at a time, and a cold launch is bound by its decompression.

What is read: the superblock, the export table (inode number -> inode reference; mksquashfs
writes it unless `-no-exports`), the file's inode in the inode table (metadata blocks of at
most 8 KiB), and its data blocks. Only zlib (mksquashfs' `gzip`, the default) and xz have a
decompressor in Python's standard library; other images are left to squashfuse. Everything
is bounds-checked: a malformed image raises `SquashfsError`, never reads outside the file
or decompresses more than a block.
"""

from __future__ import annotations

import os
import struct

from shifter.errors import ShifterError

MAGIC = 0x73717368
SUPERBLOCK = struct.Struct("<IIIIIHHHHHHQQQQQQQQ")
METADATA_SIZE = 8192
METADATA_UNCOMPRESSED = 0x8000
BLOCK_UNCOMPRESSED = 1 << 24
NO_TABLE = 0xFFFFFFFFFFFFFFFF
NO_FRAGMENT = 0xFFFFFFFF
INODE_HEADER = struct.Struct("<HHHHII")  # type, mode, uid, gid, mtime, inode number
BASIC_FILE = 2, struct.Struct("<IIII")  # blocks start, fragment, offset, size
EXTENDED_FILE = 9, struct.Struct("<QQQIIII")  # start, size, sparse, nlink, frag, off, xattr
ZLIB, XZ = 1, 4
MAX_BLOCK = 1 << 20  # the format's largest block size


class SquashfsError(ShifterError):
    """The image is not a squashfs this reader can use."""


class FileBlocks:
    """A regular file's data blocks: (position in the image, stored size, compressed),
    the first `len(blocks)` blocks of the file (a tail in a fragment is not among them)."""

    __slots__ = ("block_size", "blocks", "mtime", "size")

    def __init__(self, size: int, mtime: int, block_size: int, blocks: list[tuple[int, int, bool]]):
        self.size, self.mtime, self.block_size, self.blocks = size, mtime, block_size, blocks


class Squashfs:
    """An open squashfs image (a descriptor of the caller's, not closed here)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.length = os.fstat(fd).st_size
        head = self._read(0, SUPERBLOCK.size)
        fields = SUPERBLOCK.unpack(head)
        magic, self.inode_count, self.block_size = fields[0], fields[1], fields[3]
        self.compression, block_log, major = fields[5], fields[6], fields[9]
        self.inode_table, self.export_table = fields[15], fields[18]
        if magic != MAGIC or major != 4:
            raise SquashfsError("not a squashfs 4.0 image")
        if not 4096 <= self.block_size <= MAX_BLOCK or self.block_size != 1 << block_log:
            raise SquashfsError(f"unusable block size {self.block_size}")
        if self.compression not in (ZLIB, XZ):
            raise SquashfsError(f"compressor {self.compression} has no Python decompressor")
        if self.export_table == NO_TABLE:
            raise SquashfsError("the image has no export table (mksquashfs -no-exports)")

    def _read(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.length:
            raise SquashfsError(f"{size} bytes at {offset} are outside the image")
        data = os.pread(self.fd, size, offset)
        if len(data) != size:
            raise SquashfsError(f"short read at {offset}")
        return data

    def decompress(self, data: bytes, limit: int) -> bytes:
        """One block's data, at most `limit` bytes of it (never more is produced); the
        stream must end there, its checksum verified."""
        if self.compression == ZLIB:
            import zlib

            inflater = zlib.decompressobj()
            try:
                out = inflater.decompress(data, limit)
            except zlib.error as error:
                raise SquashfsError(f"corrupt block: {error}") from None
            ended = inflater.eof
        else:
            import lzma

            unxz = lzma.LZMADecompressor(lzma.FORMAT_XZ)
            try:
                out = unxz.decompress(data, limit)
            except lzma.LZMAError as error:
                raise SquashfsError(f"corrupt block: {error}") from None
            ended = unxz.eof
        if not ended:
            raise SquashfsError(f"a compressed block does not end within {limit} bytes")
        return out

    def _metadata(self, position: int) -> tuple[bytes, int]:
        """The metadata block at `position`: its data and the next block's position."""
        (word,) = struct.unpack("<H", self._read(position, 2))
        size = word & ~METADATA_UNCOMPRESSED
        if not 0 < size <= METADATA_SIZE:
            raise SquashfsError(f"bad metadata block at {position}")
        stored = self._read(position + 2, size)
        data = stored if word & METADATA_UNCOMPRESSED else self.decompress(stored, METADATA_SIZE)
        return data, position + 2 + size

    def _metadata_bytes(self, position: int, offset: int, size: int) -> bytes:
        """`size` bytes from `offset` in the metadata blocks that start at `position`."""
        out = b""
        while len(out) < offset + size:
            data, position = self._metadata(position)
            if not data:
                raise SquashfsError("empty metadata block")
            out += data
        return out[offset : offset + size]

    def inode_reference(self, number: int) -> int:
        """The inode reference of inode `number` (1-based), from the export table."""
        if not 1 <= number <= self.inode_count:
            raise SquashfsError(f"no inode {number}")
        index, slot = divmod(number - 1, METADATA_SIZE // 8)
        (block,) = struct.unpack("<Q", self._read(self.export_table + 8 * index, 8))
        data, _ = self._metadata(block)
        if len(data) < 8 * slot + 8:
            raise SquashfsError("export table ends early")
        (reference,) = struct.unpack_from("<Q", data, 8 * slot)
        return reference

    def regular_file(self, number: int, limit: int) -> FileBlocks:
        """Inode `number`, which must be a regular file: its first data blocks, covering
        at most `limit` bytes."""
        reference = self.inode_reference(number)
        start = self.inode_table + (reference >> 16)
        offset = reference & 0xFFFF
        header = self._metadata_bytes(start, offset, INODE_HEADER.size)
        kind, _, _, _, mtime, found = INODE_HEADER.unpack(header)
        if found != number:
            raise SquashfsError(f"inode {number} holds inode {found}")
        if kind == BASIC_FILE[0]:
            layout = BASIC_FILE[1]
        elif kind == EXTENDED_FILE[0]:
            layout = EXTENDED_FILE[1]
        else:
            raise SquashfsError(f"inode {number} is not a regular file")
        fields = layout.unpack(self._metadata_bytes(start, offset + INODE_HEADER.size, layout.size))
        if kind == BASIC_FILE[0]:
            blocks_start, fragment, _, size = fields
        else:
            blocks_start, size, _, _, fragment, _, _ = fields
        fixed = INODE_HEADER.size + layout.size
        full, tail = divmod(size, self.block_size)
        count = full + (1 if tail and fragment == NO_FRAGMENT else 0)
        count = min(count, -(-limit // self.block_size))
        words = self._metadata_bytes(start, offset + fixed, 4 * count)
        blocks = []
        position = blocks_start
        for (word,) in struct.iter_unpack("<I", words):
            stored = word & ~BLOCK_UNCOMPRESSED
            if stored > self.block_size or position + stored > self.length:
                raise SquashfsError(f"inode {number}: a data block lies outside the image")
            blocks.append((position, stored, not word & BLOCK_UNCOMPRESSED))
            position += stored
        return FileBlocks(size, mtime, self.block_size, blocks)

    def block(self, blocks: FileBlocks, index: int) -> bytes:
        """Data block `index` of the file, decompressed (zeros for a sparse block)."""
        position, stored, compressed = blocks.blocks[index]
        length = min(blocks.block_size, blocks.size - index * blocks.block_size)
        if stored == 0:
            return bytes(length)
        data = self._read(position, stored)
        out = self.decompress(data, length) if compressed else data
        if len(out) != length:
            raise SquashfsError(f"block {index} holds {len(out)} bytes, not {length}")
        return out
