"""The container's /dev for a site with GPUs (gpu.py): the host's /dev without the site's
GPU nodes, plus the nodes of the GPUs this launch was given.

Without GPUs the container's /dev is a recursive bind of the host's (vfs.py). That would
show every GPU of the node, so here /dev is a tmpfs (nosuid, noexec, read-only once
filled) holding, for each entry of the host's /dev: a symlink copied as a symlink, a
directory (pts, shm, mqueue, ...) bound recursively, any other entry bound onto an empty
file; the site's GPU nodes are left out (by name and by device number). Then each node of
the plan is bound at its place. All binds are nosuid and private; only the node binds
carry device access (as the host's /dev bind does without GPUs): the tmpfs itself is
nodev, and nothing here comes from the user.
"""

from __future__ import annotations

import os
import stat

from shifter.runtime.binds import bind, make_mount_point
from shifter.sys.mount import MountFlag, mount

TYPE_CHECKING = False
if TYPE_CHECKING:
    from shifter.runtime.gpu import GpuPlan

HOST_DEV = "/dev"
DEV_FLAGS = MountFlag.NOSUID | MountFlag.NODEV | MountFlag.NOEXEC


def build_dev(target: str, plan: GpuPlan) -> None:
    """Fill `target` (the container's empty /dev directory) as described above."""
    mount("tmpfs", target, "tmpfs", DEV_FLAGS, "mode=755")
    mount(None, target, None, MountFlag.PRIVATE)
    private = MountFlag.PRIVATE
    with os.scandir(HOST_DEV) as entries:
        for entry in entries:
            path = os.path.join(target, entry.name)
            if "/dev/" + entry.name in plan.hidden_paths:
                continue
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), path)
                continue
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                make_mount_point(path, directory=True)
                bind(entry.path, path, flags=MountFlag.NOSUID, recursive=True, propagation=private)
                continue
            is_device = stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
            if is_device and info.st_rdev in plan.hidden_devices:
                continue
            make_mount_point(path, directory=False)
            bind(entry.path, path, flags=MountFlag.NOSUID, propagation=private)
    for host, container_path in plan.nodes:
        path = target + container_path[len(HOST_DEV):]
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if not os.path.lexists(path):
            make_mount_point(path, directory=False)
        bind(host, path, flags=MountFlag.NOSUID, propagation=private)
    mount(None, target, None, MountFlag.REMOUNT | DEV_FLAGS | MountFlag.RDONLY)
