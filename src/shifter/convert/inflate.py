"""gzip layers inflated with ISA-L when it is installed, else with the standard library.

Inflating is most of the CPU a conversion spends outside mksquashfs: every gzip layer is
inflated twice (once for the plan, as it downloads, and once for the merge). python-isal's
reader (the `isal` package, ISA-L's inflate behind a `gzip.GzipFile` clone) does it about
2.5x faster than zlib on the benchmark's Debian layer, and like zlib it lets other threads
run meanwhile. The standard library's `gzip` stays the fallback, so a machine without the
wheel (another architecture, a distribution's Python without it) converts the same images,
only slower.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO, cast

try:
    from isal import igzip as _gzip
    from isal.isal_zlib import error as _isal_error
except ImportError:  # not installed: the same reader, slower
    import gzip as _gzip

    _isal_error = zlib.error

# What the gzip reader raises on corrupt data, besides OSError and EOFError (truncation,
# trailing garbage), which both readers raise alike.
INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, _isal_error)
INFLATER = _gzip.__name__  # which reader this process uses, for logs and tests


def open_gzip(raw: BinaryIO) -> BinaryIO:
    """`raw` (a file, a pipe, a download: only `read` is called) as inflated bytes; every
    member of a multi-member gzip stream is read, as gzip(1) and Docker do."""
    return cast(BinaryIO, _gzip.GzipFile(fileobj=raw, mode="rb"))
