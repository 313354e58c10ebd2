"""Site hooks: sitePreMountHook, sitePostMountHook and module roothooks run on the host
side with the container root as their working directory; module userhooks run inside the
container as the user, just before the command.

A hook is `/bin/sh HOOK`, with only `PATH=/usr/bin:/usr/sbin:/bin:/sbin` in its
environment (the original gave it almost nothing: its own environment had been cleared).
Site hooks and roothooks must be owned by root and not writable by group or others (on the
privileged path they run as root); `check_hook` is called while planning, on the host,
where root's files still show as root's (in the user namespace they show as nobody's).

On the unprivileged path there is no root: site hooks run as the user, inside the
launcher's private namespaces, where the container root is the user's own tmpfs. Creating
directories there (a hook's documented job: the parents of siteFs mount points) works;
anything that needs root fails, and so does the launch, with the hook's name and output.
"""

from __future__ import annotations

import os
import stat

from shifter.errors import ConfigError, ShifterError, ToolError

HOOK_ENV = {"PATH": "/usr/bin:/usr/sbin:/bin:/sbin"}
SHELL = "/bin/sh"


class HookError(ShifterError):
    """A site or module hook failed."""


def check_hook(path: str, key: str) -> None:
    """The hook must be a regular file owned by root, not writable by group or others."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise ConfigError(f"{key}={path}: {error.strerror}", hint="install the hook") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{key}={path} is not a regular file")
    if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{key}={path} must be owned by root and not writable by group or others",
            hint=f"chown root {path}; chmod go-w {path}",
        )


def run_hook(path: str, key: str, cwd: str) -> None:
    """Run one hook to completion in `cwd`; `HookError` with its last lines on failure."""
    from shifter import proc

    try:
        # Without subprocess: a userhook runs on every launch with its module.
        proc.run_light([SHELL, path], env=HOOK_ENV, cwd=cwd)
    except ToolError as error:
        raise HookError(
            f"{key} {path} failed"
            + (f" with exit status {error.returncode}" if error.returncode is not None else ""),
            hint=error.stderr_tail or None,
        ) from None
