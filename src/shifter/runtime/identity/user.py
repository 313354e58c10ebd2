"""Who runs the container: the user's passwd record and groups.

The name comes from the C library (NSS) when `allowLibcPwdCalls=1` or when no etcPath
passwd file is configured, otherwise from `<etcPath>/passwd` (the original's rule: sites
whose NSS is slow or unreliable on compute nodes give shifter its own copy). Root is never
a container user: uid 0 and gid 0 are refused.
"""

from __future__ import annotations

import os

from shifter.errors import PermissionDeniedError, ShifterError
from shifter.runtime.config.load import UdiRootConfig

ROOT_REFUSED = "shifter does not run containers as root (uid 0 or gid 0)"
ROOT_HINT = "run it as an ordinary user; root prepares job environments with setupRoot"


class UserRecord:
    """One passwd entry. (Plain class: launch path.)"""

    __slots__ = ("gecos", "gid", "home", "name", "shell", "uid")

    def __init__(
        self, name: str, uid: int, gid: int, gecos: str = "", home: str = "/", shell: str = ""
    ) -> None:
        self.name = name
        self.uid = uid
        self.gid = gid
        self.gecos = gecos
        self.home = home
        self.shell = shell

    def passwd_line(self) -> str:
        """`name:x:uid:gid:gecos:home:shell`: the password field is always `x`."""
        return f"{self.name}:x:{self.uid}:{self.gid}:{self.gecos}:{self.home}:{self.shell}"

    def __repr__(self) -> str:
        return f"UserRecord({self.name!r}, {self.uid}, {self.gid})"


class Identity:
    """The container user and the supplementary groups its processes carry."""

    __slots__ = ("groups", "user")

    def __init__(self, user: UserRecord, groups: tuple[int, ...]) -> None:
        self.user = user
        self.groups = groups  # supplementary gids, without duplicates

    @property
    def all_gids(self) -> tuple[int, ...]:
        return (self.user.gid, *(gid for gid in self.groups if gid != self.user.gid))


def refuse_root(uid: int, gid: int) -> None:
    if uid == 0 or gid == 0:
        raise PermissionDeniedError(ROOT_REFUSED, hint=ROOT_HINT)


def parse_passwd_line(line: str) -> UserRecord | None:
    """A passwd line, or None when it is not one (comments, blanks, bad numbers)."""
    fields = line.rstrip("\n").split(":")
    if len(fields) != 7 or not fields[0] or not (fields[2].isdigit() and fields[3].isdigit()):
        return None
    name, _, uid, gid, gecos, home, shell = fields
    return UserRecord(name, int(uid), int(gid), gecos, home, shell)


def _from_libc(uid: int) -> UserRecord | None:
    import pwd

    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return None
    return UserRecord(
        entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_gecos, entry.pw_dir, entry.pw_shell
    )


def user_by_name(name: str) -> UserRecord:
    """A user from the C library by name (usersToImport)."""
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ShifterError(
            f"cannot import user {name!r}: no such user", hint="fix usersToImport"
        ) from None
    return UserRecord(
        entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_gecos, entry.pw_dir, entry.pw_shell
    )


def _from_file(path: str, uid: int) -> UserRecord | None:
    with open(path, encoding="utf-8", errors="surrogateescape") as file:
        for line in file:
            record = parse_passwd_line(line)
            if record is not None and record.uid == uid:
                return record
    return None


def lookup_user(uid: int, config: UdiRootConfig) -> UserRecord:
    """The passwd record of `uid`, from the source the configuration names."""
    passwd = os.path.join(config.etc_path, "passwd") if config.etc_path else None
    use_libc = config.allow_libc_pwd_calls or passwd is None or not os.path.exists(passwd)
    where = "the C library (NSS)" if use_libc else passwd
    try:
        record = _from_libc(uid) if use_libc else _from_file(str(passwd), uid)
    except OSError as error:
        raise ShifterError(f"cannot read {passwd}: {error.strerror}") from None
    if record is None:
        raise ShifterError(
            f"failed to look up the user name of uid {uid} in {where}",
            hint="the site's passwd data must list every shifter user",
        )
    return record


def current_identity(config: UdiRootConfig) -> Identity:
    """The calling user, with the supplementary groups this process really has."""
    uid, gid = os.getuid(), os.getgid()
    refuse_root(uid, gid)
    record = lookup_user(uid, config)
    # The record's gid may differ from the process's (newgrp, sg): the process's wins.
    user = UserRecord(record.name, uid, gid, record.gecos, record.home, record.shell)
    groups = tuple(dict.fromkeys(g for g in os.getgroups() if g != 0))
    return Identity(user, groups)
