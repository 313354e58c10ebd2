"""Executing a plan: the layers are streamed a second time and only planned members are kept.

Everything but regular-file data is already in the plan, so directories are written first
(parents before children), file data follows in layer order as the layers stream past, then
hard links, then symlinks. Two sinks share that walk: a tar writer (piped into mksquashfs) and
a directory writer (for the builders that need a tree on disk).

The plan knows where each member lies in its layer, so no header is parsed again: the reader
skips to the members the image needs. Members whose blocks already say what the plan decided
(`PlannedEntry.verbatim`), and that follow each other in the layer, go to the tar as one run
of raw bytes: on layers of many small files, re-writing each header cost more than the rest.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from shifter.convert import tario, tarwrite
from shifter.convert.layers import (
    READ_ERRORS,
    Kind,
    LayerError,
    member_data,
    open_layer,
    unreadable,
)
from shifter.convert.planned import Plan, PlannedEntry, Source


class Sink(Protocol):
    copies_raw: bool  # whether `raw` takes a layer's tar blocks as they are

    def directory(self, entry: PlannedEntry) -> None: ...
    def file(self, entry: PlannedEntry, data: Iterator[bytes]) -> None: ...
    def raw(self, blocks: Iterable[bytes]) -> None: ...
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
        if wanted:  # a layer entirely hidden by later ones is not read again
            _replay_layer(layer, wanted, sink)
    for entry in plan.entries:
        if entry.kind is Kind.HARDLINK:
            sink.hardlink(entry)
    for entry in plan.entries:
        if entry.kind is Kind.SYMLINK:
            sink.symlink(entry)
    sink.finish()


def _replay_layer(layer: Path, wanted: list[PlannedEntry], sink: Sink) -> None:
    """The data of `wanted` (archive order); reading stops after the last of them."""
    with open_layer(layer) as (stream, size):
        reader = tario.TarReader(stream, size=size)
        run: list[Source] = []  # verbatim members that follow each other in the layer
        for entry in wanted:
            source = entry.source
            assert source is not None
            if sink.copies_raw and entry.verbatim:
                if run and source.start != _end(run[-1]):
                    _copy_run(layer, reader, run, sink)
                    run = []
                run.append(source)
                continue
            if run:
                _copy_run(layer, reader, run, sink)
                run = []
            try:
                member = reader.member_at(source.start)
            except READ_ERRORS as exc:
                raise unreadable(layer, exc) from exc
            _check(layer, member.name, member.size, source)
            sink.file(entry, member_data(layer, reader))
        if run:
            _copy_run(layer, reader, run, sink)


def _copy_run(layer: Path, reader: tario.TarReader, run: list[Source], sink: Sink) -> None:
    """Copy the blocks of `run` unchanged, once the first member's header is checked."""
    first = run[0]
    head_end = first.offset + tario.BLOCK
    head = b"".join(_guarded(layer, reader.read_range(first.start, head_end)))
    name, size = tario.header_name_size(head[-tario.BLOCK :])
    _check(layer, name, size, first)
    sink.raw([head])
    sink.raw(_guarded(layer, reader.read_range(head_end, _end(run[-1]))))


def _end(source: Source) -> int:
    """Where the member's blocks end: its header, then its data padded to a block."""
    return source.offset + tario.BLOCK + -(-source.size // tario.BLOCK) * tario.BLOCK


def _check(layer: Path, name: str, size: int, source: Source) -> None:
    if name != source.name or size != source.size:
        raise LayerError(
            f"layer {layer.name} changed while it was being converted",
            hint="another process is writing the layer cache; retry the pull",
        )


def _guarded(layer: Path, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """`chunks` with read errors as `LayerError`; the consumer's own errors pass by."""
    try:
        yield from chunks
    except READ_ERRORS as exc:
        raise unreadable(layer, exc) from exc


class TarSink:
    """Writes the merged image as one tar stream: numeric owners, no xattrs, no PAX extras
    (copied members carry at most PAX times, see `tario`)."""

    copies_raw = True

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
        if entry.path:  # mksquashfs ignores a "./" entry: the root's attributes go as options
            self._add(entry, tario.DIRECTORY, f"{entry.path}/")

    def file(self, entry: PlannedEntry, data: Iterator[bytes]) -> None:
        self._add(entry, tario.REGULAR, entry.path, size=entry.size)
        self._tar.write_data(data, entry.size)

    def raw(self, blocks: Iterable[bytes]) -> None:
        self._tar.write_raw(blocks)

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

    copies_raw = False

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

    def raw(self, blocks: Iterable[bytes]) -> None:
        raise NotImplementedError("a tree is written member by member")

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
