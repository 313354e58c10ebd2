"""accesstype "remote": images are copied with scp to `ssh.imageDir` on a host of the system.

The hosts of a platform are entry points to one shared file system (login or service
nodes), so an operation needs one host that works: they are tried in order and the first
that succeeds ends it (failover). Publishing to a host takes three connections:

1. `mkdir -m 0700 -- DIR/.shifter-upload.<random>`: a staging directory nobody else can
   enter, so a private image is never readable under its temporary name;
2. one `scp` of every file into it (scp, not rsync: the Platform has `scpCmdOptions`, the
   far side needs nothing but sshd, and on a 100 MB file rsync was no faster, see
   docs/transfer.md);
3. one `sh -c` script that sets mode and ACL, syncs, renames each file into imageDir with
   `mv` (a rename within one file system), `.meta` last, and removes the staging directory
   whether it succeeded or not.

After a failed copy the staging directory is removed too (`rm -rf`), before the next host
is tried. Every remote argument is quoted with `shlex.quote`; file names have already
passed `check_file_name`, and imageDir must consist of shell-safe characters so that scp's
destination means the same under the SFTP and the legacy protocol.
"""

from __future__ import annotations

import logging
import posixpath
import re
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from shlex import quote
from typing import TypeVar

from shifter import proc
from shifter.errors import ConfigError, ToolError, ToolNotFoundError
from shifter.gateway.access import ImageAccess
from shifter.gateway.transfer_files import (
    TransferError,
    check_file_name,
    describe_names,
    publish_order,
    removal_order,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# ssh keeps the first value it is given for an option: these come before the site's
# sshCmdOptions/scpCmdOptions so that no configuration can make ssh prompt for a password
# or passphrase in a daemon with no terminal ...
ENFORCED_OPTIONS = ("-o", "BatchMode=yes")
# ... and these come after them, so a site can choose other values: a dead host must fail
# fast enough to fail over, and a connection that stalls mid-copy must end.
DEFAULT_OPTIONS = (
    "-o", "ConnectTimeout=15",
    "-o", "ServerAliveInterval=15",
    "-o", "ServerAliveCountMax=4",
)
COMMAND_TIMEOUT_S = 600.0  # mkdir, test, rm; the finalize script syncs whole images
STAGING_PREFIX = ".shifter-upload."
SAFE_PATH = re.compile(r"/[A-Za-z0-9_./@%+=:,-]*\Z")  # nothing shlex.quote would quote
STDERR_LINES = 3
SSH_FAILED = 255  # ssh's own exit status: no connection, no login, unknown host key
CONNECT_HINT = (
    "check that the hosts are up and that ssh.username can log in to them with ssh.key "
    "without a password and with a known host key (ssh -o BatchMode=yes)"
)
REMOTE_HINT = (
    "check that imageDir exists on the hosts, that ssh.username may write to it, that it "
    "has free space and, for private images, that its file system supports POSIX ACLs"
)


class _HostFailure(Exception):
    """One host could not do its part; the next host is tried."""

    def __init__(self, reason: str, *, connecting: bool) -> None:
        super().__init__(reason)
        self.connecting = connecting


class RemoteTransfer:
    """Publishes to `image_dir` on the first of `hosts` that works, as `username`."""

    def __init__(
        self,
        *,
        hosts: Sequence[str],
        username: str,
        key: str | None,
        image_dir: str,
        ssh_options: Sequence[str] = (),
        scp_options: Sequence[str] = (),
        label: str,
        config_key: str | None = None,
    ) -> None:
        if not SAFE_PATH.match(image_dir):
            raise ConfigError(
                f"imageDir {image_dir!r} of a remote platform may contain only letters, "
                "digits and _ . / @ % + = : , -",
                key=config_key,
                hint="scp reads the destination path differently under its two protocols; "
                "a plain path means the same under both",
            )
        if not hosts:
            raise ConfigError("a remote platform needs at least one host", key=config_key)
        self.hosts = tuple(hosts)
        self.username = username
        self.key = key
        self.image_dir = image_dir.rstrip("/") or "/"
        self.ssh_options = tuple(ssh_options)
        self.scp_options = tuple(scp_options)
        self.label = label

    def publish(self, files: Sequence[Path], *, access: ImageAccess) -> None:
        ordered = [path.absolute() for path in publish_order(files)]
        if not ordered:
            return
        for path in ordered:
            if not path.is_file():
                raise TransferError(f"cannot publish {path}: it is not a regular file")
        self._on_hosts(
            f"publish {describe_names([path.name for path in ordered])}",
            lambda host: self._publish_to(host, ordered, access),
        )

    def remove(self, names: Sequence[str]) -> None:
        ordered = removal_order(names)
        if not ordered:
            return
        paths = " ".join(quote(self._path(name)) for name in ordered)
        self._on_hosts(
            f"remove {describe_names(ordered)}", lambda host: self._ssh(host, f"rm -f -- {paths}")
        )

    def exists(self, name: str) -> bool:
        test = f"test -f {quote(self._path(check_file_name(name)))}"
        # `test` exits 1 for "no such file": an answer, not a failure to fail over from.
        return self._on_hosts(
            f"look for {name}", lambda host: self._ssh(host, test, answers=(0, 1)) == 0
        )

    def set_access(self, names: Sequence[str], *, access: ImageAccess) -> None:
        paths = " ".join(quote(self._path(check_file_name(name))) for name in names)
        if not paths:
            return
        if access.private:
            script = f"setfacl --set {quote(access.setfacl_spec())} -- {paths}"
        else:
            # chmod first: with the ACL still there, that already admits everyone. Removing
            # the ACL then gives the group bits the ACL's owning-group entry (none), hence
            # the second chmod.
            chmod = f"chmod {access.mode:04o} -- {paths}"
            script = f"{chmod} && setfacl -b -- {paths} && {chmod}"
        self._on_hosts(f"change the access of {describe_names(list(names))}",
                       lambda host: self._ssh(host, f"sh -c {quote(script)}"))

    def read_text(self, name: str) -> str:
        command = f"cat -- {quote(self._path(check_file_name(name)))}"
        return self._on_hosts(f"read {name}", lambda host: self._ssh_output(host, command))

    def _publish_to(self, host: str, sources: list[Path], access: ImageAccess) -> None:
        staging = posixpath.join(self.image_dir, STAGING_PREFIX + secrets.token_hex(8))
        self._ssh(host, f"mkdir -m 0700 -- {quote(staging)}")
        try:
            self._scp(host, sources, staging)
            names = [source.name for source in sources]
            self._ssh(host, finalize_command(staging, self.image_dir, names, access))
        except _HostFailure:
            # The finalize script cleans up after itself; a failed scp leaves part of a file.
            self._ssh_quietly(host, f"rm -rf -- {quote(staging)}")
            raise

    def _on_hosts(self, action: str, attempt: Callable[[str], T]) -> T:
        failures = []
        connecting = False
        for host in self.hosts:
            try:
                return attempt(host)
            except _HostFailure as failure:
                log.warning("%s on %s failed on host %s: %s", action, self.label, host, failure)
                failures.append(f"host {host!r}: {failure}")
                connecting |= failure.connecting
        raise TransferError(
            f"could not {action} in {self.label}: {'; '.join(failures)}",
            hint=CONNECT_HINT if connecting else REMOTE_HINT,
        )

    def _path(self, name: str) -> str:
        return posixpath.join(self.image_dir, name)

    def _identity(self) -> list[str]:
        return ["-i", self.key] if self.key else []

    def _ssh(self, host: str, command: str, *, answers: Sequence[int] = (0,)) -> int:
        return self._ssh_run(host, command, answers)[0]

    def _ssh_output(self, host: str, command: str) -> str:
        return self._ssh_run(host, command, (0,))[1].decode(errors="replace")

    def _ssh_run(self, host: str, command: str, answers: Sequence[int]) -> tuple[int, bytes]:
        """The exit status (one of `answers`) and standard output of `command` on `host`."""
        argv = [
            "ssh", *ENFORCED_OPTIONS, *self._identity(), *self.ssh_options, *DEFAULT_OPTIONS,
            "--", f"{self.username}@{host}", command,
        ]
        return _run(argv, answers, timeout=COMMAND_TIMEOUT_S)

    def _ssh_quietly(self, host: str, command: str) -> None:
        try:
            self._ssh(host, command)
        except _HostFailure as failure:
            log.warning("cleaning up on host %s of %s failed: %s", host, self.label, failure)

    def _scp(self, host: str, sources: list[Path], staging: str) -> None:
        # An IPv6 address needs brackets, or scp would read its first ':' as the separator.
        target = f"[{host}]" if ":" in host else host
        argv = [
            "scp", *ENFORCED_OPTIONS, *self._identity(), *self.scp_options, *DEFAULT_OPTIONS,
            "--", *map(str, sources), f"{self.username}@{target}:{staging}/",
        ]
        # No overall timeout: an image may be many GB; ServerAlive* ends a dead connection.
        _run(argv, (0,), timeout=None)


def finalize_command(
    staging: str, image_dir: str, names: Sequence[str], access: ImageAccess
) -> str:
    """The one remote command that moves staged files into imageDir, `.meta` last.

    Wrapped in `sh -c` because the gateway account's login shell might not be a Bourne
    shell. The staging directory is removed whatever happened, and the status of the
    steps is the command's exit status.
    """
    staged = [posixpath.join(staging, check_file_name(name)) for name in names]
    files = " ".join(quote(path) for path in staged)
    steps = [f"chmod {access.mode:04o} -- {files}"]
    if access.private:
        steps.append(f"setfacl --set {quote(access.setfacl_spec())} -- {files}")
    steps.append(f"sync -- {files}")
    steps += [
        f"mv -f -- {quote(path)} {quote(posixpath.join(image_dir, name))}"
        for path, name in zip(staged, names, strict=True)
    ]
    steps.append(f"sync -- {quote(image_dir)}")
    script = f"{{ {' && '.join(steps)}; }}; status=$?; rm -rf -- {quote(staging)}; exit $status"
    return f"sh -c {quote(script)}"


def _run(argv: list[str], answers: Sequence[int], *, timeout: float | None) -> tuple[int, bytes]:
    tool = argv[0]
    try:
        result = proc.run(argv, check=False, timeout=timeout, capture_stdout=True)
    except ToolNotFoundError as error:
        raise TransferError(
            f"{tool} is needed to copy images to remote platforms but is not installed",
            hint="install the openssh-client package on the gateway host",
        ) from error
    except ToolError as error:  # a timeout
        reason = _with_tail(error.message, error.stderr_tail)
        raise _HostFailure(reason, connecting=True) from error
    if result.returncode not in answers:
        stderr = result.stderr.decode(errors="replace")
        reason = _with_tail(f"{tool} exit status {result.returncode}", stderr)
        raise _HostFailure(reason, connecting=result.returncode == SSH_FAILED)
    return result.returncode, result.stdout or b""


def _with_tail(what: str, stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return f"{what}: {' / '.join(lines[-STDERR_LINES:])}" if lines else what
