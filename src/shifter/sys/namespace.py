"""unshare(2), setns(2) and the id maps of a new user namespace.

On the enter path (see libc.py): no `enum`; `Namespace` values are plain ints.
"""

from __future__ import annotations

import ctypes
import os

from shifter.sys.libc import Constants, Named, check, libc, raise_oserror

NS_GET_OWNER_UID = 0xB704  # _IO(0xb7, 0x4), linux/nsfs.h


class Namespace(Constants):
    """The CLONE_NEW* flags of unshare(2) and setns(2)."""

    NEWNS = 0x00020000
    NEWCGROUP = 0x02000000
    NEWUTS = 0x04000000
    NEWIPC = 0x08000000
    NEWUSER = 0x10000000
    NEWPID = 0x20000000
    NEWNET = 0x40000000


def unshare(flags: int) -> None:
    """unshare(2) with `Namespace` flags. (os.unshare exists only from Python 3.12.)"""
    check(libc().unshare(ctypes.c_int(flags)), "unshare", Named(Namespace, flags))


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2) into the namespace `fd` refers to (0: any type)."""
    result = libc().setns(ctypes.c_int(fd), ctypes.c_int(nstype))
    check(result, "setns", fd, Named(Namespace, nstype))


def owner_uid(fd: int) -> int:
    """The uid (as this process's namespace sees it) owning the user namespace `fd`
    refers to (ioctl NS_GET_OWNER_UID; EINVAL for any other kind of file)."""
    value = ctypes.c_uint(0)
    result = libc().ioctl(ctypes.c_int(fd), ctypes.c_ulong(NS_GET_OWNER_UID), ctypes.byref(value))
    check(result, "ioctl", fd, "NS_GET_OWNER_UID")
    return value.value


def _write_proc(name: str, text: str) -> None:
    path = f"/proc/self/{name}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as error:
        raise raise_oserror(error, "write", path, text) from None


def enter_user_namespace(uid: int, gid: int, flags: int = 0) -> None:
    """Unshare a user namespace in which this process keeps its own uid and gid.

    Only the caller's own ids are mapped (what an unprivileged process may write), so
    setgroups must be denied first: the supplementary groups stay what they were and show
    as the overflow gid. The process has every capability inside the new namespace until
    it execs a program as a non-zero uid. `flags`: more namespaces to unshare with it.
    """
    unshare(Namespace.NEWUSER | flags)
    _write_proc("setgroups", "deny")
    _write_proc("uid_map", f"{uid} {uid} 1")
    _write_proc("gid_map", f"{gid} {gid} 1")
