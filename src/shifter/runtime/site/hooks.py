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

A userhook whose verdict depends on nothing but the container (the mpich module's ABI
check looks at the image's libraries) may say so with the line `# shifter: remember-success`
in its text. Its success is then remembered in the user's directory (identity/userdir.py), per
image id and hook key, with the container's signature (image id, user, volumes, modules)
and the hook's whole text: the next launch of the same container with the same hook skips
it, a launch where either differs runs it. Image content is immutable per id; `local:`
images (a host directory) are never remembered. A failure is never remembered: every
launch runs a failing hook again and shows its message. A hook without the line runs on
every launch, as before. Only the user can write there, and the hook protects the user's
own launch, which they could start with `--module=none` anyway.
"""

from __future__ import annotations

import os
import stat

from shifter.errors import ConfigError, ShifterError, ToolError

TYPE_CHECKING = False  # the launch path: `typing` and `collections.abc` cost start-up time
if TYPE_CHECKING:
    from collections.abc import Sequence

    from shifter.runtime.config.load import ModuleConfig, UdiRootConfig

HOOK_ENV = {"PATH": "/usr/bin:/usr/sbin:/bin:/sbin"}
SHELL = "/bin/sh"
REMEMBER_MARKER = b"# shifter: remember-success"
HOOK_LIMIT = 1 << 16  # a hook longer than this is never remembered
VERDICT_FILE = "userhook-{image_id}-{key}"


def check_site_hooks(config: UdiRootConfig, modules: Sequence[ModuleConfig]) -> None:
    """sitePreMountHook, sitePostMountHook and the active modules' roothooks (on the host)."""
    for key, path in (
        ("sitePreMountHook", config.site_pre_mount_hook),
        ("sitePostMountHook", config.site_post_mount_hook),
        *((m.key("roothook"), m.roothook) for m in modules),
    ):
        if path:
            check_hook(path, key)


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


class HookVerdicts:
    """The remembered successes of userhooks for one container (see the module docstring):
    `user_dir` a descriptor of the user's directory (opened before the chroot), `image_id`
    and `signature` the container's."""

    __slots__ = ("image_id", "signature", "user_dir")

    def __init__(self, user_dir: int, image_id: str, signature: str) -> None:
        self.user_dir = user_dir
        self.image_id = image_id
        self.signature = signature

    @classmethod
    def for_container(cls, user_dir: int | None, image_id: str, signature: str
                      ) -> HookVerdicts | None:  # fmt: skip
        """None when nothing may be remembered: no directory, or a `local:` image (a path,
        whose content can change under the same name)."""
        if user_dir is None or "/" in image_id or image_id.startswith("."):
            return None
        return cls(user_dir, image_id, signature)

    def _entry(self, key: str, text: bytes) -> tuple[str, bytes]:
        name = VERDICT_FILE.format(image_id=self.image_id, key=key)
        return name, self.signature.encode() + b"\0" + text

    def holds(self, key: str, text: bytes) -> bool:
        name, expected = self._entry(key, text)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.user_dir)
        except OSError:
            return False
        try:
            return os.read(fd, len(expected) + 1) == expected
        except OSError:
            return False
        finally:
            os.close(fd)

    def remember(self, key: str, text: bytes) -> None:
        """Record a success. Written in place: a reader that sees it half-written finds it
        different and runs the hook; failing to write is as harmless."""
        name, content = self._entry(key, text)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o600, dir_fd=self.user_dir)
        except OSError:
            return
        try:
            os.write(fd, content)
        except OSError:
            pass  # the hook runs again next time
        finally:
            os.close(fd)


def rememberable_text(path: str) -> bytes | None:
    """The hook's text when it declares its success may be remembered, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        text = os.read(fd, HOOK_LIMIT + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(text) > HOOK_LIMIT or REMEMBER_MARKER not in text.split(b"\n"):
        return None
    return text


def run_userhook(path: str, key: str, cwd: str, verdicts: HookVerdicts | None) -> None:
    """Run a module userhook, or skip it when its success for this container and this very
    text is remembered; remember a success when the hook allows it."""
    text = rememberable_text(path) if verdicts is not None else None
    if text is not None and verdicts is not None and verdicts.holds(key, text):
        return
    run_hook(path, key, cwd)
    if text is not None and verdicts is not None:
        verdicts.remember(key, text)
