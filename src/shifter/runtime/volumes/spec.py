"""The volume-map grammar shared by `--volume`, `SHIFTER_VOLUME`, `siteFs` and module siteFs.

Syntax only. Which flags a user may give, which destinations are forbidden and what a
symlink may point at are policy, checked later by the code that knows the context.

    volumes := entry (';' entry)*           empty entries are skipped
    entry   := SOURCE [':' TARGET] (':' FLAG)*   optionally wrapped in double quotes
    FLAG    := ro | rec | slave | private       (any letter case, no value)
             | perNodeCache=KEY=VALUE(,KEY=VALUE)*   keys size (required), bs, fs, method

A bare SOURCE (TARGET = SOURCE) is accepted only when the caller allows it (site volumes).
Paths must be absolute, may hold only ASCII letters, digits and `_ . + - /`, and may not
contain a `..` component. They are normalised (repeated `/`, `.` components and a trailing
`/` removed) so that later prefix checks cannot be dodged with `//etc` or `/./etc`.

Deliberate differences from the original, which silently filtered characters and ignored
surprises: a character outside the allowed set, an empty flag, an unknown perNodeCache key
and trailing garbage in a size are errors here, not silently dropped.
"""

from __future__ import annotations

from shifter.errors import ParseError
from shifter.frozen import Frozen

TYPE_CHECKING = False  # launch path: `typing` and `collections.abc` cost start-up time
if TYPE_CHECKING:
    from collections.abc import Iterable

SPEC_HINT = (
    "expected SOURCE:TARGET[:FLAG]..., FLAG one of ro, rec, slave, private, "
    "perNodeCache=size=SIZE[,bs=SIZE][,fs=xfs][,method=loop]; separate volumes with ';'"
)
SIMPLE_FLAGS = ("ro", "rec", "slave", "private")
PER_NODE_CACHE = "perNodeCache"
DEFAULT_BLOCK_SIZE = 1024 * 1024
# The original's signature writes `fstype=`, its parser reads `fs=`; accepting both keeps
# format(parse(x)) parseable and byte-identical to the original's volume signature.
_CACHE_KEYS = {"size": "size", "bs": "bs", "fs": "fstype", "fstype": "fstype", "method": "method"}
_PATH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-/")
# Compiled on first use (re's cache keeps it): sizes are rare, and `re` costs the launch
# path about 2 ms to import.
_SIZE = r"(\d+)(?:\.(\d+))?([bkmgtpe])?(?:(?<=[kmgtpe])i?b)?"
_SIZE_POWERS = "bkmgtpe"


# Frozen, not dataclasses: this module is on the launch path (see `shifter.frozen`).
class PerNodeCache(Frozen):
    """A per-node scratch filesystem: a sparse file of `size` bytes formatted as `fstype`."""

    size: int
    block_size: int = DEFAULT_BLOCK_SIZE
    method: str = "loop"
    fstype: str = "xfs"


class VolumeSpec(Frozen):
    """One bind mount request: host `source` onto container `target`, with its flags."""

    source: str
    target: str
    read_only: bool = False
    recursive: bool = False
    # "slave", "private", or None to use udiRoot.conf's mountPropagationStyle.
    propagation: str | None = None
    per_node_cache: PerNodeCache | None = None

    @property
    def flags(self) -> tuple[str, ...]:
        """Flag names in the original's numeric order (ro, rec, perNodeCache, slave, private)."""
        names = []
        if self.read_only:
            names.append("ro")
        if self.recursive:
            names.append("rec")
        if self.per_node_cache is not None:
            names.append(PER_NODE_CACHE)
        if self.propagation is not None:
            names.append(self.propagation)
        return tuple(names)

    def __str__(self) -> str:
        return format_volume_spec(self)


def parse_size(text: str, *, what: str = "size") -> int:
    """Bytes in `text`: a number with an optional b/k/m/g/t/p/e unit (powers of 1024).

    `500k`, `500KB`, `500KiB` and `1.5G` are accepted; anything after the unit is an error
    (the original ignored it). The result is truncated to whole bytes and must be positive.
    """
    import re

    match = re.fullmatch(_SIZE, text.strip(), re.IGNORECASE)
    if match is None:
        raise ParseError(
            f"invalid {what} {text!r}",
            hint="write a number with an optional unit b, k, m, g, t, p or e, e.g. 10G",
        )
    whole, fraction, unit = match.groups()
    multiplier = 1024 ** _SIZE_POWERS.index((unit or "b").lower())
    value = int(whole) * multiplier
    if fraction:
        value += int(fraction) * multiplier // 10 ** len(fraction)
    if value <= 0:
        raise ParseError(f"invalid {what} {text!r}: must be at least one byte")
    return value


class _EntryParser:
    """Parses one entry; keeps the raw entry and the location for every error message."""

    def __init__(self, entry: str, source: str | None, line: int | None) -> None:
        self.entry = entry
        self.source = source
        self.line = line

    def fail(self, reason: str, hint: str = SPEC_HINT) -> ParseError:
        return ParseError(
            f"invalid volume {self.entry!r}: {reason}",
            source=self.source,
            line=self.line,
            hint=hint,
        )

    def path(self, which: str, raw: str) -> str:
        text = raw.strip()
        if not text:
            raise self.fail(f"the {which} path is empty")
        if not text.startswith("/"):
            raise self.fail(f"the {which} path {text!r} is not absolute")
        for char in text:
            if char not in _PATH_CHARS:
                raise self.fail(
                    f"the {which} path {text!r} contains {char!r}",
                    hint="paths may hold only ASCII letters, digits and _ . + - /",
                )
        parts = [part for part in text.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise self.fail(f"the {which} path {text!r} contains '..'")
        return "/" + "/".join(parts)

    def per_node_cache(self, token: str, options: str) -> PerNodeCache:
        if not options:
            raise self.fail(f"{token!r} needs at least size=SIZE")
        values: dict[str, str] = {}
        for option in options.split(","):
            key, eq, value = option.partition("=")
            field = _CACHE_KEYS.get(key.strip().lower())
            if field is None or not eq or not value.strip():
                raise self.fail(
                    f"bad perNodeCache option {option!r}",
                    hint="perNodeCache options are size=SIZE, bs=SIZE, fs=xfs and method=loop",
                )
            if field in values:
                raise self.fail(f"perNodeCache option {key.strip()!r} given twice")
            values[field] = value.strip()
        if "size" not in values:
            raise self.fail("perNodeCache needs size=SIZE")
        try:
            size = parse_size(values["size"], what="perNodeCache size")
            block = parse_size(values.get("bs", str(DEFAULT_BLOCK_SIZE)), what="perNodeCache bs")
        except ParseError as error:
            raise self.fail(error.message, hint=error.hint or SPEC_HINT) from None
        fstype = values.get("fstype", "xfs").lower()
        if fstype != "xfs":
            raise self.fail(f"perNodeCache fs {fstype!r} is not supported (only xfs)")
        method = values.get("method", "loop").lower()
        if method != "loop":
            raise self.fail(f"perNodeCache method {method!r} is not supported (only loop)")
        return PerNodeCache(size=size, block_size=block, method=method, fstype=fstype)

    def flags(self, tokens: list[str]) -> dict[str, object]:
        seen: dict[str, object] = {}
        for raw in tokens:
            token = raw.strip()
            name, eq, value = token.partition("=")
            lowered = name.lower()
            if lowered in SIMPLE_FLAGS:
                if eq:
                    raise self.fail(f"flag {name!r} takes no value")
                flag, parsed = lowered, True
            elif lowered == PER_NODE_CACHE.lower():
                flag, parsed = PER_NODE_CACHE, self.per_node_cache(token, value)
            elif not token:
                raise self.fail("empty flag (two ':' in a row or a trailing ':')")
            elif "," in token and all(p.strip().lower() in SIMPLE_FLAGS for p in token.split(",")):
                fixed = ":".join(p.strip() for p in token.split(","))
                raise self.fail(
                    f"flags are separated by ':', not ',' ({token!r})", hint=f"write ...:{fixed}"
                )
            else:
                raise self.fail(f"unknown flag {token!r}")
            if flag in seen:
                raise self.fail(f"flag {flag!r} given twice")
            seen[flag] = parsed
        if "slave" in seen and "private" in seen:
            raise self.fail("flags 'slave' and 'private' contradict each other")
        return seen

    def parse(self, allow_bare_source: bool) -> VolumeSpec:
        text = self.entry.strip()
        if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
            text = text[1:-1]
        tokens = text.split(":")
        source = self.path("source", tokens[0])
        if len(tokens) == 1:
            if not allow_bare_source:
                raise self.fail("the container path is missing", hint="write SOURCE:TARGET")
            target = source
        else:
            target = self.path("target", tokens[1])
        flags = self.flags(tokens[2:])
        propagation = next((f for f in ("slave", "private") if f in flags), None)
        cache = flags.get(PER_NODE_CACHE)
        return VolumeSpec(
            source=source,
            target=target,
            read_only="ro" in flags,
            recursive="rec" in flags,
            propagation=propagation,
            per_node_cache=cache if isinstance(cache, PerNodeCache) else None,
        )


def parse_volume_spec(
    entry: str,
    *,
    allow_bare_source: bool = False,
    source: str | None = None,
    line: int | None = None,
) -> VolumeSpec:
    """One entry (no `;`). `source`/`line` locate errors (a file, or e.g. `--volume`)."""
    return _EntryParser(entry, source, line).parse(allow_bare_source)


def parse_volume_specs(
    text: str,
    *,
    allow_bare_source: bool = False,
    source: str | None = None,
    line: int | None = None,
) -> tuple[VolumeSpec, ...]:
    """Every `;`-separated entry of `text`, in order; blank entries are skipped."""
    return tuple(
        parse_volume_spec(entry, allow_bare_source=allow_bare_source, source=source, line=line)
        for entry in text.split(";")
        if entry.strip()
    )


def format_volume_spec(spec: VolumeSpec) -> str:
    """The canonical text of `spec`: what `parse_volume_spec` reads back to an equal value."""
    parts = [spec.source, spec.target]
    for flag in spec.flags:
        cache = spec.per_node_cache
        if flag == PER_NODE_CACHE and cache is not None:
            flag = (
                f"{PER_NODE_CACHE}=size={cache.size},bs={cache.block_size},"
                f"method={cache.method},fstype={cache.fstype}"
            )
        parts.append(flag)
    return ":".join(parts)


def format_volume_specs(specs: Iterable[VolumeSpec]) -> str:
    """Canonical entries joined with `;`, in the given order."""
    return ";".join(format_volume_spec(spec) for spec in specs)


def volume_signature(specs: Iterable[VolumeSpec]) -> str:
    """The order-independent form used to recognise an existing container (sorted entries)."""
    return ";".join(sorted(format_volume_spec(spec) for spec in specs))
