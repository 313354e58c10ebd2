"""READY records this process read lately, for lookups.

When a job starts, every node looks its image up within a second or two, so a gateway
answers the same lookup thousands of times in a row. `ReadyCache` keeps the READY record
of a tag for `ttl_s` seconds so that those lookups skip the store (the caller's munge
credential and the ACL are still checked on every one). An entry is good only while the
store's `generation` is the one it was read under: any change this process commits drops
every entry at once; a change another gateway process commits is seen within `ttl_s`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from shifter.gateway.records import ImageRecord

Key = tuple[str, str, str]  # system, image type, tag


class ReadyCache:
    def __init__(
        self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic,
        max_entries: int = 4096,
    ) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_entries = max_entries
        # Plain dict operations are atomic in CPython: request threads share it unlocked.
        self._entries: dict[Key, tuple[float, int, ImageRecord]] = {}

    def get(self, key: Key, generation: int) -> ImageRecord | None:
        """The record read for `key` under this `generation` less than ttl_s ago."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        read_at, read_under, record = entry
        if read_under != generation or self.clock() - read_at >= self.ttl_s:
            self._entries.pop(key, None)
            return None
        return record

    def put(self, key: Key, record: ImageRecord, generation: int) -> None:
        """Remember `record`, read after the store's generation was `generation`."""
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (self.clock(), generation, record)
