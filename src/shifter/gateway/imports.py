"""/api/doimport: a squashfs file a user prepared becomes a `custom` image.

The gateway usually runs as root or as a service account that can read far more than the
user asking, so "can the gateway open this path" proves nothing. `open_for_user` walks the
path the way the kernel would for the requesting user: one component at a time, relative
to the directory already reached, never following a symlink blindly. Every directory
passed must be searchable by the user and the file readable by the user (mode bits and
POSIX ACLs, with the user's uid, gid and supplementary groups); symlinks are resolved by
hand (at most 40, like the kernel) and checked like any other path, honouring the
protected_symlinks rule for sticky world-writable directories. The file must be a regular
file of bounded size that starts with a squashfs 4.0 superblock. The descriptor returned
is the very file that was checked, so renaming something into its place later changes
nothing.

The worker copies from that descriptor into ExpandDirectory and computes the id on the
copy (the user could rewrite their file mid-import): the original's `fasthash`, a sha256
of 1 MiB chunks taken every 512 MiB (plain sha256 for files up to 1 MiB).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

from shifter.gateway.failures import BadRequest, Forbidden
from shifter.gateway.records import Requester

FASTHASH_CHUNK = 1 << 20
FASTHASH_STRIDE = 512 << 20
MAX_SYMLINKS = 40
PATH_MAX = 4096
SQUASHFS_MAGIC = 0x73717368  # "hsqs" read as a little-endian u32
SUPERBLOCK_SIZE = 96
COPY_CHUNK = 1 << 24

_READ, _EXEC = 4, 1
_ACL_XATTR = "system.posix_acl_access"
_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20,
)


class ImportFileError(BadRequest):
    """The file cannot be imported (not a squashfs, too large, not a regular file)."""


class ImportDenied(Forbidden):
    """The requesting user may not read the file (or may not import at all)."""


def _acl_entries(fd: int) -> list[tuple[int, int, int]] | None:
    """The access ACL of an O_PATH descriptor as (tag, perm, id); None without one."""
    try:
        raw = os.getxattr(f"/proc/self/fd/{fd}", _ACL_XATTR)
    except OSError as error:
        if error.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return None
        raise
    if len(raw) < 4 or (len(raw) - 4) % 8:
        return None
    return [struct.unpack_from("<HHI", raw, offset) for offset in range(4, len(raw), 8)]


def permitted(who: Requester, info: os.stat_result, acl: list[tuple[int, int, int]] | None,
              want: int) -> bool:
    """The kernel's DAC check (owner, ACL users, groups, other) for `want` (r=4, x=1)."""
    if who.uid == 0:
        # Root reads anything and searches any directory (CAP_DAC_READ_SEARCH).
        return True
    mode = info.st_mode
    if info.st_uid == who.uid:
        return (mode >> 6) & want == want
    gids = who.all_gids
    if acl:
        mask = next((perm for tag, perm, _ in acl if tag == _ACL_MASK), 7)
        for tag, perm, ident in acl:
            if tag == _ACL_USER and ident == who.uid:
                return perm & mask & want == want
        matched = False
        for tag, perm, ident in acl:
            group_tag = tag == _ACL_GROUP_OBJ and info.st_gid in gids
            if group_tag or (tag == _ACL_GROUP and ident in gids):
                matched = True
                if perm & mask & want == want:
                    return True
        if matched:
            return False
        return (mode & 7) & want == want
    if info.st_gid in gids:
        return (mode >> 3) & want == want
    return mode & want == want


def _check(who: Requester, fd: int, want: int, what: str, path: str) -> os.stat_result:
    info = os.fstat(fd)
    if not permitted(who, info, _acl_entries(fd), want):
        verb = "read" if want == _READ else "search"
        raise ImportDenied(
            f"{who.describe()} may not {verb} {what} of {path}",
            hint="import a file you can read yourself, e.g. chmod o+r, or setfacl -m u:USER:r",
        )
    return info


@contextlib.contextmanager
def _opened(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def open_for_user(path: str, who: Requester, *, max_bytes: int) -> int:
    """A read-only descriptor of `path` if `who` may read it and it is a squashfs file of at
    most `max_bytes`; ImportDenied or ImportFileError otherwise. The caller closes it."""
    if not path.startswith("/") or len(path) > PATH_MAX or "\0" in path:
        raise ImportFileError(f"the import path must be an absolute path, not {path[:200]!r}")
    pending = [part for part in reversed(path.split("/")) if part]
    directory = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    links = 0
    try:
        while True:
            if not pending:
                raise ImportFileError(f"{path} names a directory, not a squashfs file")
            name = pending.pop()
            dir_info = _check(who, directory, _EXEC, "a directory on the way", path)
            if name == ".":
                continue
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
            except OSError as error:
                raise ImportFileError(
                    f"cannot import {path}: {os.strerror(error.errno or 0)}",
                    hint="give the absolute path of a file on a file system the gateway sees",
                ) from None
            info = os.fstat(fd)
            if stat.S_ISLNK(info.st_mode):
                links += 1
                sticky_open = dir_info.st_mode & stat.S_ISVTX and dir_info.st_mode & 0o002
                if links > MAX_SYMLINKS or (
                    sticky_open and info.st_uid not in (who.uid, dir_info.st_uid)
                ):
                    os.close(fd)
                    raise ImportDenied(f"{path}: refusing to follow a symlink there")
                target = os.readlink(name, dir_fd=directory)
                os.close(fd)
                pending.extend(part for part in reversed(target.split("/")) if part)
                if target.startswith("/"):
                    os.close(directory)
                    directory = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                continue
            if stat.S_ISDIR(info.st_mode):
                os.close(directory)
                directory = fd
                continue
            with _opened(fd):
                if pending:
                    raise ImportFileError(f"{path}: {name} is not a directory")
                if not stat.S_ISREG(info.st_mode):
                    raise ImportFileError(f"{path} is not a regular file")
                _check(who, fd, _READ, "the file", path)
                return _open_checked(directory, name, info, path, max_bytes)
    finally:
        os.close(directory)


def _open_checked(
    directory: int, name: str, info: os.stat_result, path: str, max_bytes: int
) -> int:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=directory)
    except OSError as error:
        raise ImportFileError(
            f"the gateway cannot read {path}: {os.strerror(error.errno or 0)}",
            hint="the file must also be readable by the account the gateway runs as",
        ) from None
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
        os.close(fd)
        raise ImportFileError(f"{path} changed while it was being checked; try again")
    try:
        check_squashfs(fd, opened.st_size, path, max_bytes)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_squashfs(fd: int, size: int, path: str, max_bytes: int) -> None:
    """A plausible squashfs 4.0 superblock and a size within the limit."""
    if size > max_bytes:
        raise ImportFileError(
            f"{path} is {size} bytes, more than the {max_bytes} bytes an import may be",
            hint="ask the gateway's administrators to raise SHIFTER_IMAGEGW_IMPORT_MAX_BYTES",
        )
    header = os.pread(fd, SUPERBLOCK_SIZE, 0)
    hint = "build it with mksquashfs DIR FILE -no-xattrs"
    if len(header) < SUPERBLOCK_SIZE:
        raise ImportFileError(f"{path} is too small to be a squashfs image", hint=hint)
    magic, _inodes, _mtime, block_size = struct.unpack_from("<IIII", header, 0)
    block_log, _flags, _ids, major = struct.unpack_from("<HHHH", header, 22)
    (bytes_used,) = struct.unpack_from("<Q", header, 40)
    if magic != SQUASHFS_MAGIC:
        raise ImportFileError(f"{path} is not a squashfs image (bad magic number)", hint=hint)
    if major != 4 or not 4096 <= block_size <= 1 << 20 or block_size != 1 << block_log:
        raise ImportFileError(
            f"{path} is not a squashfs 4.0 image the runtime can mount", hint=hint
        )
    if bytes_used > size:
        raise ImportFileError(f"{path} is truncated: its superblock says {bytes_used} bytes")


def copy_into(fd: int, dest: Path) -> None:
    """Copy the whole open file to `dest` (created 0600, fsynced)."""
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        offset = 0
        while True:
            try:
                copied = os.copy_file_range(fd, out, COPY_CHUNK, offset)
            except OSError as error:
                if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                chunk = os.pread(fd, COPY_CHUNK, offset)  # no in-kernel copy between these
                copied = os.write(out, chunk) if chunk else 0
            if copied == 0:
                break
            offset += copied
        os.fsync(out)
    finally:
        os.close(out)


def fasthash(path: Path) -> str:
    """The original's pseudo-hash (contract §4): 1 MiB read every 512 MiB, sha256."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        offset = 0
        while True:
            file.seek(offset)
            chunk = file.read(FASTHASH_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            offset += FASTHASH_STRIDE
    return digest.hexdigest()
