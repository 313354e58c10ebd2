"""Volume policy: which flags and destinations a user or a site may use, where a source
may come from, and where a destination really is once symlinks are resolved.

The grammar is `volumes.spec` (shared by users and sites); the rules differ:

- user volumes (`--volume`, `SHIFTER_VOLUME`): flags `ro` and `perNodeCache` only; not
  onto `/`, `/etc` or `/var` or anything below them (except exactly `/var/tmp`), not onto
  `/opt` itself or `/opt/udiImage` and below, and not onto `/proc`, `/sys` or `/dev` and
  below (the original's help text promises that last group; its validator forgot it).
  The source is looked up *inside the container* (so a user can bind only what the site
  already exposes: siteFs, /tmp, /var/tmp, image content), as in the original. Once
  resolved (a user's symlink under /tmp may point anywhere in the container), it may not
  be the container's root (which would give a writable copy of the read-only root) nor be
  in `/proc`, `/sys` or `/dev` (kernel interfaces, bound for the container's own use);
  a source in `/etc` is bound read-only, whatever the flags say.
- site volumes (`siteFs`, `module_*_siteFs`): every flag; not onto exactly `/`, `/opt`,
  `/etc`, `/var`, `/etc/passwd`, `/etc/group`, `/etc/nsswitch.conf`. The source is a host
  directory.

Prefix rules compare whole path components (`/etcfoo` is not under `/etc`; the original
compared strings). Destinations are resolved with the path guard; the resolved path is
checked again (an image symlink `/data -> /etc` must not let a user mount over /etc), must
be a directory on an approved device (the container root, the image, /tmp, /var/tmp), and
may be created only as a new directory directly on the container root filesystem.
"""

from __future__ import annotations

import os
import stat

from shifter.errors import ShifterError
from shifter.runtime.volumes.pathguard import ContainerPathError, Resolved, resolve
from shifter.runtime.volumes.spec import VolumeSpec

TYPE_CHECKING = False  # the launch path: `collections` costs it ~1 ms
if TYPE_CHECKING:
    from collections.abc import Collection

USER_FLAGS = frozenset(("ro", "perNodeCache"))
USER_FORBIDDEN_TREES = ("/etc", "/var", "/opt/udiImage", "/proc", "/sys", "/dev")
USER_FORBIDDEN_EXACT = frozenset(("/", "/opt"))
USER_ALLOWED_EXACT = frozenset(("/var/tmp",))
USER_SOURCE_FORBIDDEN_TREES = ("/proc", "/sys", "/dev")
USER_SOURCE_READ_ONLY_TREES = ("/etc",)
SITE_FORBIDDEN_EXACT = frozenset(
    ("/", "/opt", "/etc", "/var", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf")
)
SOURCE_HINT = "users can bind directories under /tmp, /var/tmp, site filesystems and the image"


class VolumeError(ShifterError):
    """A volume that the policy refuses or that cannot be set up."""


def _under(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree + "/")


def user_target_problem(path: str) -> str | None:
    """Why a user may not mount onto container path `path`, or None."""
    if path in USER_ALLOWED_EXACT:
        return None
    if path in USER_FORBIDDEN_EXACT:
        return f"{path} is reserved for the system"
    for tree in USER_FORBIDDEN_TREES:
        if _under(path, tree):
            return f"{path} is in {tree}, which is reserved for the system"
    return None


def user_source_problem(path: str) -> str | None:
    """Why a user may not bind the (resolved) container path `path`, or None."""
    if path == "/":
        return "it is the container's root"
    for tree in USER_SOURCE_FORBIDDEN_TREES:
        if _under(path, tree):
            return f"{path} is in {tree}, which users may not bind elsewhere"
    return None


def user_source_read_only(path: str) -> bool:
    """Whether a user volume whose source resolves to `path` is bound read-only anyway."""
    return any(_under(path, tree) for tree in USER_SOURCE_READ_ONLY_TREES)


def site_target_problem(path: str) -> str | None:
    """Why a site volume may not be mounted onto `path`, or None."""
    if path in SITE_FORBIDDEN_EXACT:
        return f"{path} is reserved for the system"
    return None


def check_user_volume(spec: VolumeSpec, origin: str) -> None:
    """The flag and destination rules for a user volume (before anything is mounted)."""
    refused = [flag for flag in spec.flags if flag not in USER_FLAGS]
    if refused:
        raise VolumeError(
            f"{origin}: volume {spec}: flag {refused[0]!r} is for site volumes only",
            hint="users may give the flags ro and perNodeCache",
        )
    problem = user_target_problem(spec.target)
    if problem:
        raise VolumeError(f"{origin}: volume {spec}: {problem}", hint="mount it somewhere else")


def check_site_volume(spec: VolumeSpec, origin: str) -> None:
    problem = site_target_problem(spec.target)
    if problem:
        raise VolumeError(f"{origin}: site volume {spec}: {problem}")


def host_source(spec: VolumeSpec, origin: str) -> str:
    """A site volume's source: an existing host directory (symlinks resolved on the host)."""
    real = os.path.realpath(spec.source)
    if not os.path.isdir(real):
        raise VolumeError(
            f"{origin}: volume source {spec.source} is not a directory on this host",
            hint="create it, or remove the entry",
        )
    return real


def container_source(root_fd: int, spec: VolumeSpec, origin: str) -> Resolved:
    """A user volume's source, looked up inside the container: an existing directory
    that `user_source_problem` allows (the caller binds it read-only when
    `user_source_read_only` says so)."""
    what = f"{origin}: volume source {spec.source}"
    resolved = _resolve(root_fd, spec.source, what, SOURCE_HINT)
    if not resolved.exists or not stat.S_ISDIR(os.fstat(resolved.fd).st_mode):
        resolved.close()
        raise VolumeError(f"{what} is not a directory visible in the container", hint=SOURCE_HINT)
    problem = user_source_problem(resolved.path)
    if problem:
        resolved.close()
        where = "" if resolved.path == spec.source else f" resolves to {resolved.path}"
        raise VolumeError(f"{what}{where}: {problem}", hint=SOURCE_HINT)
    return resolved


def destination(
    root_fd: int,
    spec: VolumeSpec,
    origin: str,
    *,
    user: bool,
    root_device: int,
    devices: Collection[int] | None,
) -> Resolved:
    """Resolve (and create when allowed) the mount point of `spec` inside the container.
    `devices`: where a mount point may be (None: anywhere; site volumes may nest)."""
    what = f"{origin}: volume {spec}"
    resolved = _resolve(root_fd, spec.target, what)
    try:
        problem = (user_target_problem if user else site_target_problem)(resolved.full_path)
        if problem:
            raise VolumeError(
                f"{what}: the destination resolves to {resolved.full_path}: {problem}",
                hint="a symlink in the image leads there; mount it somewhere else",
            )
        if not resolved.exists:
            resolved = _create(resolved, what, root_device)
        info = os.fstat(resolved.fd)
        if not stat.S_ISDIR(info.st_mode):
            raise VolumeError(f"{what}: the destination {resolved.path} is not a directory")
        if devices is not None and info.st_dev not in devices:
            raise VolumeError(
                f"{what}: the destination {resolved.path} is not on an approved device for "
                "volume mounts",
                hint="mount onto a new top-level directory, /tmp, or a directory of the image",
            )
    except BaseException:
        resolved.close()
        raise
    return resolved


def _resolve(root_fd: int, path: str, what: str, hint: str | None = None) -> Resolved:
    try:
        return resolve(root_fd, path)
    except ContainerPathError as error:
        raise VolumeError(f"{what}: {error.message}", hint=hint) from None


def _create(resolved: Resolved, what: str, root_device: int) -> Resolved:
    """Make the one missing directory of a destination, on the container root filesystem."""
    if len(resolved.missing) != 1 or os.fstat(resolved.fd).st_dev != root_device:
        raise VolumeError(
            f"{what}: cannot create the mount point {resolved.full_path} in that location",
            hint="mount onto an existing directory or a new directory directly under / "
            "(site mount points need sitePreMountHook)",
        )
    name = resolved.missing[0]
    try:
        os.mkdir(name, 0o755, dir_fd=resolved.fd)
        fd = os.open(
            name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_DIRECTORY, dir_fd=resolved.fd
        )
    except OSError as error:
        raise VolumeError(f"{what}: cannot create {resolved.full_path}: {error.strerror}") from None
    finally:
        resolved.close()
    return Resolved(resolved.full_path, fd, ())
