"""Kernel loop mounts for the privileged path (setupRoot): images, and perNodeCache files.

An image gets **one loop device per node**, whoever mounts it: before attaching, the
bound loop devices are searched for one backed by the same file (same st_dev and st_ino,
so hard links of one image share too), read-only, whole file; only when there is none is
a new one attached. The search and the attach happen under an exclusive flock on
/dev/loop-control, so two setups of one image at once still end with one device.

Every device is attached with autoclear and held open (an fd) until it is mounted: the
kernel then detaches it by itself when its last mount goes away, however that happens
(unsetupRoot, a lazy detach whose last process exits, a setup that failed half-way, a
killed process). Holding the fd also pins a device found by the search: it cannot be
cleared and rebound to another file between the check and the mount.

Image filesystems are mounted nosuid, nodev, ro. With autoLoadKernelModule=1, a missing
`loop` driver or filesystem (ENODEV) is loaded with modprobePath and the step retried.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from shifter.errors import ShifterError
from shifter.runtime.config.load import UdiRootConfig
from shifter.sys import loop
from shifter.sys.libc import SyscallError
from shifter.sys.mount import MountFlag, mount

IMAGE_MOUNT_FLAGS = MountFlag.NOSUID | MountFlag.NODEV | MountFlag.RDONLY
ATTACH_ATTEMPTS = 16  # LOOP_CTL_GET_FREE can race with other attachers (EBUSY)


class LoopError(ShifterError):
    """A loop device could not be found, attached or mounted."""


class LoopDevice:
    """A bound loop device this process holds open (which keeps autoclear from firing)."""

    __slots__ = ("fd", "number", "path", "shared")

    def __init__(self, number: int, path: str, fd: int, *, shared: bool) -> None:
        self.number = number
        self.path = path
        self.fd = fd
        self.shared = shared  # found bound to the file already, not attached by us

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __repr__(self) -> str:
        return f"LoopDevice({self.path}, shared={self.shared})"


def modprobe(config: UdiRootConfig, name: str) -> None:
    """Load kernel module `name` with modprobePath (only when autoLoadKernelModule=1)."""
    from shifter import proc

    proc.run([config.tool_path("modprobePath"), name], config_key="modprobePath")


def _open_control(config: UdiRootConfig) -> int:
    for attempt in range(2):
        try:
            return os.open(loop.LOOP_CONTROL, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            if attempt == 0 and config.auto_load_kernel_module:
                modprobe(config, "loop")
                continue
            raise LoopError(
                f"this machine has no loop devices ({loop.LOOP_CONTROL} is missing)",
                hint="load the loop driver (modprobe loop), or set autoLoadKernelModule=1",
            ) from None
        except OSError as error:
            raise LoopError(f"cannot open {loop.LOOP_CONTROL}: {error.strerror}") from None
    raise AssertionError("unreachable")


def _bound_to(identity: tuple[int, int]) -> LoopDevice | None:
    """A bound, read-only, whole-file loop device of the file `identity` (dev, ino)."""
    try:
        names = os.listdir(loop.SYS_BLOCK)
    except OSError:
        return None
    for name in names:
        if not (name.startswith("loop") and name[4:].isdigit()):
            continue
        try:
            with open(f"{loop.SYS_BLOCK}/{name}/loop/backing_file", "rb") as file:
                backing = os.fsdecode(file.read().rstrip(b"\n"))
            info = os.stat(backing)
        except OSError:
            continue  # unbound (no loop/ directory), or the file was renamed or deleted
        if (info.st_dev, info.st_ino) != identity:
            continue
        number = int(name[4:])
        path = loop.device_path(number)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        # The sysfs path was a hint; the device's own status (read while we hold it open,
        # so it cannot change under us) decides.
        try:
            status = loop.status(fd, path)
        except SyscallError:
            os.close(fd)
            continue
        if (
            (status.device, status.inode) == identity
            and status.offset == 0
            and status.size_limit == 0
            and status.flags & loop.LoopFlag.READ_ONLY
        ):
            return LoopDevice(number, path, fd, shared=True)
        os.close(fd)
    return None


def _attach(control: int, file_fd: int, file_name: str, *, read_only: bool) -> LoopDevice:
    flags = loop.LoopFlag.AUTOCLEAR | (loop.LoopFlag.READ_ONLY if read_only else 0)
    mode = os.O_RDONLY if read_only else os.O_RDWR
    for _ in range(ATTACH_ATTEMPTS):
        number = loop.get_free(control)
        path = loop.device_node(number)
        fd = os.open(path, mode | os.O_CLOEXEC)
        try:
            loop.configure(fd, file_fd, flags, file_name=file_name, what=path)
        except SyscallError as error:
            os.close(fd)
            if error.errno == errno.EBUSY:
                continue  # taken by another attacher between GET_FREE and CONFIGURE
            raise LoopError(f"cannot attach {file_name} to {path}: {error}") from None
        return LoopDevice(number, path, fd, shared=False)
    raise LoopError(f"no free loop device for {file_name} after {ATTACH_ATTEMPTS} attempts")


def attach(config: UdiRootConfig, path: str, *, read_only: bool, share: bool) -> LoopDevice:
    """A loop device for the regular file `path`, held open. `share`: reuse a read-only
    device already bound to the same file (images); otherwise always a new one."""
    try:
        file_fd = os.open(
            path, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC | os.O_NOFOLLOW
        )
    except OSError as error:
        raise LoopError(f"cannot open {path}: {error.strerror}") from None
    try:
        info = os.fstat(file_fd)
        if not stat.S_ISREG(info.st_mode):
            raise LoopError(f"{path} is not a regular file")
        control = _open_control(config)
        try:
            fcntl.flock(control, fcntl.LOCK_EX)
            found = _bound_to((info.st_dev, info.st_ino)) if share else None
            return found or _attach(control, file_fd, path, read_only=read_only)
        finally:
            os.close(control)  # releases the lock
    finally:
        os.close(file_fd)  # a bound device keeps its own reference to the file


def mount_device(
    config: UdiRootConfig, device: LoopDevice, target: str, fstype: str, flags: MountFlag
) -> None:
    """Mount `device` at `target`; an unknown filesystem type loads its module once when
    the site allows it."""
    for attempt in range(2):
        try:
            mount(device.path, target, fstype, flags)
            return
        except SyscallError as error:
            if error.errno == errno.ENODEV and attempt == 0 and config.auto_load_kernel_module:
                modprobe(config, fstype)
                continue
            hint = None
            if error.errno == errno.ENODEV:
                hint = f"load its module (modprobe {fstype}), or set autoLoadKernelModule=1"
            raise LoopError(
                f"cannot mount {device.path} ({fstype}) at {target}: {error}", hint=hint
            ) from None


def mount_image(config: UdiRootConfig, image_path: str, fstype: str, target: str) -> LoopDevice:
    """Mount the image file read-only at `target` on its node-wide loop device. Returns
    the device (already closed: the mount holds it now)."""
    device = attach(config, image_path, read_only=True, share=True)
    try:
        mount_device(config, device, target, fstype, IMAGE_MOUNT_FLAGS)
    finally:
        device.close()
    return device
