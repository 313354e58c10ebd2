"""Taking a setupRoot container down (unsetupRoot; setupRoot after a failed build).

Everything mounted at or below udiMount and loopMount goes, except a directory bound onto
itself at exactly those paths (how a site, or setupRoot on a host whose mounts are shared,
makes them private mount points: that holds nothing and stays).

Each top of a tree is detached lazily (umount2 MNT_DETACH|UMOUNT_NOFOLLOW), which takes
its whole subtree in one call and one RCU grace period (unmounting the forty-odd mounts of
a container one by one costs a grace period each), and works whether or not processes are
still inside: they keep their detached tree until they exit. The kernel then detaches the
loop devices by itself (they are autoclear): at once when nothing uses them, or when the
last process inside exits. perNodeCache backing files were unlinked when they were
mounted, so their space goes with their loop device.

Copies in other mount namespaces: a process that made a mount namespace while the
container was up (`unshare -m`, a daemon's private namespace) holds a copy of every mount,
which this namespace's detach does not reach, and keeps the loop devices attached until it
exits. `lingering_copies` finds them (processes whose mount table, as they see it, still
has the container's own file systems at udiMount or loopMount: another container at that
path in another namespace, such as another node's on a host running several, is not a
copy) for unsetupRoot to name. Processes inside
the container (entered with `shifter`, in their own namespaces too) see those mounts at
`/`, not at udiMount: they keep their tree, as documented, and are not counted.

Idempotent: with nothing mounted there is nothing to do. The original tried ten times,
0.3 s apart; the table is re-read after each round, at most `ROUNDS` times, in case a
mount was stacked under another.
"""

from __future__ import annotations

import errno
import os

from shifter.errors import ShifterError
from shifter.runtime.config.load import UdiRootConfig
from shifter.runtime.rootfs.mountinfo import (
    MountEntry,
    is_self_bind,
    is_under,
    parse_mountinfo,
    read_mountinfo,
)
from shifter.sys.libc import SyscallError
from shifter.sys.mount import UmountFlag, umount

ROUNDS = 10
DETACH = UmountFlag.DETACH | UmountFlag.NOFOLLOW


class TeardownError(ShifterError):
    """Mounts of the container remain after every attempt."""


class TeardownReport:
    """What a teardown did: the mount points detached, the loop devices that were under
    them, and those still attached afterwards (used by processes still inside, or shared
    with another container of the same image)."""

    __slots__ = ("detached", "loop_devices", "root_devices", "still_attached")

    def __init__(self) -> None:
        self.detached: list[str] = []
        self.loop_devices: list[str] = []
        self.still_attached: list[str] = []
        # The devices (major:minor) of the file systems mounted at exactly udiMount or
        # loopMount: the container's own, which only copies of it share (`lingering_copies`).
        self.root_devices: set[str] = set()


def container_mounts(entries: list[MountEntry], roots: tuple[str, ...]) -> list[MountEntry]:
    """The mounts a teardown of `roots` removes (see the module docstring)."""
    return [
        entry
        for entry in entries
        if any(is_under(entry.mount_point, root) for root in roots)
        and not (entry.mount_point in roots and is_self_bind(entry, entries))
    ]


def container_roots(config: UdiRootConfig) -> tuple[str, ...]:
    """udiMount and loopMount, as the mount table spells them."""
    return tuple(os.path.normpath(path) for path in (config.udi_mount, config.loop_mount))


def _bound(device: str) -> bool:
    name = os.path.basename(device)
    return os.path.exists(f"/sys/block/{name}/loop/backing_file")


def teardown(config: UdiRootConfig) -> TeardownReport:
    """Detach every mount of the container at udiMount and loopMount, after killing the
    processes chrooted there (the job's sshd and its sessions, sshd.py)."""
    from shifter.runtime.job.sshd import stop

    stop(config)
    roots = container_roots(config)
    report = TeardownReport()
    for _ in range(ROUNDS):
        mounts = container_mounts(read_mountinfo(), roots)
        if not mounts:
            break
        ids = {entry.id for entry in mounts}
        report.root_devices.update(
            entry.device for entry in mounts
            if entry.mount_point in roots and not entry.source.startswith("/dev/loop"))
        for entry in mounts:
            if entry.source.startswith("/dev/loop") and entry.source not in report.loop_devices:
                report.loop_devices.append(entry.source)
        # The tops of the trees, the last mounted first; a subtree goes with its top.
        for entry in reversed([e for e in mounts if e.parent not in ids]):
            try:
                umount(entry.mount_point, DETACH)
            except SyscallError as error:
                if error.errno != errno.EINVAL:  # EINVAL: gone meanwhile
                    raise TeardownError(
                        f"cannot detach {entry.mount_point}: {error}",
                        hint="unsetupRoot must run as root in the host's mount namespace",
                    ) from None
            report.detached.append(entry.mount_point)
    else:
        left = container_mounts(read_mountinfo(), roots)
        if left:
            raise TeardownError(
                f"{len(left)} mounts remain under {' and '.join(roots)} after {ROUNDS} rounds: "
                + ", ".join(entry.mount_point for entry in left[:5])
            )
    report.still_attached = [device for device in report.loop_devices if _bound(device)]
    return report


def _command_name(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as file:
            return file.read().strip()
    except OSError:
        return "?"


def lingering_copies(
    config: UdiRootConfig, root_devices: set[str]
) -> list[tuple[int, str]]:
    """The processes (pid, command name) in other mount namespaces whose mount table
    still has this container's mounts: at udiMount or loopMount, with one of its
    `root_devices` (the teardown's). Another container at the same path in another
    namespace (another node's, on a host running several) has file systems of its own,
    and is not a copy."""
    if not root_devices:
        return []
    roots = container_roots(config)
    own = os.readlink("/proc/self/ns/mnt")
    holders = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/ns/mnt") == own:
                continue
            with open(f"/proc/{name}/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError:
            continue  # gone meanwhile
        if any(entry.device in root_devices
               for entry in container_mounts(parse_mountinfo(text), roots)):
            holders.append((int(name), _command_name(name)))
    return sorted(holders)
