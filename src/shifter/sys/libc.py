"""The C library through ctypes, the error every wrapper in `shifter.sys` raises, and the
named constants of the modules on the enter path.

Entering a job's container (`shifter` in a setupRoot environment) must start within a few
milliseconds of the bare interpreter, and `enum` with the `functools` it imports costs more
than everything else that path loads. So this module imports neither: `Constants` gives
namespaces and prctl options names without `enum`, and an `enum.Flag` argument (mount
flags, from modules the enter path never loads) is recognised only if `enum` is loaded.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

from shifter.errors import ShifterError

# dlopen(NULL) only finds the C library the interpreter already loaded: no I/O, no side
# effect. One handle for the process, because a CDLL caches the functions looked up on it
# (a fresh handle per call costs ~15 µs; the privilege drop makes ~45 calls).
_LIBC = ctypes.CDLL(None, use_errno=True)


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


class Constants:
    """A family of named integer constants (class attributes in capitals). The values are
    plain ints, combined with `|`; `describe` names them for messages."""

    @classmethod
    def describe(cls, value: int) -> str:
        """`NEWNS|NEWUSER` for a combination of flags, the name for a single value."""
        names = {v: k for k, v in vars(cls).items() if k.isupper() and isinstance(v, int)}
        if value in names:
            return names[value]
        parts = [name for bit, name in sorted(names.items()) if bit and value & bit == bit]
        rest = value & ~sum(bit for bit, _ in names.items() if bit and value & bit == bit)
        if rest or not parts:
            parts.append(hex(rest))
        return "|".join(parts)


class Named:
    """A constant shown by name in an error message: `Named(Namespace, flags)`."""

    __slots__ = ("family", "value")

    def __init__(self, family: type[Constants], value: int) -> None:
        self.family = family
        self.value = value

    def __str__(self) -> str:
        return self.family.describe(self.value)


def _show(argument: object) -> str:
    # Flags print by name (`BIND|REC`), strings and paths quoted, None as NULL.
    enum = sys.modules.get("enum")  # an enum.Flag exists only if something loaded enum
    if enum is not None and isinstance(argument, enum.Flag):
        return argument.name or "0"
    if isinstance(argument, str):
        return repr(argument)
    if argument is None:
        return "NULL"
    return str(argument)


def libc() -> ctypes.CDLL:
    """The process's C library."""
    return _LIBC


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
