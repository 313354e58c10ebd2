"""The C library through ctypes, and the error every wrapper in `shifter.sys` raises."""

from __future__ import annotations

import ctypes
import enum
import errno
import os
from functools import cache

from shifter.errors import ShifterError


class SyscallError(ShifterError):
    """A system call failed: `operation(arguments)` and the errno it returned."""

    def __init__(
        self,
        operation: str,
        arguments: tuple[object, ...],
        errno_value: int,
        *,
        hint: str | None = None,
    ) -> None:
        self.operation = operation
        self.arguments = arguments
        self.errno = errno_value
        shown = ", ".join(_show(argument) for argument in arguments)
        name = errno.errorcode.get(errno_value, str(errno_value))
        super().__init__(
            f"{operation}({shown}) failed: {name} ({os.strerror(errno_value)})", hint=hint
        )


def _show(argument: object) -> str:
    # Flags print by name (`BIND|REC`), strings and paths quoted, None as NULL.
    if isinstance(argument, enum.Flag):
        return argument.name or "0"
    if isinstance(argument, str):
        return repr(argument)
    if argument is None:
        return "NULL"
    return str(argument)


@cache
def libc() -> ctypes.CDLL:
    """The process's C library (already loaded: opening it again is only a lookup)."""
    return ctypes.CDLL(None, use_errno=True)


def encode(value: str | None) -> bytes | None:
    """A path or string argument as the C library wants it (None stays NULL)."""
    return None if value is None else os.fsencode(value)


def check(result: int, operation: str, *arguments: object) -> int:
    """Return `result`, or raise `SyscallError` with errno when it is -1."""
    if result == -1:
        raise SyscallError(operation, arguments, ctypes.get_errno())
    return result


def raise_oserror(error: OSError, operation: str, *arguments: object) -> SyscallError:
    """The `SyscallError` for a call the standard library made and failed (os.chroot, ...)."""
    return SyscallError(operation, arguments, error.errno or errno.EIO)
