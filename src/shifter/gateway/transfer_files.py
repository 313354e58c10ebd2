"""What both transfer modes share: the error, the file-name rule, and the order of files.

Only names of the form `<64 hex digits>.<squashfs|ext4|cramfs|meta|json>` are ever passed
on: image ids are sha256 digests in hex, and these are the files the gateway produces. The
rule is checked before any path is built or any command is run, so a name can never carry a
`/`, a leading `-` or `.`, a space or a shell character to a local path or a remote shell.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from shifter.errors import ShifterError

IMAGE_FILE_SUFFIXES = ("squashfs", "ext4", "cramfs", "meta", "json")
IMAGE_FILE_NAME = re.compile(r"[0-9a-f]{64}\.(?:squashfs|ext4|cramfs|meta|json)\Z")
META_SUFFIX = ".meta"
NAME_HINT = "image files are named <sha256 hex id>.<squashfs|ext4|cramfs|meta|json>"


class TransferError(ShifterError):
    """Image files could not be published to, removed from or checked in an imageDir."""


def check_file_name(name: str) -> str:
    """`name` if it is an image file name the gateway may place in imageDir."""
    if not isinstance(name, str) or not IMAGE_FILE_NAME.match(name):
        raise TransferError(f"refusing image file name {name!r}", hint=NAME_HINT)
    return name


def publish_order(files: Sequence[Path]) -> list[Path]:
    """The files to publish, names checked, `.meta` files last.

    The runtime takes `<id>.meta` as "the image is here", so it may appear only once the
    image it describes is complete; the others keep the caller's order.
    """
    paths = [Path(file) for file in files]
    names = [check_file_name(path.name) for path in paths]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise TransferError(f"{repeated[0]} is listed twice in one publish", hint=NAME_HINT)
    return sorted(paths, key=lambda path: path.name.endswith(META_SUFFIX))


def removal_order(names: Iterable[str]) -> list[str]:
    """The names to remove, checked, `.meta` files first (the image disappears at once)."""
    checked = list(dict.fromkeys(check_file_name(name) for name in names))
    return sorted(checked, key=lambda name: not name.endswith(META_SUFFIX))


def describe_names(names: Sequence[str]) -> str:
    """Names for a message: one image's files as `<id>.{squashfs,json,meta}`."""
    stems = {name.partition(".")[0] for name in names}
    if len(names) > 1 and len(stems) == 1:
        suffixes = ",".join(name.partition(".")[2] for name in names)
        return f"{stems.pop()}.{{{suffixes}}}"
    return ", ".join(names)
