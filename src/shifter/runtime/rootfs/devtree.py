"""The container's /dev for a site with GPUs (gpu.py): the host's /dev without the site's
GPU nodes, plus the nodes of the GPUs this launch was given.

Without GPUs the container's /dev is a recursive bind of the host's (vfs.py). That would
show every GPU of the node, so here /dev is a tmpfs (nosuid, noexec, read-only once
filled) holding, for each entry of the host's /dev: a symlink copied as a symlink, a
directory (pts, shm, mqueue, ...) bound recursively, any other entry bound onto an empty
file; the site's GPU nodes are left out (by name and by device number), and so are device
nodes the user cannot open. Then each node of
the plan is bound at its place. All binds are nosuid and private; only the node binds
carry device access (as the host's /dev bind does without GPUs): the tmpfs itself is
nodev, and nothing here comes from the user. Each entry is one plain bind; nosuid is
then set on all of them by one recursive mount_setattr (binds.restrict_tree).
"""

from __future__ import annotations

import os
import stat

from shifter.runtime.rootfs.binds import make_mount_point, restrict_tree
from shifter.sys.mount import NO_FLAGS, MountFlag, mount

TYPE_CHECKING = False
if TYPE_CHECKING:
    from shifter.runtime.identity.privileges import ActingAs
    from shifter.runtime.site.gpu import GpuPlan

HOST_DEV = "/dev"
SYMLINK, DIRECTORY, FILE = "symlink", "directory", "file"
DEV_FLAGS = MountFlag.NOSUID | MountFlag.NODEV | MountFlag.NOEXEC


def build_dev(target: str, plan: GpuPlan, acting_as: ActingAs | None = None) -> None:
    """Fill `target` (the container's empty /dev directory) as described above.
    `acting_as`: on the privileged path, the user whose access decides which device nodes
    are worth binding (on the unprivileged path the caller is the user)."""
    entries = _host_entries(plan, acting_as)
    mount("tmpfs", target, "tmpfs", DEV_FLAGS, "mode=755")
    # Private: the binds made below are private too, without a call each.
    mount(None, target, None, MountFlag.PRIVATE)
    for name, kind, source in entries:
        path = os.path.join(target, name)
        if kind == SYMLINK:
            os.symlink(source, path)
            continue
        make_mount_point(path, directory=kind == DIRECTORY)
        recursive = MountFlag.REC if kind == DIRECTORY else NO_FLAGS
        mount(source, path, None, MountFlag.BIND | recursive)
    for host, container_path in plan.nodes:
        path = target + container_path[len(HOST_DEV):]
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if not os.path.lexists(path):
            make_mount_point(path, directory=False)
        mount(host, path, None, MountFlag.BIND)
    # nosuid on every bind at once (one mount_setattr), not one remount per entry.
    restrict_tree(target, MountFlag.NOSUID)
    mount(None, target, None, MountFlag.REMOUNT | DEV_FLAGS | MountFlag.RDONLY)


def _host_entries(plan: GpuPlan, acting_as: ActingAs | None) -> list[tuple[str, str, str]]:
    """(name, kind, source) of the host's /dev entries the container gets: a symlink's
    source is its target. Device nodes the user can neither read nor write (the disks,
    the virtual consoles: root's, mode 0600) are left out: each is a mount, and they
    cost a GPU launch more than everything else; the user could not open them anyway."""
    found = []
    if acting_as is not None:
        acting_as.__enter__()
    try:
        with os.scandir(HOST_DEV) as scan:
            for entry in scan:
                if "/dev/" + entry.name in plan.hidden_paths:
                    continue
                if entry.is_symlink():
                    found.append((entry.name, SYMLINK, os.readlink(entry.path)))
                    continue
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    found.append((entry.name, DIRECTORY, entry.path))
                    continue
                device = stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                if device and (info.st_rdev in plan.hidden_devices or not _usable(entry.path)):
                    continue
                found.append((entry.name, FILE, entry.path))
    finally:
        if acting_as is not None:
            acting_as.__exit__()
    return found


def _usable(path: str) -> bool:
    # Effective ids: setupRoot acts as the user; in the user namespace its capabilities
    # do not reach root's nodes (their owner is not mapped), so the mode bits decide.
    return os.access(path, os.R_OK, effective_ids=True) or os.access(
        path, os.W_OK, effective_ids=True
    )
