"""The mount table as the kernel shows it (/proc/self/mountinfo): what setupRoot finds
before it mounts and what unsetupRoot must take down.

A line (proc(5)):

    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    id parent major:minor root mount-point options [optional fields...] - type source super

Paths are escaped (space, tab, newline and backslash as `\\ooo` octal). `parse_mountinfo`
is a pure function; `read_mountinfo` reads this process's table.
"""

from __future__ import annotations

MOUNTINFO = "/proc/self/mountinfo"


class MountEntry:
    """One mount. `shared`: the mount propagates events to a peer group (mounting below it
    creates copies elsewhere). (Plain class: cheap to build by the hundred.)"""

    __slots__ = ("device", "fstype", "id", "mount_point", "parent", "root", "shared", "source")

    def __init__(
        self,
        *,
        id: int,
        parent: int,
        device: str,
        root: str,
        mount_point: str,
        fstype: str,
        source: str,
        shared: bool,
    ) -> None:
        self.id = id
        self.parent = parent
        self.device = device  # "major:minor"
        self.root = root  # the directory of the filesystem mounted there
        self.mount_point = mount_point
        self.fstype = fstype
        self.source = source
        self.shared = shared

    def __repr__(self) -> str:
        return f"MountEntry({self.id}, {self.mount_point!r}, {self.fstype}, {self.source!r})"


def unescape(text: str) -> str:
    """Undo the kernel's octal escapes (`\\040` is a space)."""
    if "\\" not in text:
        return text
    out = []
    index = 0
    while index < len(text):
        char = text[index]
        digits = text[index + 1 : index + 4]
        if char == "\\" and len(digits) == 3 and all(d in "01234567" for d in digits):
            out.append(chr(int(digits, 8)))
            index += 4
        else:
            out.append(char)
            index += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Every mount of a mountinfo text, in the kernel's order (parents before children)."""
    entries = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 10 or "-" not in fields[6:]:
            continue  # not a mountinfo line
        separator = fields.index("-", 6)
        optional = fields[6:separator]
        entries.append(
            MountEntry(
                id=int(fields[0]),
                parent=int(fields[1]),
                device=fields[2],
                root=unescape(fields[3]),
                mount_point=unescape(fields[4]),
                fstype=fields[separator + 1],
                source=unescape(fields[separator + 2]),
                shared=any(field.startswith("shared:") for field in optional),
            )
        )
    return entries


def read_mountinfo() -> list[MountEntry]:
    with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as file:
        return parse_mountinfo(file.read())


def is_under(path: str, tree: str) -> bool:
    """`path` is `tree` or below it (whole components: /a/bc is not under /a/b)."""
    tree = tree.rstrip("/") or "/"
    return path == tree or path.startswith(tree + "/") or tree == "/"


def mounts_at_or_under(entries: list[MountEntry], tree: str) -> list[MountEntry]:
    return [entry for entry in entries if is_under(entry.mount_point, tree)]


def is_self_bind(entry: MountEntry, entries: list[MountEntry]) -> bool:
    """`entry` is its mount point's directory bound onto itself (how a site makes a
    directory a private mount point): same filesystem as its parent, same directory."""
    parent = next((e for e in entries if e.id == entry.parent), None)
    if parent is None or parent.device != entry.device:
        return False
    if not is_under(entry.mount_point, parent.mount_point):
        return False
    relative = entry.mount_point[len(parent.mount_point.rstrip("/")) :]
    return entry.root == (parent.root.rstrip("/") + relative or "/")


def mount_containing(entries: list[MountEntry], path: str) -> MountEntry | None:
    """The mount `path` is on (the last-mounted one with the longest matching mount point)."""
    best: MountEntry | None = None
    for entry in entries:
        if is_under(path, entry.mount_point) and (
            best is None or len(entry.mount_point) >= len(best.mount_point)
        ):
            best = entry
    return best
