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

import contextlib
import gc
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from shifter.convert.layers import Header, Kind, LayerError, read_headers
from shifter.convert.planned import Plan, PlannedEntry, Skipped, Source

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
    fast = name[2:] if name.startswith("./") else name
    if not fast.startswith((".", "/")) and "/." not in fast and "//" not in fast:
        return fast[:-1] if fast.endswith("/") else fast  # no ".", ".." or empty components
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
    if len(path) <= NAME_MAX // 4:
        return False  # a character is at most 4 bytes
    return any(len(p.encode("utf-8", "surrogateescape")) > NAME_MAX for p in path.split("/"))


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
        # Resolved parent directories by path: most entries share a parent with the previous
        # one. Cleared whenever a directory or symlink is removed or replaced (a cached walk
        # may have gone through it); adding a name cannot change an existing walk.
        self._parents: dict[str, _Dir] = {}

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
                self._parents.clear()
            return
        name = base[len(WHITEOUT_PREFIX) :]
        if base.startswith(WHITEOUT_PREFIX * 2) or name in ("", ".", ".."):
            log.debug("layer %d: ignoring whiteout %r", layer, path)  # aufs metadata
            return
        try:
            holder = self._resolve_dir(_split(parent), create=False)
        except _Unresolved:
            return
        if holder.children.pop(name, None) is not None:
            self._parents.clear()

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
        if WHITEOUT_PREFIX in path and any(p.startswith(WHITEOUT_PREFIX) for p in parts[:-1]):
            self._skip(layer, path, "it lies inside a whiteout name")
            return
        if header.kind is Kind.SYMLINK and not header.linkname:
            self._skip(layer, path, "a symbolic link with an empty target")
            return
        try:
            linked = None
            if header.kind is Kind.HARDLINK:
                linked = self._link_target(layer, path, header)
            parent_path = path.rpartition("/")[0]
            parent = self._parents.get(parent_path)
            if parent is None:
                parent = self._parents[parent_path] = self._resolve_dir(parts[:-1], create=True)
        except _Unresolved as exc:
            self._skip(layer, path, exc.reason)
            return
        name = parts[-1]
        existing = parent.children.get(name)
        node: _Node
        if header.kind is Kind.DIR:
            if isinstance(existing, _Dir):
                existing.meta = self._meta(header)  # a directory over a directory merges
                return
            node = _Dir(self._meta(header))
        elif header.kind is Kind.FILE:
            meta = self._meta(header)
            copy_as = path if self._copyable(path, header, meta) else None
            source = Source(
                layer, header.member, header.name, header.size, header.start, header.offset, copy_as
            )
            node = _Inode(meta, source)
        elif header.kind is Kind.SYMLINK:
            node = _Symlink(self._meta(header), header.linkname)
        else:
            assert linked is not None
            node = linked
        if isinstance(existing, _Dir | _Symlink):
            self._parents.clear()
        parent.children[name] = node

    def _copyable(self, path: str, header: Header, meta: Meta) -> bool:
        """Whether the member's own blocks say exactly what the plan decided for `path`, so
        the merge may copy them. With ownership "root" the owners in the header do not
        matter: the squashfs builder makes every file root's (-all-root)."""
        if not header.plain or header.name not in (path, f"./{path}"):
            return False
        if (header.mode, header.mtime) != (meta[0], meta[3]):
            return False
        if self._ownership == "root":
            return True
        # mksquashfs maps owner names through the host's user database: only bare ids pass.
        return not header.owner_names and (header.uid, header.gid) == (meta[1], meta[2])

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
        names: dict[_Inode, list[str]] = {}  # every name of each regular file (hard links)
        stack: list[tuple[str, _Dir]] = [("", self._root)]
        while stack:
            path, node = stack.pop()
            dirs.append(PlannedEntry(path, Kind.DIR, *node.meta))
            prefix = f"{path}/" if path else ""
            subdirs = []
            for name in sorted(node.children):
                child = node.children[name]
                if isinstance(child, _Inode):
                    names.setdefault(child, []).append(prefix + name)
                elif isinstance(child, _Dir):
                    subdirs.append((prefix + name, child))
                else:
                    symlinks.append(
                        PlannedEntry(prefix + name, Kind.SYMLINK, *child.meta, link=child.target)
                    )
            stack.extend(reversed(subdirs))  # popped back in sorted order: parents first
        files: list[PlannedEntry] = []
        links: list[PlannedEntry] = []
        # Files in the order their data streams past in the merge: Source sorts by
        # (layer, member) first, and no two files share both.
        for inode in sorted(names, key=lambda i: i.source):
            paths = names[inode]
            carrier = min(paths)
            source = inode.source
            verbatim = source.copy_as == carrier
            files.append(
                PlannedEntry(carrier, Kind.FILE, *inode.meta, source.size, "", source, verbatim)
            )
            if len(paths) > 1:
                others = sorted(p for p in paths if p != carrier)
                links.extend(
                    PlannedEntry(p, Kind.HARDLINK, *inode.meta, link=carrier) for p in others
                )
        return Plan(tuple(dirs + files + links + symlinks), tuple(self._skipped))


def _split(path: str) -> list[str]:
    return path.split("/") if path else []


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Planning makes a few objects per member and no reference cycles, and keeps them all;
    the cyclic garbage collector would walk them again and again as they pile up (a third
    of the planning time of a 50,000-file image). It is paused meanwhile, and re-enabled
    only by whoever paused it, so nested or concurrent plans leave it as they found it.

    The collector is process-wide: in the gateway other pulls and requests run meanwhile.
    So it is paused only around CPU-bound steps of one layer (fractions of a second), never
    while a download is awaited, which can take minutes."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def plan_from_headers(layers: Iterable[Iterable[Header]], *, ownership: Ownership) -> Plan:
    """Plan the flattened image from each layer's headers, bottom layer first. `layers` may
    be lazy: the pull engine yields each layer's headers once it has downloaded them."""
    builder = TreeBuilder(ownership)
    for index, headers in enumerate(layers):  # a lazy `layers` waits here, collector on
        with paused_gc():
            builder.apply_layer(index, headers)
    with paused_gc():
        plan = builder.plan()
    if plan.skipped:
        log.info("%d layer members were not kept in the image", len(plan.skipped))
    return plan


def plan_layers(layers: Sequence[Path], *, ownership: Ownership = "root") -> Plan:
    """Read the headers of `layers` (bottom first) and plan the flattened image."""
    # One layer's headers at a time: memory grows with entries, never with data.
    return plan_from_headers((list(read_headers(path)) for path in layers), ownership=ownership)
