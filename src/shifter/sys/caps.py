"""Capabilities and the prctl(2) switches of the privilege drop.

`capset`/`capget` use the v3 (64-bit) ABI. The bounding set is cleared one capability at a
time up to `last_cap()`; ambient capabilities are cleared with PR_CAP_AMBIENT.

On the enter path (see libc.py): no `enum`; `Prctl` values are plain ints.
"""

from __future__ import annotations

import ctypes

from shifter.sys.libc import Constants, Named, check, libc

LINUX_CAPABILITY_VERSION_3 = 0x20080522
# The capability sets are 64-bit masks: a larger number means a kernel we do not know.
CAP_LIMIT = 63


class Prctl(Constants):
    """The prctl(2) options shifter uses."""

    SET_PDEATHSIG = 1
    CAPBSET_READ = 23
    CAPBSET_DROP = 24
    SET_NO_NEW_PRIVS = 38
    GET_NO_NEW_PRIVS = 39
    CAP_AMBIENT = 47


PR_CAP_AMBIENT_CLEAR_ALL = 4


class _Header(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _Data(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2) with a `Prctl` option; returns its (non-negative) result."""
    args = [ctypes.c_ulong(arg) for arg in (arg2, arg3, arg4, arg5)]
    result = libc().prctl(ctypes.c_int(option), *args)
    return check(result, "prctl", Named(Prctl, option), arg2, arg3, arg4, arg5)


def last_cap() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as file:
            number = int(file.read())
    except (OSError, ValueError):
        # No /proc (or an odd one): probe; PR_CAPBSET_READ fails past the last one.
        number = 0
        while number < CAP_LIMIT:
            if libc().prctl(ctypes.c_int(Prctl.CAPBSET_READ), ctypes.c_ulong(number + 1)) < 0:
                break
            number += 1
    if not 0 <= number <= CAP_LIMIT:
        raise ValueError(f"cap_last_cap {number} is out of range (0..{CAP_LIMIT})")
    return number


def drop_bounding_set() -> None:
    """Remove every capability from the bounding set (needs CAP_SETPCAP)."""
    for capability in range(last_cap() + 1):
        prctl(Prctl.CAPBSET_DROP, capability)


def clear_ambient() -> None:
    prctl(Prctl.CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def set_no_new_privs() -> None:
    prctl(Prctl.SET_NO_NEW_PRIVS, 1)


def capget() -> tuple[int, int, int]:
    """This thread's (effective, permitted, inheritable) sets as 64-bit masks."""
    header = _Header(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    check(libc().capget(ctypes.byref(header), data), "capget")
    return tuple(  # type: ignore[return-value]
        getattr(data[0], name) | getattr(data[1], name) << 32
        for name in ("effective", "permitted", "inheritable")
    )


def clear_capabilities() -> None:
    """Empty the effective, permitted and inheritable sets of this thread."""
    header = _Header(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    check(libc().capset(ctypes.byref(header), data), "capset", "all sets empty")
