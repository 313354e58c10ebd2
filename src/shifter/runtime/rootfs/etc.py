"""The container's own /etc files: etcPath, the host's hosts and resolv.conf, and the
passwd and group the user needs.

What ends up in the container's /etc, first come first kept:

1. `mtab`, a symlink to /proc/mounts;
2. every file of etcPath (symlinks followed; a directory is an error). The directory and
   its files must be owned by root and not writable by group or others: root copies them
   on the privileged path;
3. the host's `hosts` and `resolv.conf`, when etcPath has none (skipped when the host has
   none: the original failed);
4. with `populateEtcDynamically=1`: `passwd` (the user and `usersToImport`), `group` (their
   groups, the user listed as a member), the fixed `nsswitch.conf` and `host.conf`,
   replacing etcPath's; otherwise etcPath must provide passwd, group and nsswitch.conf;
5. `group` filtered: the user is listed as a member of at most `maxGroupCount` groups
   (libc's group parsing is limited; LDAP is not reachable), other groups keep no members,
   gid 0 is dropped; and an empty `shadow`;
6. the image's own /etc entries, later, wherever nothing above took the name.

`plan_etc` reads everything on the host (before any namespace); `write_etc` writes it.
"""

from __future__ import annotations

import os
import stat

from shifter.errors import ConfigError, ShifterError
from shifter.runtime.config.load import UdiRootConfig
from shifter.runtime.identity.user import Identity, UserRecord, user_by_name

TYPE_CHECKING = False  # the launch path: `collections` costs it ~1 ms
if TYPE_CHECKING:
    from collections.abc import Sequence

REQUIRED_STATIC = ("passwd", "group", "nsswitch.conf")
HOST_FILES = ("hosts", "resolv.conf")
MTAB_TARGET = "/proc/mounts"
NSSWITCH = "".join(
    f"{database + ':':<11}{source}\n"
    for database, source in (
        ("passwd", "files"),
        ("group", "files"),
        ("shadow", "files"),
        ("hosts", "files dns"),
        ("networks", "files dns"),
        ("services", "files"),
        ("protocols", "files"),
        ("rpc", "files"),
        ("ethers", "files"),
        ("netmasks", "files"),
        ("netgroup", "files"),
        ("publickey", "files"),
        ("bootparams", "files"),
        ("automount", "files"),
        ("aliases", "files"),
    )
)
HOST_CONF = "order bind,hosts\nmulti on\n"
FILE_LIMIT = 16 * 1024 * 1024  # an etcPath file larger than this is a mistake


def filter_group(text: str, username: str, max_count: int) -> str:
    """The container's /etc/group from a host group file (see the module docstring)."""
    lines = []
    listed = 0
    for raw in text.splitlines():
        fields = raw.strip().split(":")
        if len(fields) < 3 or not fields[0] or not fields[2].isdigit() or int(fields[2]) == 0:
            continue
        name, gid = fields[0], int(fields[2])
        members = fields[3].split(",") if len(fields) > 3 else []
        if (username in members or name == username) and listed < max_count:
            lines.append(f"{name}:x:{gid}:{username}")
            listed += 1
        else:
            lines.append(f"{name}:x:{gid}:")
    return "".join(line + "\n" for line in lines)


def dynamic_passwd(users: Sequence[UserRecord]) -> str:
    return "".join(user.passwd_line() + "\n" for user in users)


def dynamic_group(memberships: Sequence[tuple[str, Sequence[int]]]) -> str:
    """`name:x:gid:members` for every group of every (user name, gids) pair, each group
    once, members in user order."""
    import grp

    members: dict[int, list[str]] = {}
    for username, gids in memberships:
        for gid in gids:
            names = members.setdefault(gid, [])
            if username not in names:
                names.append(username)
    lines = []
    for gid, names in members.items():
        try:
            group_name = grp.getgrgid(gid).gr_name
        except KeyError:
            continue  # a gid without a name: nothing for /etc/group to say
        lines.append(f"{group_name}:x:{gid}:{','.join(names)}\n")
    return "".join(lines)


def _check_owned_by_root(path: str, info: os.stat_result, what: str) -> None:
    if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{what} {path} must be owned by root and not writable by group or others",
            hint=f"chown root {path}; chmod go-w {path}",
        )


def _read_etc_path(etc_path: str) -> dict[str, bytes]:
    try:
        _check_owned_by_root(etc_path, os.stat(etc_path), "etcPath")
        names = sorted(os.listdir(etc_path))
    except OSError as error:
        raise ConfigError(f"cannot read etcPath {etc_path}: {error.strerror}") from None
    files = {}
    for name in names:
        path = os.path.join(etc_path, name)
        try:
            with open(path, "rb") as file:
                info = os.fstat(file.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise ConfigError(f"etcPath entry {path} is not a regular file")
                _check_owned_by_root(path, info, "etcPath entry")
                files[name] = file.read(FILE_LIMIT + 1)
        except IsADirectoryError:
            raise ConfigError(f"etcPath entry {path} is a directory") from None
        except OSError as error:
            raise ConfigError(f"cannot read etcPath entry {path}: {error.strerror}") from None
        if len(files[name]) > FILE_LIMIT:
            raise ConfigError(f"etcPath entry {path} is larger than {FILE_LIMIT} bytes")
    return files


def _group_memberships(identity: Identity, imported: Sequence[UserRecord]) -> list:
    memberships: list[tuple[str, Sequence[int]]] = [(identity.user.name, identity.all_gids)]
    for user in imported:
        memberships.append((user.name, os.getgrouplist(user.name, user.gid)))
    return memberships


def plan_etc(config: UdiRootConfig, identity: Identity) -> dict[str, bytes]:
    """Name -> content of every file the container's /etc gets from the site and host."""
    files = _read_etc_path(config.etc_path) if config.etc_path else {}
    for name in HOST_FILES:
        if name not in files:
            try:
                with open(f"/etc/{name}", "rb") as file:
                    files[name] = file.read(FILE_LIMIT)
            except FileNotFoundError:
                pass
    if config.populate_etc_dynamically:
        imported = [user_by_name(name) for name in config.users_to_import]
        users = [identity.user, *(u for u in imported if u.name != identity.user.name)]
        files["passwd"] = dynamic_passwd(users).encode()
        files["group"] = dynamic_group(_group_memberships(identity, imported)).encode()
        files["nsswitch.conf"] = NSSWITCH.encode()
        files["host.conf"] = HOST_CONF.encode()
    else:
        missing = [name for name in REQUIRED_STATIC if name not in files]
        if missing:
            raise ConfigError(
                f"etcPath {config.etc_path} lacks {', '.join(missing)}",
                source=config.source,
                hint="provide them there, or set populateEtcDynamically=1",
            )
    group_text = files["group"].decode("utf-8", "surrogateescape")
    filtered = filter_group(group_text, identity.user.name, config.max_group_count)
    files["group"] = filtered.encode("utf-8", "surrogateescape")
    files["shadow"] = b""
    files.pop("mtab", None)  # always the link to /proc/mounts
    return files


def write_etc(etc_dir: str, files: dict[str, bytes]) -> None:
    """Create the planned files (mode 0644) and the mtab link in the container's /etc."""
    try:
        os.symlink(MTAB_TARGET, os.path.join(etc_dir, "mtab"))
        for name, content in files.items():
            path = os.path.join(etc_dir, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, content)
                os.fchmod(fd, 0o644)
            finally:
                os.close(fd)
    except OSError as error:
        raise ShifterError(f"cannot write the container's /etc: {error}") from None
