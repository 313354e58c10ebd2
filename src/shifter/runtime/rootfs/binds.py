"""Bind-mount mechanics shared by every part of the container (the original's
`_shifterCore_bindMount`), for both the unprivileged and the privileged build.

A bind is made, then remounted with the restrictions it must have (always nosuid; nodev
unless the source is /dev; rdonly when asked), keeping the restrictions the source mount
already has (a user namespace refuses to lift them), then given its propagation. A bind
whose flags are already what is wanted (image content: the image is mounted nosuid,
nodev, ro) skips the remount.

A recursive bind brings the source's submounts along, and a remount would restrict only
the top one: the restrictions are added to every mount of the tree instead
(mount_setattr with AT_RECURSIVE; before Linux 5.12, each mount of the tree found in
/proc/self/mountinfo is remounted). A read-only site filesystem is then read-only all
the way down, and no submount brings back setuid or device files.

Volumes, whose destination a user influences, are made race-free: the source and the
destination are O_PATH descriptors from the path guard, the bind is made and configured at
a staging directory only we can reach, and then moved onto the destination descriptor. A
symlink swapped into the destination path after it was checked cannot redirect the mount.
"""

from __future__ import annotations

import errno
import os

from shifter.sys.libc import SyscallError
from shifter.sys.mount import NO_FLAGS, MountFlag, add_restrictions, kept_flags, mount

BIND_RESTRICTIONS = MountFlag.NOSUID | MountFlag.NODEV | MountFlag.RDONLY


def restrictions(*, read_only: bool, nodev: bool = True) -> MountFlag:
    """The flags a bind of content gets: nosuid always, nodev and rdonly as asked."""
    flags = MountFlag.NOSUID
    if nodev:
        flags |= MountFlag.NODEV
    if read_only:
        flags |= MountFlag.RDONLY
    return flags


def bind(
    source: str,
    target: str,
    *,
    flags: MountFlag,
    recursive: bool = False,
    propagation: MountFlag | None = None,
    source_flags: MountFlag | None = None,
) -> None:
    """Bind `source` onto the existing `target` and give it `flags` (see `restrictions`)
    and, when given, `propagation` (PRIVATE or SLAVE). `source_flags`: the flags of the
    mount `source` is on, when the caller knows them (a bind copies them): saves a statvfs,
    which on a FUSE image is a round trip to its server."""
    rec = MountFlag.REC if recursive else NO_FLAGS
    mount(source, target, None, MountFlag.BIND | rec)
    if recursive:
        restrict_tree(target, flags)
    else:
        restrict(target, flags, source_flags)
    if propagation is not None:
        mount(None, target, None, propagation | rec)


def restrict(target: str, flags: MountFlag, current: MountFlag | None = None) -> None:
    """Add `flags` to the one mount at `target` (a remount repeating its `current` flags,
    read with statvfs when not given), unless it has them already."""
    if current is None:
        current = kept_flags(target)
    if flags & ~current:
        mount(None, target, None, MountFlag.REMOUNT | MountFlag.BIND | current | flags)


def restrict_tree(target: str, flags: MountFlag) -> None:
    """Add `flags` to the mount at `target` and to every mount below it."""
    try:
        add_restrictions(target, flags, recursive=True)
    except SyscallError as error:
        if error.errno != errno.ENOSYS:
            raise
        restrict_each(target, flags)


def restrict_each(target: str, flags: MountFlag) -> None:
    """`restrict_tree` without mount_setattr: each mount point at or below `target` in this
    namespace's table, parents first, is remounted (a mount hidden under another at the
    same place cannot be reached, and cannot be reached from the container either)."""
    from shifter.runtime.rootfs.mountinfo import mounts_at_or_under, read_mountinfo

    done = set()
    for entry in mounts_at_or_under(read_mountinfo(), os.path.realpath(target)):
        if entry.mount_point not in done:
            done.add(entry.mount_point)
            restrict(entry.mount_point, flags)


def bind_staged(
    source: str,
    target: str,
    staging: str,
    *,
    flags: MountFlag,
    recursive: bool = False,
    propagation: MountFlag | None = None,
) -> None:
    """`bind`, but configured at `staging` (an empty directory nobody else can change) and
    then moved onto `target`. `source` and `target` may be `/proc/self/fd/N` paths."""
    bind(source, staging, flags=flags, recursive=recursive, propagation=propagation)
    mount(staging, target, None, MountFlag.MOVE)


def make_mount_point(path: str, *, directory: bool) -> None:
    """An empty directory or file to bind onto (a file for a file bind)."""
    if directory:
        os.mkdir(path, 0o755)
    else:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
