"""The usage rows behind `/api/metrics` (Metrics on): kept in memory, written in batches.

A lookup only appends its row here; one thread writes what has gathered in a single
transaction every `interval_s` (a second), so lookups never wait for the store's write
lock. An admin's metrics read writes the pending rows first, so it sees every lookup this
process answered; another process's rows arrive within a second. `stop()` writes the last.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from shifter.gateway import store_images as images
from shifter.gateway.store import MetadataStore, StoreError

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0


class UsageLog:
    """Metrics rows waiting to be written; safe to share between threads."""

    def __init__(self, store: MetadataStore, *, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.store = store
        self.interval_s = interval_s
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._writing = threading.Lock()  # batches are written in the order they were taken
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, **row: Any) -> None:
        with self._lock:
            self._pending.append(row)

    def flush(self) -> None:
        """Write the pending rows now, in one transaction."""
        with self._writing:
            with self._lock:
                rows, self._pending = self._pending, []
            if not rows:
                return
            try:
                self.store.write(lambda conn: images.add_metrics(conn, rows),
                                 changes_records=False)
            except StoreError as error:
                log.warning("dropped %d usage metrics row(s): %s", len(rows), error)

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="usage-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            self.flush()
