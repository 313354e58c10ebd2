"""Changing the root directory: chroot(2) and pivot_root(2)."""

from __future__ import annotations

import ctypes
import os

from shifter.sys.libc import check, encode, libc, raise_oserror


def chroot(path: str) -> None:
    """chdir into `path`, chroot(2) to it, chdir to the new "/" (no handle left outside)."""
    try:
        os.chdir(path)
        os.chroot(".")
        os.chdir("/")
    except OSError as error:
        raise raise_oserror(error, "chroot", path) from None


def chroot_cwd() -> None:
    """chroot(2) to the working directory, then chdir to the new "/"."""
    try:
        os.chroot(".")
        os.chdir("/")
    except OSError as error:
        raise raise_oserror(error, "chroot", os.getcwd()) from None


def _pivot_root_number() -> int:
    machine = os.uname().machine
    numbers = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "ppc64": 203}
    if machine not in numbers:
        raise NotImplementedError(f"pivot_root syscall number unknown on {machine}")
    return numbers[machine]


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2) (glibc has no wrapper)."""
    result = libc().syscall(ctypes.c_long(_pivot_root_number()), encode(new_root), encode(put_old))
    check(result, "pivot_root", new_root, put_old)
