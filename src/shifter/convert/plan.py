"""The flattening plan: which member of which layer supplies each path of the final image.

Only tar headers are read. The layers are applied in order to an in-memory tree (names and
metadata, never data), following the rules Docker's layer extraction follows; the result is
frozen into a `Plan` that the merge executes mechanically. `docs/flattening.md` explains each
rule and why.

The tree can never name a location outside the image: paths are keys in nested dictionaries,
`..` is clamped lexically in names and structurally (a stack that cannot pop the root) in
symlink targets, so the plan is safe by construction rather than by checking.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shifter.convert.layers import Header, Kind, LayerError, read_headers

log = logging.getLogger(__name__)

Ownership = Literal["root", "preserve"]
OWNERSHIPS: tuple[Ownership, ...] = ("root", "preserve")

MAX_SYMLINK_HOPS = 40  # the kernel's limit for one path walk
NAME_MAX = 255  # bytes in one name, as in Linux and squashfs
KEPT_MODE_BITS = 0o1777  # permissions and sticky; setuid and setgid never reach an image
MAX_MTIME = 2**32 - 1  # squashfs stores 32-bit unsigned times
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

Meta = tuple[int, int, int, int]  # mode, uid, gid, mtime
DEFAULT_DIR_META: Meta = (0o755, 0, 0, 0)


def normalize_name(name: str) -> str | None:
    """A member name as a path relative to the image root, or None if it can never be one.

    Leading `/` and `./` go, duplicate slashes collapse, `..` is applied lexically and
    clamped at the root (as `filepath.Clean` does in Docker). `""` is the root itself.
    """
    if "\x00" in name:
        return None
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def _name_too_long(path: str) -> bool:
    return any(len(p.encode("utf-8", "surrogateescape")) > NAME_MAX for p in path.split("/"))


@dataclass(frozen=True, slots=True)
class Source:
    """Where a regular file's data is: member `member` (0-based) of layer `layer`."""

    layer: int
    member: int
    name: str  # the member's name as stored, checked again when the merge reads it
    size: int


@dataclass(frozen=True, slots=True)
class PlannedEntry:
    """One entry of the final image, with its final metadata.

    FILE entries carry their data `source`; HARDLINK entries name, in `link`, the FILE entry
    they share an inode with; SYMLINK entries keep their target as stored in the layer.
    """

    path: str
    kind: Kind
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int = 0
    link: str = ""
    source: Source | None = None


@dataclass(frozen=True, slots=True)
class Skipped:
    """A member that did not reach the image, and why."""

    layer: int
    path: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """The final tree in output order: directories (parents first), files, hard links, symlinks.

    Symlinks come last so that whoever writes the tree never meets a symlink on the way to
    another entry.
    """

    entries: tuple[PlannedEntry, ...]
    skipped: tuple[Skipped, ...] = ()

    @functools.cached_property
    def _index(self) -> dict[str, PlannedEntry]:
        return {e.path: e for e in self.entries}  # built on first lookup: the merge never asks

    def get(self, path: str) -> PlannedEntry | None:
        return self._index.get(path)

    def __contains__(self, path: object) -> bool:
        return path in self._index

    @property
    def data_bytes(self) -> int:
        return sum(e.size for e in self.entries if e.kind is Kind.FILE)

    def sources(self, layer: int) -> dict[int, PlannedEntry]:
        """The FILE entries whose data comes from `layer`, by member ordinal."""
        return {
            e.source.member: e
            for e in self.entries
            if e.source is not None and e.source.layer == layer
        }


class _Dir:
    __slots__ = ("children", "meta")

    def __init__(self, meta: Meta) -> None:
        self.meta = meta
        self.children: dict[str, _Node] = {}


class _Inode:
    """A regular file; hard links are the same `_Inode` object under several names."""

    __slots__ = ("meta", "source")

    def __init__(self, meta: Meta, source: Source) -> None:
        self.meta = meta
        self.source = source


class _Symlink:
    __slots__ = ("meta", "target")

    def __init__(self, meta: Meta, target: str) -> None:
        self.meta = meta
        self.target = target


_Node = _Dir | _Inode | _Symlink


class _Unresolved(Exception):
    """A path that cannot be walked; the entry is skipped with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _is_whiteout(path: str) -> bool:
    return path.rpartition("/")[2].startswith(WHITEOUT_PREFIX)


class TreeBuilder:
    """Applies layers, in order, to the in-memory tree."""

    def __init__(self, ownership: Ownership = "root") -> None:
        if ownership not in OWNERSHIPS:
            raise ValueError(f"ownership must be one of {OWNERSHIPS}, not {ownership!r}")
        self._ownership = ownership
        self._root = _Dir(DEFAULT_DIR_META)
        self._skipped: list[Skipped] = []
        self._specials: set[str] = set()  # skipped devices and fifos, for hard links to them

    def apply_layer(self, layer: int, headers: Iterable[Header]) -> None:
        """Whiteouts first, then everything else in archive order.

        A whiteout only hides what lower layers put there (OCI image spec), so applying all
        of a layer's whiteouts before its other entries makes their order in the archive
        irrelevant: an opaque marker written after the directory's new files keeps them.
        """
        entries: list[tuple[str | None, Header]] = [(normalize_name(h.name), h) for h in headers]
        for path, _header in entries:
            if path is not None and _is_whiteout(path):
                self._whiteout(layer, path)
        for path, header in entries:
            if path is None:
                self._skip(layer, header.name, "invalid name (contains NUL)")
            elif not _is_whiteout(path):
                self._add(layer, path, header)

    def _skip(self, layer: int, path: str, reason: str) -> None:
        log.debug("layer %d: skipping %r: %s", layer, path, reason)
        self._skipped.append(Skipped(layer, path, reason))

    def _meta(self, header: Header) -> Meta:
        uid, gid = (0, 0) if self._ownership == "root" else (header.uid, header.gid)
        return (header.mode & KEPT_MODE_BITS, uid, gid, min(max(header.mtime, 0), MAX_MTIME))

    def _resolve_dir(self, parts: Sequence[str], *, create: bool) -> _Dir:
        """The directory `parts` names, following symlinks inside the image root.

        Symlink targets are read as the kernel would inside the container: absolute ones
        from the image root, `..` from the directory actually reached, clamped at the root.
        With `create`, missing directories named by the entry itself are made (0755, like
        MkdirAll); a missing component of a symlink's target is a dangling link instead.
        """
        stack: list[_Dir] = [self._root]
        pending: list[tuple[str, bool]] = [(p, False) for p in reversed(parts)]
        hops = 0
        while pending:
            name, via_link = pending.pop()
            if name == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            here = stack[-1]
            node = here.children.get(name)
            if node is None:
                if via_link:
                    raise _Unresolved("its parent path goes through a dangling symbolic link")
                if not create:
                    raise _Unresolved("its parent directory does not exist")
                node = here.children[name] = _Dir(DEFAULT_DIR_META)
            if isinstance(node, _Symlink):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise _Unresolved("too many levels of symbolic links")
                if node.target.startswith("/"):
                    del stack[1:]
                target = [p for p in node.target.split("/") if p not in ("", ".")]
                pending.extend((p, True) for p in reversed(target))
            elif isinstance(node, _Dir):
                stack.append(node)
            else:
                raise _Unresolved("a component of its parent path is not a directory")
        return stack[-1]

    def _whiteout(self, layer: int, path: str) -> None:
        parent, _, base = path.rpartition("/")
        if base == OPAQUE_MARKER:
            # Resolve the directory's parents but not the directory itself: an opaque
            # marker inside a symlink does nothing, as in Docker.
            dir_parent, _, dir_name = parent.rpartition("/")
            try:
                holder = self._resolve_dir(_split(dir_parent), create=False)
            except _Unresolved:
                return
            target = holder.children.get(dir_name) if dir_name else self._root
            if isinstance(target, _Dir):
                target.children.clear()
            return
        name = base[len(WHITEOUT_PREFIX) :]
        if base.startswith(WHITEOUT_PREFIX * 2) or name in ("", ".", ".."):
            log.debug("layer %d: ignoring whiteout %r", layer, path)  # aufs metadata
            return
        try:
            holder = self._resolve_dir(_split(parent), create=False)
        except _Unresolved:
            return
        holder.children.pop(name, None)

    def _add(self, layer: int, path: str, header: Header) -> None:
        if header.kind in (Kind.DEVICE, Kind.FIFO):
            self._specials.add(path)
            self._skip(layer, path, f"{header.kind.value} nodes are not kept in images")
            return
        if header.kind is Kind.OTHER:
            self._skip(layer, path, "unsupported tar member type")
            return
        if path == "":
            if header.kind is Kind.DIR:
                self._root.meta = self._meta(header)
            else:
                self._skip(layer, path, "a non-directory cannot replace the image root")
            return
        if _name_too_long(path):
            self._skip(layer, path, f"a name is longer than {NAME_MAX} bytes")
            return
        parts = path.split("/")
        if any(p.startswith(WHITEOUT_PREFIX) for p in parts[:-1]):
            self._skip(layer, path, "it lies inside a whiteout name")
            return
        if header.kind is Kind.SYMLINK and not header.linkname:
            self._skip(layer, path, "a symbolic link with an empty target")
            return
        try:
            linked = None
            if header.kind is Kind.HARDLINK:
                linked = self._link_target(layer, path, header)
            parent = self._resolve_dir(parts[:-1], create=True)
        except _Unresolved as exc:
            self._skip(layer, path, exc.reason)
            return
        name = parts[-1]
        if header.kind is Kind.DIR:
            existing = parent.children.get(name)
            if isinstance(existing, _Dir):
                existing.meta = self._meta(header)  # a directory over a directory merges
            else:
                parent.children[name] = _Dir(self._meta(header))
        elif header.kind is Kind.FILE:
            source = Source(layer, header.member, header.name, header.size)
            parent.children[name] = _Inode(self._meta(header), source)
        elif header.kind is Kind.SYMLINK:
            parent.children[name] = _Symlink(self._meta(header), header.linkname)
        elif linked is not None:
            parent.children[name] = linked

    def _link_target(self, layer: int, path: str, header: Header) -> _Inode | _Symlink:
        """The node a hard link shares, as the tree stands now; absent targets are fatal."""
        target = normalize_name(header.linkname)
        if not target:
            raise LayerError(
                f"layer {layer}: hard link {path!r} has an invalid target {header.linkname!r}",
                hint="the layer is corrupt or hostile; rebuild the image",
            )
        parent, _, name = target.rpartition("/")
        try:
            node = self._resolve_dir(_split(parent), create=False).children.get(name)
        except _Unresolved:
            node = None
        if node is None:
            if target in self._specials:
                raise _Unresolved("a hard link to a skipped device or fifo")
            raise LayerError(
                f"layer {layer}: hard link {path!r} points to {target!r}, which does not exist",
                hint="the image's layers are inconsistent; rebuild or re-push the image",
            )
        if isinstance(node, _Dir):
            raise LayerError(
                f"layer {layer}: hard link {path!r} points to the directory {target!r}",
                hint="the layer is corrupt or hostile; rebuild the image",
            )
        if isinstance(node, _Symlink):
            return _Symlink(node.meta, node.target)  # link(2) links the symlink itself
        return node

    def plan(self) -> Plan:
        """Freeze the tree into output order."""
        dirs: list[PlannedEntry] = []
        symlinks: list[PlannedEntry] = []
        groups: dict[int, tuple[_Inode, list[str]]] = {}
        stack: list[tuple[str, _Node]] = [("", self._root)]
        while stack:
            path, node = stack.pop()
            if isinstance(node, _Dir):
                dirs.append(PlannedEntry(path, Kind.DIR, *node.meta))
                prefix = f"{path}/" if path else ""
                names = sorted(node.children, reverse=True)  # popped back in sorted order
                stack.extend((prefix + n, node.children[n]) for n in names)
            elif isinstance(node, _Symlink):
                symlinks.append(PlannedEntry(path, Kind.SYMLINK, *node.meta, link=node.target))
            else:
                groups.setdefault(id(node), (node, []))[1].append(path)
        files: list[PlannedEntry] = []
        links: list[PlannedEntry] = []
        # Files in the order their data streams past in the merge.
        for inode, paths in sorted(groups.values(), key=lambda g: _order(g[0].source)):
            carrier, *others = sorted(paths)
            source = inode.source
            files.append(PlannedEntry(carrier, Kind.FILE, *inode.meta, source.size, source=source))
            links.extend(PlannedEntry(p, Kind.HARDLINK, *inode.meta, link=carrier) for p in others)
        return Plan(tuple(dirs + files + links + symlinks), tuple(self._skipped))


def _order(source: Source) -> tuple[int, int]:
    return (source.layer, source.member)


def _split(path: str) -> list[str]:
    return path.split("/") if path else []


def plan_layers(layers: Sequence[Path], *, ownership: Ownership = "root") -> Plan:
    """Read the headers of `layers` (bottom first) and plan the flattened image."""
    builder = TreeBuilder(ownership)
    for index, layer in enumerate(layers):
        # One layer's headers at a time: memory grows with entries, never with data.
        builder.apply_layer(index, list(read_headers(layer)))
    plan = builder.plan()
    if plan.skipped:
        log.info("%d layer members were not kept in the image", len(plan.skipped))
    return plan
