"""Loop devices: the ioctls of /dev/loop-control and /dev/loopN, and their device nodes.

- `get_free`: LOOP_CTL_GET_FREE, the number of an unbound device (the kernel creates one
  when none is free);
- `configure`: bind a file in one step with LOOP_CONFIGURE (Linux 5.8), else LOOP_SET_FD
  followed by LOOP_SET_STATUS64 (where the file's open mode decides read-only);
- `status`: LOOP_GET_STATUS64: the backing file's device and inode, offset, size limit,
  flags (ENXIO: the device is not bound);
- `clear`: LOOP_CLR_FD (on a device still open elsewhere the kernel only sets autoclear);
- `device_node`: /dev/loopN, made with mknod from /sys/block/loopN/dev when missing
  (machines without udev).

Every failure raises `SyscallError` naming the ioctl, the device and errno.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct

from shifter.sys.libc import Constants, Named, SyscallError, raise_oserror

LOOP_CONTROL = "/dev/loop-control"
SYS_BLOCK = "/sys/block"
LO_NAME_SIZE = 64
# struct loop_info64 (linux/loop.h): device, inode, rdevice, offset, sizelimit (u64);
# number, encrypt_type, encrypt_key_size, flags (u32); file_name, crypt_name (64 bytes),
# encrypt_key (32 bytes); init (2 x u64). 232 bytes.
_INFO64 = struct.Struct("=5Q4I64s64s32s2Q")
# struct loop_config: fd, block_size (u32), loop_info64, 8 reserved u64. 304 bytes.
_CONFIG = struct.Struct(f"=2I{_INFO64.size}s8Q")


# Plain ints (`Constants`), not enum: importing enum costs setupRoot ~3 ms.
class LoopIoctl(Constants):
    """Request numbers of the loop driver (linux/loop.h)."""

    SET_FD = 0x4C00
    CLR_FD = 0x4C01
    SET_STATUS64 = 0x4C04
    GET_STATUS64 = 0x4C05
    CONFIGURE = 0x4C0A
    CTL_ADD = 0x4C80
    CTL_REMOVE = 0x4C81
    CTL_GET_FREE = 0x4C82


class LoopFlag(Constants):
    """lo_flags of struct loop_info64."""

    READ_ONLY = 1
    AUTOCLEAR = 4
    PARTSCAN = 8
    DIRECT_IO = 16


NO_LOOP_FLAGS = 0


class LoopStatus:
    """What LOOP_GET_STATUS64 says about a bound device. `device`/`inode` identify the
    backing file (st_dev/st_ino, in the encoding os.stat reports)."""

    __slots__ = ("device", "file_name", "flags", "inode", "number", "offset", "size_limit")

    def __init__(
        self,
        *,
        number: int,
        device: int,
        inode: int,
        offset: int,
        size_limit: int,
        flags: int,
        file_name: str,
    ) -> None:
        self.number = number
        self.device = device
        self.inode = inode
        self.offset = offset
        self.size_limit = size_limit
        self.flags = flags
        self.file_name = file_name

    def __repr__(self) -> str:
        flags = LoopFlag.describe(self.flags)
        return f"LoopStatus(loop{self.number}, {self.file_name!r}, {flags})"


def _ioctl(fd: int, request: int, argument: int | bytes | bytearray, what: str) -> int:
    try:
        if isinstance(argument, bytearray):
            return fcntl.ioctl(fd, request, argument, True)
        result = fcntl.ioctl(fd, request, argument)
    except OSError as error:
        raise raise_oserror(error, "ioctl", what, Named(LoopIoctl, request)) from None
    return result if isinstance(result, int) else 0


def _info(flags: int, file_name: str) -> bytes:
    name = os.fsencode(file_name)[: LO_NAME_SIZE - 1]
    return _INFO64.pack(0, 0, 0, 0, 0, 0, 0, 0, int(flags), name, b"", b"", 0, 0)


def get_free(control_fd: int) -> int:
    """The number of a free loop device (LOOP_CTL_GET_FREE on /dev/loop-control)."""
    return _ioctl(control_fd, LoopIoctl.CTL_GET_FREE, 0, LOOP_CONTROL)


def configure(loop_fd: int, file_fd: int, flags: int, *, file_name: str, what: str) -> None:
    """Bind the open file `file_fd` to the loop device `loop_fd` with `flags`.

    EBUSY: someone bound the device first (pick another). Kernels before 5.8 lack
    LOOP_CONFIGURE (EINVAL): the device is then bound and configured in two ioctls.
    """
    info = _info(flags, file_name)
    try:
        _ioctl(loop_fd, LoopIoctl.CONFIGURE, _CONFIG.pack(file_fd, 0, info, *[0] * 8), what)
        return
    except SyscallError as error:
        if error.errno != errno.EINVAL:
            raise
    _ioctl(loop_fd, LoopIoctl.SET_FD, file_fd, what)
    try:
        _ioctl(loop_fd, LoopIoctl.SET_STATUS64, info, what)
    except SyscallError:
        clear(loop_fd, what)
        raise


def status(loop_fd: int, what: str) -> LoopStatus:
    """LOOP_GET_STATUS64 (ENXIO when the device is not bound)."""
    buffer = bytearray(_INFO64.size)
    _ioctl(loop_fd, LoopIoctl.GET_STATUS64, buffer, what)
    fields = _INFO64.unpack(buffer)
    return LoopStatus(
        number=fields[5],
        device=fields[0],
        inode=fields[1],
        offset=fields[3],
        size_limit=fields[4],
        flags=fields[8],
        file_name=os.fsdecode(fields[9].split(b"\0", 1)[0]),
    )


def clear(loop_fd: int, what: str) -> None:
    """LOOP_CLR_FD: unbind now, or (device still open elsewhere) when it is last closed."""
    _ioctl(loop_fd, LoopIoctl.CLR_FD, 0, what)


def device_path(number: int) -> str:
    return f"/dev/loop{number}"


def device_node(number: int) -> str:
    """The path of loop device `number`, made (mknod, mode 0660) when the kernel has it but
    /dev does not (no udev)."""
    path = device_path(number)
    try:
        if stat.S_ISBLK(os.stat(path).st_mode):
            return path
    except FileNotFoundError:
        pass
    except OSError as error:
        raise raise_oserror(error, "stat", path) from None
    numbers = f"{SYS_BLOCK}/loop{number}/dev"
    try:
        with open(numbers, "rb") as file:
            major, _, minor = file.read().strip().partition(b":")
        os.mknod(path, stat.S_IFBLK | 0o660, os.makedev(int(major), int(minor)))
    except FileExistsError:
        pass  # made by someone else meanwhile
    except (OSError, ValueError) as error:
        if isinstance(error, OSError):
            raise raise_oserror(error, "mknod", path) from None
        raise SyscallError("mknod", (path, numbers), errno.EINVAL) from None
    return path
