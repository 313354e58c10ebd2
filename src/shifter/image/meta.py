"""The `<id>.meta` file beside each image: what the runtime needs to start a container.

Format (the original gateway's, which every deployed runtime reads): `KEY: value` lines,
read with `shifter.keyvalue` (only the first `:` splits; values are trimmed; a trailing
backslash continues a line). The keys, in the order they are written:

    FORMAT: squashfs                 always (squashfs, ext4, cramfs; the runtime also knows
                                     xfs and VFS)
    ENTRY: ['/bin/sh', '-c']         the entrypoint, if any
    CMD: ['echo', 'hi']              the command, if any
    WORKDIR: /srv                    if set
    USERACL: 1001,1002               private images only: uids allowed to use the image
    GROUPACL: 1003                   private images only: gids allowed
    ENV: PATH=/usr/bin:/bin          one line per variable, in image order

ENTRY and CMD are a Python-list-like form the runtime splits on single quotes (no escapes
at all), so an element holding `'` or a newline cannot be written; such a key is left out
(with a warning: the runtime then reports "no entrypoint" rather than running a mangled
argv) and the JSON sidecar keeps the real value. ENV and WORKDIR values are trimmed by the
reader and must not end in a backslash; they are written trimmed, or left out when even
that cannot be read back.

This module is on the `shifter` launch path: standard library only.
"""

from __future__ import annotations

from shifter.errors import ParseError, ShifterError
from shifter.frozen import Frozen
from shifter.keyvalue import WHITESPACE, iter_entries

FORMATS = ("squashfs", "ext4", "cramfs", "xfs", "VFS")
INVALID_FORMAT = "INVALID"
DEFAULT_FORMAT = "VFS"  # a meta file without FORMAT describes an unpacked directory
ACL_MAX = 1000  # the runtime's limit on ids per list
ID_MAX = 2**32 - 1
DELIMITER = ":"


class MetaError(ShifterError):
    """Metadata that cannot be written in a form the runtime reads back."""


# Frozen, not a dataclass: `dataclasses` costs the launch path ~10 ms (see shifter.frozen).
class ImageMeta(Frozen):
    """The parsed `.meta` file. `format` is INVALID for a FORMAT value the runtime does not
    know; `unknown_keys` are keys it warns about and otherwise ignores (such as USER)."""

    format: str = DEFAULT_FORMAT
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    workdir: str | None = None
    user_acl: tuple[int, ...] = ()
    group_acl: tuple[int, ...] = ()
    volumes: tuple[str, ...] = ()
    unknown_keys: tuple[str, ...] = ()

    @property
    def restricted(self) -> bool:
        """Whether only the ids in the ACLs may use the image (both empty: everyone)."""
        return bool(self.user_acl or self.group_acl)


# -- reading -----------------------------------------------------------------------------


def parse_argv_list(value: str) -> tuple[str, ...] | None:
    """The runtime's reading of `['a', 'b']` (or `[u'a', u'b']`): the text between each
    pair of single quotes; None if the quotes do not pair up or there is no closing `]`."""
    inner = value[1:-1]
    if not value.endswith("]") or len(value) < 3 or inner.count("'") % 2:
        return None
    return tuple(inner.split("'")[1::2])


def _argv(value: str, key: str, source: str, line: int) -> tuple[str, ...] | None:
    if not value:
        return None
    if not value.startswith(("['", "[u'")):
        return (value,)
    parsed = parse_argv_list(value)
    if parsed is None:
        raise ParseError(
            f"Malformed JSON in {key}: {value!r}",
            source=source,
            line=line,
            hint="write ['arg', 'arg'] with every element in single quotes",
        )
    return parsed


def parse_acl(value: str, key: str, source: str, line: int) -> tuple[int, ...]:
    """Comma-separated ids: items trimmed, empty and non-numeric items skipped."""
    ids = []
    for item in value.split(","):
        item = item.strip(WHITESPACE)
        if item.isascii() and item.isdigit() and int(item) <= ID_MAX:
            ids.append(int(item))
    if value and not ids:
        raise ParseError(f"failed to parse {key} from image", source=source, line=line)
    if len(ids) > ACL_MAX:
        raise ParseError(
            f"{key} lists {len(ids)} ids, more than {ACL_MAX}", source=source, line=line
        )
    return tuple(ids)


def parse_meta(text: str, source: str = "<meta>") -> ImageMeta:
    """Parse `.meta` text; `ParseError` names `source` and the line. Repeated keys other
    than ENV and VOLUME: the last one wins, as in the original."""
    fields: dict[str, object] = {}
    env: list[str] = []
    volumes: list[str] = []
    unknown: list[str] = []
    for entry in iter_entries(text, delimiter=DELIMITER, source=source):
        key, value = entry.key, entry.value
        if key == "FORMAT":
            fields["format"] = value if value in FORMATS else INVALID_FORMAT
        elif key == "ENV":
            env.append(value)
        elif key in ("ENTRY", "CMD"):
            name = "entrypoint" if key == "ENTRY" else "cmd"
            fields[name] = _argv(value, key, source, entry.line)
        elif key == "WORKDIR":
            fields["workdir"] = value
        elif key in ("USERACL", "GROUPACL"):
            name = "user_acl" if key == "USERACL" else "group_acl"
            fields[name] = parse_acl(value, key, source, entry.line)
        elif key == "VOLUME":
            volumes.append(value)
        else:
            unknown.append(key)
    return ImageMeta(env=tuple(env), volumes=tuple(volumes), unknown_keys=tuple(unknown), **fields)  # type: ignore[arg-type]


def read_meta(path: str) -> ImageMeta:
    """Read and parse a `.meta` file. Bytes are decoded as UTF-8 (undecodable bytes kept
    as surrogates) and split on newlines only, exactly like the C reader."""
    with open(path, "rb") as file:
        data = file.read()
    return parse_meta(data.decode("utf-8", "surrogateescape"), source=str(path))


# -- writing -----------------------------------------------------------------------------


def format_argv_list(items: tuple[str, ...] | list[str]) -> str | None:
    """`['a', 'b']` as the runtime splits it back; None when an element cannot be written."""
    if not items or any(bad in item for item in items for bad in ("'", "\n", "\0")):
        return None
    return "[" + ", ".join(f"'{item}'" for item in items) + "]"


def _line_value(value: str) -> str | None:
    """`value` as a reader will get it back, or None if it cannot survive a line."""
    if "\n" in value or "\0" in value:
        return None
    trimmed = value.strip(WHITESPACE)
    if not trimmed or trimmed.endswith("\\"):
        return None
    return trimmed


def format_acl(ids: tuple[int, ...] | list[int], key: str) -> str:
    if len(ids) > ACL_MAX:
        raise MetaError(f"{key} would list {len(ids)} ids; the runtime accepts {ACL_MAX}")
    for number in ids:
        if isinstance(number, bool) or not 0 <= number <= ID_MAX:
            raise MetaError(f"{key} entry {number!r} is not a uid/gid")
    return ",".join(str(number) for number in ids)


def format_meta(
    image_format: str,
    *,
    env: tuple[str, ...] | list[str] = (),
    entrypoint: tuple[str, ...] | list[str] | None = None,
    cmd: tuple[str, ...] | list[str] | None = None,
    workdir: str | None = None,
    user_acl: tuple[int, ...] | list[int] | None = None,
    group_acl: tuple[int, ...] | list[int] | None = None,
) -> tuple[str, tuple[str, ...]]:
    """The `.meta` text and the warnings about values that had to be changed or left out."""
    if image_format not in FORMATS:
        raise MetaError(f"unknown image format {image_format!r}")
    lines = [f"FORMAT: {image_format}"]
    warnings: list[str] = []
    for key, argv in (("ENTRY", entrypoint), ("CMD", cmd)):
        if not argv:
            continue
        text = format_argv_list(argv)
        if text is None:
            warnings.append(f"{key} left out: an element holds a quote or newline ({argv!r})")
        else:
            lines.append(f"{key}: {text}")
    if workdir:
        value = _line_value(workdir)
        if value is None:
            warnings.append(f"WORKDIR left out: {workdir!r} cannot be written on one line")
        else:
            lines.append(f"WORKDIR: {value}")
    if user_acl:
        lines.append(f"USERACL: {format_acl(user_acl, 'USERACL')}")
    if group_acl:
        lines.append(f"GROUPACL: {format_acl(group_acl, 'GROUPACL')}")
    for variable in env:
        value = _line_value(variable)
        if value is None:
            warnings.append(f"ENV left out: {variable!r} cannot be written on one line")
            continue
        if value != variable:
            warnings.append(f"ENV trimmed: {variable!r} is written as {value!r}")
        lines.append(f"ENV: {value}")
    return "\n".join(lines) + "\n", tuple(warnings)


def with_acls(
    text: str, user_acl: tuple[int, ...] | list[int], group_acl: tuple[int, ...] | list[int]
) -> str:
    """A written `.meta` with its USERACL/GROUPACL lines replaced (none: everyone may use
    the image); every other line is kept as it is, and the ACL lines go where
    `format_meta` puts them, before the first ENV line."""
    acl_lines = []
    if user_acl:
        acl_lines.append(f"USERACL: {format_acl(user_acl, 'USERACL')}")
    if group_acl:
        acl_lines.append(f"GROUPACL: {format_acl(group_acl, 'GROUPACL')}")
    kept = [
        line for line in text.splitlines()
        if line.partition(DELIMITER)[0].strip() not in ("USERACL", "GROUPACL")
    ]
    at = next((i for i, line in enumerate(kept) if line.startswith("ENV:")), len(kept))
    return "\n".join(kept[:at] + acl_lines + kept[at:]) + "\n"
