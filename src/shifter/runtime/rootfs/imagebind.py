"""Putting image content into the container root (the original's `bindImageIntoUDI`).

For each entry of an image directory (the image's `/`, then `/var`, `/opt`, and `/etc`):

- an entry the container already has is skipped: what the site put there wins (so the
  image's /etc/passwd, /var/run, /opt/udiImage never show);
- a symlink is copied as a symlink;
- a regular file under 5 MiB is copied (mode kept, setuid/setgid bits dropped); a larger
  one is bind-mounted onto an empty file, except under /etc where it is left out; one the
  user cannot read (/etc/gshadow) is bind-mounted, keeping its permissions;
- a directory is bind-mounted (under /etc too: the original copied /etc's directories,
  which costs every launch a tree copy; they are read-only binds here);
- devices, FIFOs and sockets are left out.

Every entry is opened with O_NOFOLLOW and bound or copied through that descriptor, so an
entry swapped for a symlink (a `local:` image is a host directory) cannot redirect it.
Unlike the original, names are not filtered: we never pass them to a shell.
"""

from __future__ import annotations

import errno
import os
import stat

from shifter.runtime.rootfs.binds import bind, make_mount_point
from shifter.runtime.volumes.pathguard import fd_path
from shifter.sys.mount import MountFlag

TYPE_CHECKING = False  # the launch path: `collections` costs it ~1 ms
if TYPE_CHECKING:
    from collections.abc import Collection

COPY_LIMIT = 5 * 1024 * 1024
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class ImageTree:
    """How image content is added: the bind flags and whether binds are recursive (a host
    directory used as an image may hold other mounts). (Plain class: launch path.)"""

    __slots__ = ("flags", "recursive", "skip", "source_flags")

    def __init__(
        self,
        flags: MountFlag,
        *,
        recursive: bool,
        skip: Collection[str],
        source_flags: MountFlag | None = None,
    ) -> None:
        self.flags = flags
        self.recursive = recursive
        self.skip = skip  # host paths never bound in (udiMount, loopMount)
        # The flags of the one mount all entries are on (an image file's mount), if known.
        self.source_flags = source_flags

    def add(self, image_dir: str, container_dir: str, *, etc: bool = False) -> None:
        """Add the entries of host directory `image_dir` to `container_dir`."""
        try:
            dir_fd = os.open(image_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            if error.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return  # the image has no such directory (or a symlink there): nothing to add
            raise
        try:
            for name in os.listdir(dir_fd):
                if os.path.join(image_dir, name) in self.skip:
                    continue
                destination = os.path.join(container_dir, name)
                if os.path.lexists(destination):
                    continue
                self._add_entry(dir_fd, name, destination, etc=etc)
        finally:
            os.close(dir_fd)

    def _add_entry(self, dir_fd: int, name: str, destination: str, *, etc: bool) -> None:
        fd = os.open(name, _PATH_FLAGS, dir_fd=dir_fd)
        try:
            info = os.fstat(fd)
            if stat.S_ISLNK(info.st_mode):
                os.symlink(os.readlink("", dir_fd=fd), destination)
            elif stat.S_ISREG(info.st_mode):
                if info.st_size < COPY_LIMIT and copy_file(fd, destination, info.st_mode):
                    return
                if info.st_size < COPY_LIMIT or not etc:
                    # Too large to copy, or unreadable to the user (/etc/gshadow): bound,
                    # as it is, with its own permissions.
                    make_mount_point(destination, directory=False)
                    bind(fd_path(fd), destination, flags=self.flags, source_flags=self.source_flags)
            elif stat.S_ISDIR(info.st_mode):
                make_mount_point(destination, directory=True)
                bind(
                    fd_path(fd),
                    destination,
                    flags=self.flags,
                    recursive=self.recursive,
                    source_flags=self.source_flags,
                )
        finally:
            os.close(fd)


def copy_file(source_fd: int, destination: str, mode: int) -> bool:
    """Copy the regular file behind the O_PATH descriptor `source_fd` to a new file;
    False (nothing created) when the caller may not read it."""
    mode = stat.S_IMODE(mode) & 0o1777  # never setuid/setgid in the container's own files
    try:
        source = os.open(fd_path(source_fd), os.O_RDONLY | os.O_CLOEXEC)
    except PermissionError:
        return False
    try:
        target = os.open(
            destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode
        )
        try:
            offset = 0
            while True:
                sent = os.sendfile(target, source, offset, COPY_LIMIT)
                if sent == 0:
                    break
                offset += sent
            os.fchmod(target, mode)  # the umask must not change what the image says
        finally:
            os.close(target)
    finally:
        os.close(source)
    return True
