"""Executing a plan: the layers are streamed a second time and only planned members are kept.

Everything but regular-file data is already in the plan, so directories are written first
(parents before children), file data follows in layer order as the layers stream past, then
hard links, then symlinks. Two sinks share that walk: a tar writer (piped into tar2sqfs) and
a directory writer (for the builders that need a tree on disk).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from shifter.convert import tario, tarwrite
from shifter.convert.layers import Kind, LayerError, member_data, stream_members
from shifter.convert.plan import Plan, PlannedEntry


class Sink(Protocol):
    def directory(self, entry: PlannedEntry) -> None: ...
    def file(self, entry: PlannedEntry, data: Iterator[bytes]) -> None: ...
    def hardlink(self, entry: PlannedEntry) -> None: ...
    def symlink(self, entry: PlannedEntry) -> None: ...
    def finish(self) -> None: ...


def replay(plan: Plan, layers: Sequence[Path], sink: Sink) -> None:
    """Feed every planned entry to `sink`, reading file data from the layers."""
    for entry in plan.entries:
        if entry.kind is Kind.DIR:
            sink.directory(entry)
    for index, layer in enumerate(layers):
        wanted = plan.sources(index)
        if not wanted:
            continue  # a layer entirely hidden by later ones is not read again
        last = max(wanted)
        for ordinal, member, reader in stream_members(layer):
            entry = wanted.get(ordinal)
            if entry is None:
                continue
            assert entry.source is not None
            if member.name != entry.source.name or member.size != entry.source.size:
                raise LayerError(
                    f"layer {layer.name} changed while it was being converted",
                    hint="another process is writing the layer cache; retry the pull",
                )
            sink.file(entry, member_data(layer, reader))
            if ordinal == last:
                break  # the rest of the layer holds nothing the image needs
    for entry in plan.entries:
        if entry.kind is Kind.HARDLINK:
            sink.hardlink(entry)
    for entry in plan.entries:
        if entry.kind is Kind.SYMLINK:
            sink.symlink(entry)
    sink.finish()


class TarSink:
    """Writes the merged image as one tar stream: numeric owners, no xattrs, no PAX extras."""

    def __init__(self, out: BinaryIO) -> None:
        self._tar = tarwrite.TarWriter(out)

    def _add(self, entry: PlannedEntry, type_: bytes, name: str, **extra: object) -> None:
        self._tar.add(
            name,
            type_,
            mode=entry.mode,
            uid=entry.uid,
            gid=entry.gid,
            mtime=entry.mtime,
            **extra,  # type: ignore[arg-type]
        )

    def directory(self, entry: PlannedEntry) -> None:
        # The root is "./", which tar2sqfs takes as the root inode's attributes.
        self._add(entry, tario.DIRECTORY, f"{entry.path}/" if entry.path else "./")

    def file(self, entry: PlannedEntry, data: Iterator[bytes]) -> None:
        self._add(entry, tario.REGULAR, entry.path, size=entry.size)
        self._tar.write_data(data, entry.size)

    def hardlink(self, entry: PlannedEntry) -> None:
        self._add(entry, tario.HARDLINK, entry.path, linkname=entry.link)

    def symlink(self, entry: PlannedEntry) -> None:
        self._add(entry, tario.SYMLINK, entry.path, linkname=entry.link)

    def finish(self) -> None:
        self._tar.close()


def write_merged_tar(plan: Plan, layers: Sequence[Path], out: BinaryIO) -> None:
    """Stream the flattened image as a tar archive into `out` (a pipe or a file)."""
    replay(plan, layers, TarSink(out))


class DirSink:
    """Writes the merged image as a tree under an empty directory `root`.

    Safe without resolving anything: plan paths are canonical (no symlink on the way), and
    symlinks are created last, so no walk here can leave `root`; O_EXCL|O_NOFOLLOW still
    refuse to write through anything unexpected. Directories are created owner-writable
    and get their real mode at the end, so a 0555 directory can still be filled.
    """

    def __init__(self, root: Path, *, chown: bool) -> None:
        self._root = root
        self._chown = chown
        self._dirs: list[PlannedEntry] = []

    def _path(self, entry: PlannedEntry) -> str:
        return os.path.join(self._root, entry.path) if entry.path else str(self._root)

    def _own(self, path: str, entry: PlannedEntry) -> None:
        if self._chown:
            os.lchown(path, entry.uid, entry.gid)

    def directory(self, entry: PlannedEntry) -> None:
        if entry.path:
            os.mkdir(self._path(entry), 0o700)
        self._dirs.append(entry)

    def file(self, entry: PlannedEntry, data: Iterator[bytes]) -> None:
        path = self._path(entry)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with open(os.open(path, flags, 0o600), "wb") as out:
            for chunk in data:
                out.write(chunk)
            os.fchmod(out.fileno(), entry.mode)
            if self._chown:
                os.fchown(out.fileno(), entry.uid, entry.gid)
        os.utime(path, (entry.mtime, entry.mtime))

    def hardlink(self, entry: PlannedEntry) -> None:
        target = os.path.join(self._root, entry.link)
        os.link(target, self._path(entry), follow_symlinks=False)

    def symlink(self, entry: PlannedEntry) -> None:
        path = self._path(entry)
        os.symlink(entry.link, path)
        self._own(path, entry)
        os.utime(path, (entry.mtime, entry.mtime), follow_symlinks=False)

    def finish(self) -> None:
        # Deepest first, so setting a parent's mtime is the last change it sees.
        for entry in reversed(self._dirs):
            path = self._path(entry)
            os.chmod(path, entry.mode)
            self._own(path, entry)
            os.utime(path, (entry.mtime, entry.mtime))


def extract_merged_tree(plan: Plan, layers: Sequence[Path], root: Path, *, chown: bool) -> None:
    """Write the flattened image as files under the empty directory `root`."""
    replay(plan, layers, DirSink(root, chown=chown))
