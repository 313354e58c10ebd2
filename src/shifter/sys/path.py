"""openat2(2) with RESOLVE_IN_ROOT: the kernel's own "resolve as if chrooted" lookup.

Kernels before 5.6 lack it, so the runtime resolves container paths itself
(`shifter.runtime.volumes.pathguard`); the tests use this as the independent reference.
"""

from __future__ import annotations

import ctypes
import os

from shifter.sys.libc import Constants, Named, check, encode, libc

SYS_OPENAT2 = 437  # the same number on every architecture (a "new" syscall)


class Resolve(Constants):
    """RESOLVE_* flags of struct open_how (plain ints: the launch's read-ahead uses them,
    and `enum` costs it ~1.5 ms)."""

    NO_XDEV = 0x01
    NO_MAGICLINKS = 0x02
    NO_SYMLINKS = 0x04
    BENEATH = 0x08
    IN_ROOT = 0x10
    CACHED = 0x20


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


def openat2(dir_fd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2); returns the new descriptor."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    result = libc().syscall(
        ctypes.c_long(SYS_OPENAT2),
        ctypes.c_int(dir_fd),
        encode(path),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    return check(result, "openat2", dir_fd, path, Named(Resolve, resolve))
