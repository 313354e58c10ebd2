"""Filling the page cache of the command's file from both ends at once.

A cold launch waits for the command's file to be read ahead through squashfuse (fuse.py),
and squashfuse decompresses one block at a time: ~0.6 ms per 128 KiB gzip block here,
while the launcher's other cores idle. So the read-ahead is split: squashfuse serves the
blocks from the front (the read-ahead thread asks for them in order) and the launcher's own
threads decompress blocks from the back (image/squashfs.py, zlib releases the GIL) and hand
them to the kernel with FUSE_NOTIFY_STORE on the FUSE descriptor the launcher opened, which
puts them in the file's page cache as if squashfuse had answered a read. The two meet in
the middle; the exec then finds every block in memory.

The store names the file by its FUSE node id. squashfuse_ll reports that id as `st_ino`
and uses the image's inode numbers for both (the root excepted), so the launcher takes the
inode with the file's `st_ino` from the image's export table, and stores nothing unless
that inode is a regular file with that very number, size and mtime. With the high-level
`squashfuse` (node ids of libfuse's own), an image without an export table or with another
compressor than gzip or xz, squashfuse reads everything as before. A failure only means
less is stored: the kernel asks squashfuse for what is missing.
"""

from __future__ import annotations

import _thread
import os
import struct

from shifter.image.squashfs import FileBlocks, Squashfs, SquashfsError

FUSE_NOTIFY_STORE = 4
# struct fuse_out_header (len, error = the notification's code, unique = 0), then
# struct fuse_notify_store_out (nodeid, offset, size, padding).
STORE_HEADER = struct.Struct("<IiQQQII")
MAX_THREADS = 4  # beyond that the image file's reads, not decompression, bound the fill


def store_message(nodeid: int, offset: int, data: bytes) -> bytes:
    """A FUSE_NOTIFY_STORE of `data` at `offset` in the file with node id `nodeid`."""
    header = STORE_HEADER.pack(STORE_HEADER.size + len(data), FUSE_NOTIFY_STORE, 0,
                               nodeid, offset, len(data), 0)  # fmt: skip
    return header + data


class Blocks:
    """Which blocks are still to do: the front is squashfuse's, the back the launcher's."""

    __slots__ = ("back", "front", "lock")

    def __init__(self, count: int) -> None:
        self.front, self.back = 0, count
        self.lock = _thread.allocate_lock()

    def take_front(self) -> int:
        """The next block from the front, or -1 when the two ends have met."""
        with self.lock:
            if self.front >= self.back:
                return -1
            self.front += 1
            return self.front - 1

    def take_back(self) -> int:
        with self.lock:
            if self.back <= self.front:
                return -1
            self.back -= 1
            return self.back


def fill_threads() -> int:
    """The launcher's decompressing threads: one per CPU it may use besides squashfuse's."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except OSError:
        cpus = 1
    return min(cpus - 1, MAX_THREADS)


class BackFill:
    """Threads that decompress the file's blocks from the back and store them; `wait`
    joins them. Built only when the file can be found in the image (else SquashfsError)."""

    __slots__ = (
        "blocks", "done", "file", "fuse_fd", "image", "image_fd", "nodeid", "running", "stored"
    )  # fmt: skip

    def __init__(self, image: str, fuse_fd: int, stat: os.stat_result, limit: int) -> None:
        self.image_fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.image = Squashfs(self.image_fd)
            self.file: FileBlocks = self.image.regular_file(stat.st_ino, limit)
        except BaseException:
            os.close(self.image_fd)
            raise
        if self.file.size != stat.st_size or self.file.mtime != int(stat.st_mtime):
            os.close(self.image_fd)
            raise SquashfsError(f"inode {stat.st_ino} of the image is not the file opened")
        self.fuse_fd, self.nodeid = fuse_fd, stat.st_ino
        self.blocks = Blocks(len(self.file.blocks))
        self.running = self.stored = 0
        self.done = _thread.allocate_lock()

    def start(self, threads: int) -> None:
        """Start `threads` (at least one) decompressing threads."""
        self.done.acquire()
        self.running = threads
        for _ in range(threads):
            _thread.start_new_thread(self._run, ())

    def _run(self) -> None:
        try:
            while (index := self.blocks.take_back()) >= 0:
                data = self.image.block(self.file, index)
                offset = index * self.file.block_size
                os.write(self.fuse_fd, store_message(self.nodeid, offset, data))
                with self.blocks.lock:
                    self.stored += 1
        except (OSError, SquashfsError):
            pass  # squashfuse reads what was not stored
        finally:
            with self.blocks.lock:
                self.running -= 1
                last = self.running == 0
            if last:
                self.done.release()

    def wait(self) -> None:
        """Join the threads and release the image's descriptor."""
        if self.running:
            self.done.acquire()
        os.close(self.image_fd)
