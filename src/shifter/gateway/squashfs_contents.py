"""What an imported squashfs may hold: refusing files that would carry privilege.

An import is a file a user built, so nothing in it has been through the pull engine's
flattening, which drops device nodes, setuid/setgid bits and extended attributes from
layers. The runtime mounts images nosuid and nodev, but a site copying an image elsewhere,
or a runtime mounted otherwise, must not inherit them either: an import holding any of
them is refused, naming the first offenders (rebuilding it without them would hand the
user an image that differs from the one they tested).

The listing comes from `sqfs2tar` (squashfs-tools-ng): a tar stream whose headers give
each entry's type, mode and extended attributes (pax `SCHILY.xattr.*`) exactly, whatever
characters its name holds. It reads the whole image once.
"""

from __future__ import annotations

import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from shifter import proc
from shifter.errors import ShifterError, ToolError

SHOWN_OFFENDERS = 5
_XATTR_PREFIX = "SCHILY.xattr."
_DEVICE_TYPES = (tarfile.CHRTYPE, tarfile.BLKTYPE)


class ImportRefused(ShifterError):
    """An imported image holds setuid/setgid files, device nodes or extended attributes."""


def offenders(members: tarfile.TarFile, limit: int) -> tuple[list[str], int]:
    """The first `limit` entries that may not be imported, described, and their count."""
    found: list[str] = []
    count = 0
    for member in members:
        reasons = []
        if member.type in _DEVICE_TYPES:
            reasons.append("device node")
        if member.mode & (stat.S_ISUID | stat.S_ISGID) and member.type not in _DEVICE_TYPES:
            reasons.append("setuid" if member.mode & stat.S_ISUID else "setgid")
        names = sorted(key[len(_XATTR_PREFIX):] for key in member.pax_headers
                       if key.startswith(_XATTR_PREFIX))
        if names:
            reasons.append(f"extended attributes {', '.join(names)}")
        if reasons:
            count += 1
            if len(found) < limit:
                found.append(f"{_shown(member.name)}: {' and '.join(reasons)}")
    return found, count


def _shown(name: str) -> str:
    """The path as it is in the container; quoted when it holds unprintable characters."""
    path = "/" + name.removeprefix(".").lstrip("/")
    return path if path.isprintable() else repr(path)


def check_contents(image: Path, shown_name: str) -> None:
    """Refuse an imported squashfs holding what `offenders` finds."""

    def read(stream: BinaryIO) -> tuple[list[str], int]:
        with tarfile.open(fileobj=stream, mode="r|") as members:
            return offenders(members, SHOWN_OFFENDERS)

    try:
        found, count = proc.run_reading(
            ["sqfs2tar", "--no-skip", "--root-becomes", ".", str(image)], read)
    except (ToolError, tarfile.TarError) as error:
        raise ImportRefused(
            f"cannot list the contents of {shown_name}: {error}",
            hint="check that the file is a squashfs image made by mksquashfs",
        ) from error
    if count:
        more = f" (and {count - len(found)} more)" if count > len(found) else ""
        raise ImportRefused(
            f"{shown_name} holds {count} file(s) that may not be imported{more}: "
            + "; ".join(found),
            hint="images may not hold setuid or setgid files, device nodes or extended "
            "attributes: rebuild it without them (mksquashfs -no-xattrs, chmod u-s,g-s)",
        )
