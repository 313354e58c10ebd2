"""mount(2), umount2(2), mount_setattr(2) and the mount flags a remount must keep.

In a user namespace, a mount inherited from the host is "locked": a remount may add
restrictions (nosuid, nodev, rdonly, noexec) but must repeat the ones it already has, and
must not change its atime mode. `kept_flags` reads them (statvfs) so a bind's remount can
carry them over.

A remount changes one mount, never the mounts below it (a recursive bind's submounts keep
their own flags). `add_restrictions` (mount_setattr, Linux 5.12) adds flags to a whole
tree at once and, as it only sets bits, needs no flags repeated.

The flags are `libc.Constants` (plain ints), not `enum.IntFlag`s: `enum` with the
`functools` and `collections` it imports costs a cold `shifter` launch ~2.5 ms.
`MountFlag.describe(flags)` names them (`BIND|REC`), as errors do.
"""

from __future__ import annotations

import ctypes
import os

from shifter.sys.libc import Constants, Named, check, encode, libc, raise_oserror


class MountFlag(Constants):
    """The MS_* flags of mount(2)."""

    RDONLY = 1
    NOSUID = 2
    NODEV = 4
    NOEXEC = 8
    SYNCHRONOUS = 16
    REMOUNT = 32
    MANDLOCK = 64
    DIRSYNC = 128
    NOSYMFOLLOW = 256
    NOATIME = 1024
    NODIRATIME = 2048
    BIND = 4096
    MOVE = 8192
    REC = 16384
    SILENT = 32768
    UNBINDABLE = 1 << 17
    PRIVATE = 1 << 18
    SLAVE = 1 << 19
    SHARED = 1 << 20
    RELATIME = 1 << 21
    STRICTATIME = 1 << 24


NO_FLAGS = 0


class UmountFlag(Constants):
    """The flags of umount2(2)."""

    FORCE = 1
    DETACH = 2
    EXPIRE = 4
    NOFOLLOW = 8


NO_UMOUNT_FLAGS = 0

SYS_MOUNT_SETATTR = 442  # the same number on every architecture (a "new" syscall)
AT_FDCWD = -100


class AtFlag(Constants):
    """The AT_* flags of mount_setattr(2) that shifter uses."""

    NONE = 0
    RECURSIVE = 0x8000


# MS_* restriction -> its MOUNT_ATTR_* bit for mount_setattr(2).
_MOUNT_ATTR = (
    (MountFlag.RDONLY, 0x1),
    (MountFlag.NOSUID, 0x2),
    (MountFlag.NODEV, 0x4),
    (MountFlag.NOEXEC, 0x8),
)
RESTRICTIONS = MountFlag.RDONLY | MountFlag.NOSUID | MountFlag.NODEV | MountFlag.NOEXEC


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


# statvfs f_flag bit -> the MS_* flag a remount must repeat.
_STATVFS_KEPT = (
    (os.ST_RDONLY, MountFlag.RDONLY),
    (os.ST_NOSUID, MountFlag.NOSUID),
    (os.ST_NODEV, MountFlag.NODEV),
    (os.ST_NOEXEC, MountFlag.NOEXEC),
    (os.ST_NOATIME, MountFlag.NOATIME),
    (os.ST_NODIRATIME, MountFlag.NODIRATIME),
    (os.ST_RELATIME, MountFlag.RELATIME),
)
_ATIME_FLAGS = MountFlag.NOATIME | MountFlag.RELATIME


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int,
    data: str | None = None,
) -> None:
    """mount(2) with `MountFlag` bits; raises `SyscallError` naming every argument."""
    result = libc().mount(
        encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)
    )
    check(result, "mount", source, target, fstype, _flags(MountFlag, flags), data)


def _flags(family: type[Constants], flags: int) -> Named | int:
    # Named in a message, as the IntFlags were; no flag at all reads 0.
    return Named(family, flags) if flags else 0


def umount(target: str, flags: int = NO_UMOUNT_FLAGS) -> None:
    """umount2(2) with `UmountFlag` bits."""
    result = libc().umount2(encode(target), ctypes.c_int(flags))
    check(result, "umount2", target, _flags(UmountFlag, flags))


def add_restrictions(target: str, flags: int, *, recursive: bool) -> None:
    """mount_setattr(2): add `flags` (any of RDONLY, NOSUID, NODEV, NOEXEC) to the mount at
    `target` and, when `recursive`, to every mount below it. Nothing is cleared, so locked
    flags and atime modes stay as they are. Kernels before 5.12 raise ENOSYS."""
    if flags & ~RESTRICTIONS:
        raise ValueError(
            f"not a restriction mount_setattr can add: {MountFlag.describe(flags)}"
        )
    attr = _MountAttr(sum(bit for flag, bit in _MOUNT_ATTR if flags & flag), 0, 0, 0)
    at_flags = AtFlag.RECURSIVE if recursive else AtFlag.NONE
    result = libc().syscall(
        ctypes.c_long(SYS_MOUNT_SETATTR),
        ctypes.c_int(AT_FDCWD),
        encode(target),
        ctypes.c_uint(at_flags),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    check(result, "mount_setattr", target, _flags(MountFlag, flags), Named(AtFlag, at_flags))


def kept_flags(path: str) -> int:
    """The flags of the mount at `path` that a remount of it must repeat (atime mode too)."""
    try:
        info = os.statvfs(path)
    except OSError as error:
        raise raise_oserror(error, "statvfs", path) from None
    flags = NO_FLAGS
    for bit, flag in _STATVFS_KEPT:
        if info.f_flag & bit:
            flags |= flag
    if not flags & _ATIME_FLAGS:
        # Neither noatime nor relatime: the mount is strictatime, and must stay so.
        flags |= MountFlag.STRICTATIME
    return flags
