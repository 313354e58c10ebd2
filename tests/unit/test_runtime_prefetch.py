"""The read-ahead of the command's file (runtime/image/fuse.py `Prefetch`) and where the
launch looks for it (runtime/request/command.py `command_paths`).

`Prefetch` is exercised on an ordinary directory standing in for the image root: what it
read shows in the process's `rchar` (/proc/self/io counts every thread's reads, sendfile's
too), and nothing else reads while the test waits for it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from shifter.runtime.image.fuse import PREFETCH_LIMIT, Prefetch
from shifter.runtime.request.command import command_paths

pytestmark = pytest.mark.unit


def _bytes_read() -> int:
    with open("/proc/self/io") as io:
        fields = dict(line.split(": ") for line in io.read().splitlines())
    return int(fields["rchar"])


def _prefetched(root: Path, *paths: str) -> int:
    before = _bytes_read()
    Prefetch(str(root), paths).wait()
    return _bytes_read() - before


def _image(tmp_path: Path) -> Path:
    root = tmp_path / "image"
    (root / "bin").mkdir(parents=True)
    (root / "usr" / "bin").mkdir(parents=True)
    return root


def test_command_paths_follow_the_search_path() -> None:
    assert command_paths("true", "/usr/local/bin:/bin/") == ("/usr/local/bin/true", "/bin/true")
    # Relative directories depend on the workdir: not guessed.
    assert command_paths("true", "bin::/bin") == ("/bin/true",)
    assert command_paths("/opt/app/run", "/bin") == ("/opt/app/run",)
    assert command_paths("./run", "/bin") == ()
    assert command_paths("sh", None) == tuple(
        f"{d}/sh" for d in os.defpath.split(":") if d.startswith("/")
    )


def test_the_first_regular_file_is_read_through_the_image_root(tmp_path: Path) -> None:
    root = _image(tmp_path)
    size = 3 * 1024 * 1024 + 123  # no file of the host's /bin has this size by chance
    (root / "bin" / "busybox").write_bytes(b"\x7fELF" + os.urandom(size - 4))
    # An absolute link means the image's /bin/busybox, not the host's.
    (root / "usr" / "bin" / "true").symlink_to("/bin/busybox")
    os.mkfifo(root / "bin" / "true")  # must be skipped, not block the open
    (root / "bin" / "dir").mkdir()
    read = _prefetched(root, "/bin/dir", "/bin/true", "/missing/true", "/usr/bin/true")
    assert size <= read < size + 64 * 1024


def test_the_read_ahead_stops_at_the_limit(tmp_path: Path) -> None:
    root = _image(tmp_path)
    with open(root / "bin" / "big", "wb") as big:
        big.truncate(PREFETCH_LIMIT + 5 * 1024 * 1024)  # sparse: cheap to make
    read = _prefetched(root, "/bin/big")
    assert PREFETCH_LIMIT <= read < PREFETCH_LIMIT + 64 * 1024


def test_nothing_to_read_is_no_error(tmp_path: Path) -> None:
    root = _image(tmp_path)
    host_file = os.path.realpath(sys.executable)  # megabytes, readable
    assert os.path.getsize(host_file) > 64 * 1024
    # `..` stops at the image root: the host's file is not what this names.
    (root / "bin" / "escape").symlink_to("../" * 20 + host_file.lstrip("/"))
    assert _prefetched(root, "/bin/none", "/bin/escape") < 64 * 1024
    assert _prefetched(tmp_path / "no-such-root", "/bin/true") < 64 * 1024
