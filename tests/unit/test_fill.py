"""The launcher's half of the read-ahead (runtime/image/fill.py): the FUSE_NOTIFY_STORE
message as the kernel reads it (include/uapi/linux/fuse.h), and the two ends of the file
sharing its blocks so that each is done once. The stores themselves reach a real FUSE
mount in tests/root/test_runtime_readahead.py."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shifter.image.squashfs import SquashfsError
from shifter.runtime.image.fill import (
    FUSE_NOTIFY_STORE,
    BackFill,
    Blocks,
    fill_threads,
    store_message,
)

pytestmark = pytest.mark.unit


def test_the_store_message_is_the_kernels_layout() -> None:
    data = b"x" * 5000
    message = store_message(nodeid=42, offset=3 * 131072, data=data)
    length, error, unique = struct.unpack_from("<IiQ", message)  # struct fuse_out_header
    assert (length, error, unique) == (len(message), FUSE_NOTIFY_STORE, 0)
    nodeid, offset, size, padding = struct.unpack_from("<QQII", message, 16)
    assert (nodeid, offset, size, padding) == (42, 3 * 131072, 5000, 0)
    assert message[40:] == data


@given(st.integers(0, 200), st.lists(st.booleans(), max_size=400))
def test_each_block_is_taken_once_whichever_end_asks(count: int, fronts: list[bool]) -> None:
    blocks = Blocks(count)
    taken: list[int] = []
    front_done = back_done = False
    for from_front in fronts + [True] * count + [False]:
        index = blocks.take_front() if from_front else blocks.take_back()
        if index < 0:
            front_done |= from_front
            back_done |= not from_front
            continue
        assert not (front_done if from_front else back_done)  # an end, once met, stays met
        taken.append(index)
    assert sorted(taken) == list(range(count))
    assert blocks.take_front() == blocks.take_back() == -1


def test_one_cpu_leaves_the_read_ahead_to_squashfuse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert fill_threads() == 0
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)))
    assert fill_threads() == 4


def test_nothing_is_stored_unless_the_inode_is_the_file_opened(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_bytes(os.urandom(300_000))
    image = tmp_path / "image.squashfs"
    subprocess.run(["mksquashfs", str(tree), str(image), "-noappend", "-quiet", "-no-progress"],
                   check=True, capture_output=True)  # fmt: skip
    # The FUSE file as squashfuse_ll shows it: inode 1 is "a" (the root is the last).
    real = os.stat(tree / "a")
    fields = list(real)
    fields[1] = 1  # st_ino
    fill = BackFill(str(image), -1, os.stat_result(fields), 1 << 20)
    assert (fill.nodeid, len(fill.file.blocks)) == (1, 3)
    fill.wait()
    for index, value in ((6, real.st_size + 1), (8, real.st_mtime + 1), (1, 2)):
        wrong = list(fields)
        wrong[index] = value
        with pytest.raises(SquashfsError):
            BackFill(str(image), -1, os.stat_result(wrong), 1 << 20)
