"""perNodeCache volumes (privileged path only): a scratch filesystem local to the node,
private to the job, made at setupRoot and gone at unsetupRoot.

`--volume /ignored:/cache:perNodeCache=size=10G[,fs=xfs]` makes, in perNodeCachePath:

1. a sparse file `perNodeCache_uid<U>_gid<G>_<host>.<fs>.XXXXXX` (mode 0600, mkstemp) of
   the requested size (ftruncate: the original ran `dd seek=`, which does the same);
2. an xfs filesystem in it (mkfsXfsPath);
3. a new loop device for it (read-write, autoclear, never shared);
4. the file unlinked at once: the loop device holds it, so the space is freed when the
   device detaches (when the mount goes, at unsetupRoot or when the last process inside
   exits) and a crash leaves no file behind;
5. the filesystem mounted (nosuid, nodev) at a private staging directory, its root given to
   the user, then moved onto the destination the path guard resolved.

Policy the original parsed but never enforced is enforced here: the size may not exceed
perNodeCacheSizeLimit, and the type must be in perNodeCacheAllowedFsType. The SOURCE of
the volume is only checked for syntax: it names nothing on the host.
"""

from __future__ import annotations

import os
import stat

from shifter.errors import ShifterError
from shifter.runtime.config.load import UdiRootConfig
from shifter.runtime.image import loopdev
from shifter.runtime.volumes.spec import PerNodeCache, VolumeSpec
from shifter.sys.mount import MountFlag, mount

CACHE_MOUNT_FLAGS = MountFlag.NOSUID | MountFlag.NODEV
TOOL_ENV = {"PATH": "/usr/bin:/usr/sbin:/bin:/sbin"}


class PerNodeCacheError(ShifterError):
    """A perNodeCache volume that the site's policy refuses or that could not be made."""


def check_policy(config: UdiRootConfig, spec: VolumeSpec, cache: PerNodeCache) -> None:
    """The site's limits, checked before anything is created."""
    if cache.fstype not in config.per_node_cache_allowed_fs_types:
        allowed = ", ".join(config.per_node_cache_allowed_fs_types) or "none"
        raise PerNodeCacheError(
            f"volume {spec}: perNodeCache filesystem {cache.fstype!r} is not allowed here",
            hint=f"this site allows: {allowed} (perNodeCacheAllowedFsType)",
        )
    limit = config.per_node_cache_size_limit
    if limit is not None and cache.size > limit:
        raise PerNodeCacheError(
            f"volume {spec}: perNodeCache size {cache.size} bytes exceeds this site's limit "
            f"of {limit} bytes",
            hint="ask for less (perNodeCacheSizeLimit)",
        )


def _make_backing_file(config: UdiRootConfig, cache: PerNodeCache, uid: int, gid: int) -> str:
    import tempfile

    directory = str(config.require("perNodeCachePath"))
    # mkfs gets the file by name: nobody but root may be able to swap it for a link.
    try:
        info = os.stat(directory)
    except OSError as error:
        raise config.error("perNodeCachePath", f"{directory}: {error.strerror}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise config.error(
            "perNodeCachePath",
            f"{directory} must be a directory owned by root and not writable by others",
            hint=f"chown root {directory}; chmod go-w {directory}",
        )
    host = os.uname().nodename
    prefix = f"perNodeCache_uid{uid}_gid{gid}_{host}.{cache.fstype}."
    try:
        fd, path = tempfile.mkstemp(prefix=prefix, dir=directory)
    except OSError as error:
        raise config.error(
            "perNodeCachePath", f"cannot create a file in {directory}: {error.strerror}"
        ) from None
    try:
        os.ftruncate(fd, cache.size)
    except OSError as error:
        os.unlink(path)
        raise PerNodeCacheError(
            f"cannot size {path} to {cache.size} bytes: {error.strerror}"
        ) from None
    finally:
        os.close(fd)
    return path


def mount_per_node_cache(
    config: UdiRootConfig,
    spec: VolumeSpec,
    staging: str,
    *,
    uid: int,
    gid: int,
    propagation: MountFlag,
) -> None:
    """Make the cache of `spec` and leave it mounted at the empty directory `staging`,
    owned by `uid`:`gid`, with `propagation`; the caller moves it into place."""
    from shifter import proc

    cache = spec.per_node_cache
    if cache is None:
        raise ValueError(f"{spec} is not a perNodeCache volume")
    check_policy(config, spec, cache)
    if uid == 0 or gid == 0:
        raise PerNodeCacheError("perNodeCache volumes are made for a user, never for root")
    mkfs = config.tool_path("mkfsXfsPath")
    path = _make_backing_file(config, cache, uid, gid)
    try:
        proc.run([mkfs, "-q", path], config_key="mkfsXfsPath", env=TOOL_ENV)
        device = loopdev.attach(config, path, read_only=False, share=False)
    finally:
        os.unlink(path)  # the loop device (if any) keeps the file until it detaches
    try:
        loopdev.mount_device(config, device, staging, cache.fstype, CACHE_MOUNT_FLAGS)
    finally:
        device.close()
    os.chown(staging, uid, gid)
    mount(None, staging, None, propagation)
