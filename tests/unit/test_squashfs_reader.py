"""The squashfs reader the launch decompresses the command's file with (image/squashfs.py),
on images made by the real mksquashfs: the blocks it returns are the file's bytes, and
what it cannot use (another compressor, no export table, a directory, a damaged image)
is a `SquashfsError`, never a wrong block or a read outside the image."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shifter.image.squashfs import Squashfs, SquashfsError

pytestmark = pytest.mark.unit

BLOCK = 128 * 1024


@pytest.fixture(scope="module", autouse=True)
def _mksquashfs() -> None:
    if shutil.which("mksquashfs") is None:
        pytest.fail("mksquashfs not found: run scripts/install.sh", pytrace=False)


def _tree(root: Path) -> dict[str, bytes]:
    """Files that take every shape of a file's data: several blocks with a tail in a
    fragment, whole blocks only, a fragment only, empty, sparse, compressible."""
    files = {
        "multi": os.urandom(3 * BLOCK + 1234),
        "whole": os.urandom(2 * BLOCK),
        "small": os.urandom(999),
        "empty": b"",
        "sparse": b"\0" * (2 * BLOCK) + os.urandom(BLOCK),
        "text": b"shifter " * 50000,
    }
    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    os.link(root / "multi", root / "hardlink")  # nlink 2: "multi" has an extended inode
    (root / "dir").mkdir()
    return files


def _image(tmp_path: Path, *options: str) -> tuple[Path, dict[str, bytes]]:
    files = _tree(tmp_path / "tree")
    image = tmp_path / "image.squashfs"
    subprocess.run(["mksquashfs", str(tmp_path / "tree"), str(image), "-noappend", "-quiet",
                    "-no-progress", *options], check=True, capture_output=True)  # fmt: skip
    return image, files


def _by_size(reader: Squashfs) -> dict[int, list[int]]:
    """Inode numbers of the regular files, by size (the test files' sizes differ)."""
    found: dict[int, list[int]] = {}
    for number in range(1, reader.inode_count + 1):
        try:
            found.setdefault(reader.regular_file(number, 1 << 30).size, []).append(number)
        except SquashfsError:
            continue
    return found


def _content(reader: Squashfs, number: int) -> bytes:
    blocks = reader.regular_file(number, 1 << 30)
    return b"".join(reader.block(blocks, index) for index in range(len(blocks.blocks)))


@pytest.mark.parametrize(
    "options",
    [(), ("-comp", "xz"), ("-noD",), ("-no-fragments",), ("-b", "4096")],
    ids=["gzip", "xz", "uncompressed-data", "no-fragments", "small-blocks"],
)
def test_the_blocks_are_the_files_bytes(tmp_path: Path, options: tuple[str, ...]) -> None:
    image, files = _image(tmp_path, *options)
    fd = os.open(image, os.O_RDONLY)
    try:
        reader = Squashfs(fd)
        sizes = _by_size(reader)
        for name, data in files.items():
            (number,) = sizes[len(data)]
            content = _content(reader, number)
            # Whole blocks always; the tail too unless it lies in a fragment.
            assert data.startswith(content), name
            whole = len(data) - len(data) % reader.block_size
            assert len(content) in (whole, len(data)), name
            if "-no-fragments" in options:
                assert content == data, name
    finally:
        os.close(fd)


def test_the_limit_bounds_the_blocks(tmp_path: Path) -> None:
    image, files = _image(tmp_path)
    fd = os.open(image, os.O_RDONLY)
    try:
        reader = Squashfs(fd)
        (number,) = _by_size(reader)[len(files["multi"])]
        assert len(reader.regular_file(number, BLOCK + 1).blocks) == 2
        assert len(reader.regular_file(number, BLOCK).blocks) == 1
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("options", "message"),
    [(("-comp", "lz4"), "no Python decompressor"), (("-no-exports",), "no export table")],
)
def test_images_it_cannot_use_are_refused(
    tmp_path: Path, options: tuple[str, ...], message: str
) -> None:
    image, _ = _image(tmp_path, *options)
    fd = os.open(image, os.O_RDONLY)
    try:
        with pytest.raises(SquashfsError, match=message):
            Squashfs(fd)
    finally:
        os.close(fd)


def test_what_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    image, _ = _image(tmp_path)
    fd = os.open(image, os.O_RDONLY)
    try:
        reader = Squashfs(fd)
        files = sum(len(numbers) for numbers in _by_size(reader).values())
        # The rest are the two directories (the root and dir).
        assert files == reader.inode_count - 2
        for number in (0, reader.inode_count + 1, -1):
            with pytest.raises(SquashfsError, match="no inode"):
                reader.regular_file(number, BLOCK)
    finally:
        os.close(fd)


def test_a_damaged_image_is_an_error_not_a_wrong_block(tmp_path: Path) -> None:
    image, files = _image(tmp_path)
    fd = os.open(image, os.O_RDONLY)
    try:
        reader = Squashfs(fd)
        (number,) = _by_size(reader)[len(files["text"])]
        blocks = reader.regular_file(number, 1 << 30)
    finally:
        os.close(fd)
    position, stored, compressed = blocks.blocks[1]
    assert compressed  # the text compresses well
    data = bytearray(image.read_bytes())
    data[position + stored // 2] ^= 0x55
    image.write_bytes(bytes(data))
    fd = os.open(image, os.O_RDONLY)
    try:
        reader = Squashfs(fd)
        with pytest.raises(SquashfsError, match=r"corrupt block|does not end"):
            reader.block(blocks, 1)
        assert reader.block(blocks, 0) == files["text"][:BLOCK]  # the others are intact
    finally:
        os.close(fd)


@pytest.mark.parametrize("cut", [0, 50, 96, 4096])
def test_a_truncated_or_foreign_file_is_refused(tmp_path: Path, cut: int) -> None:
    image, _ = _image(tmp_path)
    short = tmp_path / "short"
    short.write_bytes(image.read_bytes()[:cut] if cut != 4096 else b"hsqs" + bytes(4092))
    fd = os.open(short, os.O_RDONLY)
    try:
        with pytest.raises(SquashfsError):
            reader = Squashfs(fd)
            reader.regular_file(1, BLOCK)
    finally:
        os.close(fd)
