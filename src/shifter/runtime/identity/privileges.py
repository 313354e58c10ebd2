"""Dropping privileges before the user's command runs, in one function, in the standard
order, and then checking the result as the kernel reports it.

Order: clear the capability bounding set; set the supplementary groups; setresgid;
setresuid; clear the ambient set and the effective, permitted and inheritable sets (a
setuid away from root leaves the inheritable set as it was); set no_new_privs. Then read
/proc/self/status and refuse to go on unless CapInh, CapPrm, CapEff, CapBnd and CapAmb are
all zero, NoNewPrivs is 1, and Uid, Gid and Groups are what we set.

In the unprivileged user namespace the groups cannot be changed (setgroups is denied
there): the process keeps the caller's, and those that are not mapped show as the
overflow gid (65534, "nogroup"). That is what `expected_groups` predicts.
"""

from __future__ import annotations

import os

from shifter.errors import ShifterError
from shifter.sys import caps

TYPE_CHECKING = False  # the enter path: `typing` and `collections.abc` cost start-up time
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

STATUS = "/proc/self/status"
CAPABILITY_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
OVERFLOW_GID = "/proc/sys/kernel/overflowgid"


class PrivilegeError(ShifterError):
    """The process still has privileges it must not take into the container."""


def overflow_gid() -> int:
    try:
        with open(OVERFLOW_GID, "rb") as file:
            return int(file.read())
    except (OSError, ValueError):
        return 65534


def expected_groups(groups: Iterable[int], mapped: Iterable[int], overflow: int) -> tuple[int, ...]:
    """How `groups` show inside a user namespace that maps only `mapped`."""
    visible = set(mapped)
    return tuple(sorted({gid if gid in visible else overflow for gid in groups}))


def drop_privileges(uid: int, gid: int, groups: Sequence[int] | None) -> None:
    """Drop to `uid`/`gid` for good. `groups` None keeps the current supplementary groups
    (a user namespace with setgroups denied)."""
    caps.drop_bounding_set()
    try:
        if groups is not None:
            os.setgroups(list(groups))
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as error:
        raise PrivilegeError(f"failed to drop privileges to {uid}:{gid}: {error}") from None
    caps.clear_ambient()
    caps.clear_capabilities()
    caps.set_no_new_privs()


def parse_status(text: str) -> dict[str, str]:
    """`Name:\\tvalue` lines of /proc/PID/status."""
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name] = value.strip()
    return fields


def status_problems(
    status: Mapping[str, str], uid: int, gid: int, groups: Iterable[int]
) -> list[str]:
    """What in `status` is not fully dropped to `uid`/`gid`/`groups` (empty: all good)."""
    problems = []
    for name in CAPABILITY_FIELDS:
        value = status.get(name)
        if value is None or int(value, 16) != 0:
            problems.append(f"{name} is {value}, expected 0")
    if status.get("NoNewPrivs") != "1":
        problems.append(f"NoNewPrivs is {status.get('NoNewPrivs')}, expected 1")
    for name, wanted in (("Uid", uid), ("Gid", gid)):
        values = status.get(name, "").split()
        if values != [str(wanted)] * 4:
            problems.append(f"{name} is {' '.join(values)}, expected {wanted} four times")
    shown = sorted(int(g) for g in status.get("Groups", "").split())
    if shown != sorted(set(groups)):
        problems.append(f"Groups is {shown}, expected {sorted(set(groups))}")
    return problems


def verify_dropped(uid: int, gid: int, groups: Iterable[int]) -> None:
    """Refuse to continue unless the kernel reports the process fully unprivileged."""
    try:
        # Binary, decoded by hand: in the chroot, Python can no longer import the codec
        # module a text-mode open() would need.
        with open(STATUS, "rb") as file:
            status = parse_status(file.read().decode("ascii", "replace"))
    except OSError as error:
        raise PrivilegeError(
            f"cannot read {STATUS} to check privileges: {error.strerror}"
        ) from None
    problems = status_problems(status, uid, gid, groups)
    if problems:
        raise PrivilegeError(
            "refusing to run the command with privileges left: " + "; ".join(problems)
        )


class ActingAs:
    """`with ActingAs(uid, gid, groups):` root takes the user's effective ids and groups for
    a while (path lookups then check the user's permissions, as the original resolved
    volume sources), and gets root's back on leaving. The real and saved ids stay root's,
    which is what makes the way back possible."""

    __slots__ = ("gid", "groups", "saved_groups", "uid")

    def __init__(self, uid: int, gid: int, groups: Sequence[int]) -> None:
        self.uid = uid
        self.gid = gid
        self.groups = list(groups)
        self.saved_groups: list[int] = []

    def __enter__(self) -> None:
        self.saved_groups = os.getgroups()
        try:
            os.setgroups(self.groups)
            os.setresgid(-1, self.gid, -1)
            os.setresuid(-1, self.uid, -1)
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc_info: object) -> None:
        # uid first: with a non-root effective uid the other two are not allowed.
        os.setresuid(-1, 0, -1)
        os.setresgid(-1, 0, -1)
        os.setgroups(self.saved_groups)
