"""The one path guard: resolve a path *inside the container* the way a chrooted process
would, for everything a user controls (volume targets and sources, workdir, /etc content).

Symlinks are followed relative to the container root: an absolute target restarts at the
root, and `..` never climbs above it (the original's `shifter_realpath`, and the kernel's
openat2 RESOLVE_IN_ROOT, which not every site kernel has). The walk holds an O_PATH
descriptor for every component and reads each link through its own descriptor, so a link
swapped while we look cannot send a later step somewhere else; the caller gets the final
descriptor and can mount onto `/proc/self/fd/N` rather than onto a path that could change.

A missing component ends the walk: it and everything after it come back in `missing`,
unresolved, for the caller to create or refuse.
"""

from __future__ import annotations

import os
import stat

from shifter.errors import ShifterError

MAX_SYMLINKS = 40  # the kernel's limit (MAXSYMLINKS)
_OPEN_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class ContainerPathError(ShifterError):
    """A container path that cannot be resolved (a loop, a file used as a directory, ...)."""


class Resolved:
    """The outcome of `resolve`. `fd` is an O_PATH descriptor of `path`, the deepest
    component that exists (symlinks resolved); the caller owns it and must close it.
    (Plain class: launch path.)"""

    __slots__ = ("fd", "missing", "path")

    def __init__(self, path: str, fd: int, missing: tuple[str, ...]) -> None:
        self.path = path
        self.fd = fd
        self.missing = missing

    @property
    def full_path(self) -> str:
        """The container path of the whole request (existing part plus missing part)."""
        if not self.missing:
            return self.path
        return self.path.rstrip("/") + "/" + "/".join(self.missing)

    @property
    def exists(self) -> bool:
        return not self.missing

    def close(self) -> None:
        os.close(self.fd)


def _components(path: str) -> list[str]:
    # "." stays: like a trailing "/", it requires the component before it to be a directory.
    parts = [part for part in path.split("/") if part]
    if path.endswith("/") and parts:
        parts.append(".")
    return parts


def resolve(root_fd: int, path: str, *, follow_final: bool = True) -> Resolved:
    """Resolve the container path `path` (absolute or not, relative to the root) under the
    directory `root_fd`. `follow_final=False` leaves a final symlink unresolved."""
    pending = _components(path)
    pending.reverse()  # a stack: the next component is pending[-1]
    names: list[str] = []
    fds: list[int] = []
    missing: list[str] = []
    links = 0
    try:
        while pending:
            name = pending.pop()
            if missing:
                if name != ".":
                    missing.append(name)
                continue
            if name == ".":
                continue
            if name == "..":
                if fds:
                    names.pop()
                    os.close(fds.pop())
                continue
            parent = fds[-1] if fds else root_fd
            try:
                fd = os.open(name, _OPEN_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                missing.append(name)
                continue
            except OSError as error:
                raise _error(names, name, error) from None
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode) and (pending or follow_final):
                links += 1
                try:
                    target = os.readlink("", dir_fd=fd)
                except OSError as error:
                    # /proc/PID/root and its kin: a link the caller may not read is as
                    # much a refusal as a directory it may not search.
                    raise _error(names, name, error) from None
                finally:
                    os.close(fd)
                if links > MAX_SYMLINKS:
                    raise ContainerPathError(
                        f"container path {path!r}: too many levels of symbolic links"
                    )
                if target.startswith("/"):
                    for old in fds:
                        os.close(old)
                    fds.clear()
                    names.clear()
                pending.extend(reversed(_components(target)))
                continue
            if pending and not stat.S_ISDIR(mode):
                os.close(fd)
                raise ContainerPathError(
                    f"container path {path!r}: /{'/'.join([*names, name])} is not a directory"
                )
            names.append(name)
            fds.append(fd)
        final = os.dup(fds[-1]) if fds else os.dup(root_fd)
    finally:
        for fd in fds:
            os.close(fd)
    return Resolved("/" + "/".join(names), final, tuple(missing))


def _error(names: list[str], name: str, error: OSError) -> ContainerPathError:
    where = "/" + "/".join([*names, name])
    return ContainerPathError(f"cannot look up {where} in the container: {error.strerror}")


def resolve_path(root: str, path: str, *, follow_final: bool = True) -> str:
    """The resolved container path of `path` under the host directory `root` (existing
    part resolved, missing part appended as given)."""
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        resolved = resolve(root_fd, path, follow_final=follow_final)
    finally:
        os.close(root_fd)
    resolved.close()
    return resolved.full_path


def fd_path(fd: int) -> str:
    """A path naming exactly the file behind `fd`, usable as a mount source or target."""
    return f"/proc/self/fd/{fd}"
