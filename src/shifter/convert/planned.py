"""What a flattening plan holds: the final image's entries, where file data comes from, and
what was left out. `plan.TreeBuilder` makes them; `merge` and the builders read them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

from shifter.convert.layers import Kind


class Source(NamedTuple):
    """Where a regular file's data is: member `member` (0-based) of layer `layer`.

    `start` and `offset` place the member in the uncompressed layer (its first block, its
    own header). `copy_as` is the image path under which the member's blocks can be copied
    into the merged tar unchanged (its header says exactly what the plan decided), or None.
    """

    layer: int
    member: int
    name: str  # the member's name as stored, checked again when the merge reads it
    size: int
    start: int = 0
    offset: int = 0
    copy_as: str | None = None


class PlannedEntry(NamedTuple):
    """One entry of the final image, with its final metadata.

    FILE entries carry their data `source`, and `verbatim` when the layer's own blocks for
    it can be copied unchanged; HARDLINK entries name, in `link`, the FILE entry they share
    an inode with; SYMLINK entries keep their target as stored in the layer. (A NamedTuple,
    like `Source`: a plan makes one per entry, and a frozen dataclass is slower to create.)
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
    verbatim: bool = False


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
    another entry. The root directory (path "") is always the first entry.
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
    def root(self) -> PlannedEntry:
        return self.entries[0]

    @property
    def data_bytes(self) -> int:
        return sum(e.size for e in self.entries if e.kind is Kind.FILE)

    def sources(self, layer: int) -> list[PlannedEntry]:
        """The FILE entries whose data comes from `layer`, in archive order."""
        found = [e for e in self.entries if e.source is not None and e.source.layer == layer]
        found.sort(key=lambda e: e.source.member)  # type: ignore[union-attr]
        return found
