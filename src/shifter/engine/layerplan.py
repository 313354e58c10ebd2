"""Downloading an image's layers and planning its flattened tree at the same time.

Each layer is downloaded by a worker thread as before; the worker also hands the blob's bytes,
as they arrive, to a `convert.feed.HeaderFeed`, which reads the layer's tar headers in a
thread of its own. The plan applies the layers' headers in order as soon as each is ready
(the bottom layer's while later ones still download), so once the last byte arrives only the
last layer's tail remains to plan, instead of inflating every layer after the download.

Layers already in the cache, or downloaded by another pull meanwhile, are read from their
files, in the worker threads too. The first failure cancels the other downloads (their
partial files stay for a later resume), as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import BinaryIO, cast

from shifter.convert.feed import HeaderFeed
from shifter.convert.layers import Header, read_headers
from shifter.convert.plan import Ownership, Plan, plan_from_headers
from shifter.registry.manifest import Descriptor

log = logging.getLogger(__name__)

# fetch(descriptor, cancelled, tee): the blob's cached path, downloading it if needed; while
# downloading, the partial file is passed to `tee`, which returns what to write into instead.
Fetch = Callable[[Descriptor, threading.Event, Callable[[BinaryIO], BinaryIO]], Path]


class BlobTee:
    """The partial blob file as the download sees it, feeding each byte of the blob to a
    `HeaderFeed` once, in order.

    A download may start with bytes an earlier attempt left (it reads them back to hash
    them: they are fed then) and may start over (seek to 0, truncate): rewriting bytes
    already fed aborts the feed, and the headers are then read from the finished file.
    """

    def __init__(self, file: BinaryIO, feed: HeaderFeed) -> None:
        self._file = file
        self._feed = feed
        self._position = file.tell()
        self._fed = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        self._position = self._file.seek(offset, whence)
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._pass_on(data, written=False)
        return data

    def write(self, data: bytes) -> int:
        written = self._file.write(data)
        self._pass_on(memoryview(data)[:written], written=True)
        return written

    def truncate(self, size: int | None = None) -> int:
        size = self._position if size is None else size
        if size < self._fed:
            self._feed.abort()
        return self._file.truncate(size)

    def flush(self) -> None:
        self._file.flush()

    def fileno(self) -> int:
        return self._file.fileno()

    def _pass_on(self, data: bytes | memoryview, *, written: bool) -> None:
        start, end = self._position, self._position + len(data)
        self._position = end
        if start > self._fed or (written and start < self._fed):
            self._feed.abort()  # a gap, or fed bytes rewritten: the feed no longer matches
        elif end > self._fed:
            self._feed.write(bytes(data[self._fed - start :]))
            self._fed = end


class LayerPlanner:
    """Downloads `layers` (`concurrency` at a time) and plans their flattened tree."""

    def __init__(
        self,
        layers: Sequence[Descriptor],
        fetch: Fetch,
        cached: Callable[[Descriptor], Path | None],
        blob_path: Callable[[str], Path],
        on_done: Callable[[], None],
    ) -> None:
        self._layers = layers
        self._fetch = fetch
        self._cached = cached
        self._blob_path = blob_path
        self._on_done = on_done
        self._cancelled = threading.Event()

    def run(self, concurrency: int, ownership: Ownership) -> tuple[list[Path], Plan]:
        unique = list({layer.digest: layer for layer in self._layers}.values())
        workers = max(1, min(concurrency, len(unique)))
        # The collector stays on while the layers download (`plan_from_headers` pauses it
        # only while it applies a layer): a download may take minutes, and in the gateway
        # other pulls and requests share the process.
        with ThreadPoolExecutor(workers, thread_name_prefix="layer") as pool:
            futures = {layer.digest: pool.submit(self._headers, layer) for layer in unique}
            for future in futures.values():
                future.add_done_callback(lambda _: self._on_done())
            try:
                plan = plan_from_headers(self._in_order(futures), ownership=ownership)
            except BaseException:
                self._cancelled.set()
                for future in futures.values():
                    future.cancel()
                wait(futures.values())
                raise
        return [self._blob_path(layer.digest) for layer in self._layers], plan

    def _in_order(self, futures: dict[str, Future[list[Header]]]) -> Iterator[list[Header]]:
        """Each layer's headers in image order, as soon as it is ready; the first failure of
        any layer (not only the one awaited) is raised at once."""
        uses = {digest: 0 for digest in futures}
        for layer in self._layers:
            uses[layer.digest] += 1
        for layer in self._layers:
            future = futures[layer.digest]
            while not future.done():
                done, _ = wait([f for f in futures.values() if not f.done()], None, FIRST_COMPLETED)
                for finished in done:
                    if not finished.cancelled() and finished.exception() is not None:
                        raise finished.exception()  # type: ignore[misc]
            headers = future.result()
            uses[layer.digest] -= 1
            if not uses[layer.digest]:
                del futures[layer.digest]  # its headers are freed once applied
            yield headers

    def _headers(self, layer: Descriptor) -> list[Header]:
        path = self._cached(layer)
        if path is None:
            feed = HeaderFeed(self._blob_path(layer.digest))

            def tee(file: BinaryIO) -> BinaryIO:
                return cast(BinaryIO, BlobTee(file, feed))

            try:
                path = self._fetch(layer, self._cancelled, tee)
                headers = feed.headers(layer.size)
            finally:
                feed.abort()  # stops the reader if the download failed; harmless otherwise
            if headers is not None:
                log.debug("%s: headers read while it downloaded", layer.digest)
                return headers
        log.debug("%s: reading its headers from the layer cache", layer.digest)
        return list(read_headers(path))
