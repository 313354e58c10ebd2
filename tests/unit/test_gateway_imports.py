"""Import checks without any service: the permission rule, squashfs headers, fasthash."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from pathlib import Path

import pytest

from shifter.gateway.imports import (
    FASTHASH_CHUNK,
    FASTHASH_STRIDE,
    ImportFileError,
    check_squashfs,
    fasthash,
    permitted,
)
from shifter.gateway.records import Requester

READ, EXEC = 4, 1
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
ALICE = Requester(uid=1000, gid=1000, user="alice", groups=frozenset({1000, 50}))


def info(mode: int, uid: int = 0, gid: int = 0) -> os.stat_result:
    return os.stat_result((stat.S_IFREG | mode, 1, 1, 1, uid, gid, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("mode", "uid", "gid", "allowed"),
    [
        (0o400, 1000, 0, True),  # owner bits
        (0o044, 1000, 0, False),  # the owner class decides, even if others may
        (0o040, 0, 50, True),  # a supplementary group
        (0o004, 0, 50, False),  # the group class decides for members
        (0o004, 0, 7, True),  # other
        (0o600, 0, 0, False),
    ],
)
def test_mode_bits(mode: int, uid: int, gid: int, allowed: bool) -> None:
    assert permitted(ALICE, info(mode, uid, gid), None, READ) is allowed


def test_root_may_read_anything() -> None:
    root = Requester(uid=0, gid=0)
    assert permitted(root, info(0o000, 5, 5), None, READ)


def test_posix_acls() -> None:
    owner_only = info(0o640, 0, 0)
    named_user = [(USER_OBJ, 6, 0), (USER, READ, 1000), (GROUP_OBJ, 0, 0), (MASK, READ, 0),
                  (OTHER, 0, 0)]
    assert permitted(ALICE, owner_only, named_user, READ)
    masked = [*named_user[:3], (MASK, 0, 0), (OTHER, 0, 0)]
    assert not permitted(ALICE, owner_only, masked, READ)
    named_group = [(USER_OBJ, 6, 0), (GROUP_OBJ, 0, 0), (GROUP, READ, 50), (MASK, READ, 0),
                   (OTHER, 0, 0)]
    assert permitted(ALICE, owner_only, named_group, READ)
    # A matching group entry without the right denies, even if "other" would allow.
    denying_group = [(USER_OBJ, 6, 0), (GROUP_OBJ, 0, 0), (GROUP, 0, 50), (MASK, 7, 0),
                     (OTHER, READ, 0)]
    assert not permitted(ALICE, info(0o644, 0, 0), denying_group, READ)
    assert permitted(Requester(uid=5, gid=5), info(0o644, 0, 0), denying_group, READ)


def superblock(*, magic: int = 0x73717368, major: int = 4, block_log: int = 17,
               bytes_used: int = 4096) -> bytes:
    head = bytearray(96)
    struct.pack_into("<IIII", head, 0, magic, 1, 0, 1 << block_log)
    struct.pack_into("<HHHH", head, 22, block_log, 0, 1, major)
    struct.pack_into("<Q", head, 40, bytes_used)
    return bytes(head)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (superblock(magic=0x12345678), "is not a squashfs image (bad magic number)"),
        (superblock(major=3), "is not a squashfs 4.0 image the runtime can mount"),
        (superblock(block_log=11), "is not a squashfs 4.0 image the runtime can mount"),
        (superblock(bytes_used=1 << 30), "is truncated: its superblock says 1073741824 bytes"),
        (superblock()[:50], "is too small to be a squashfs image"),
    ],
)
def test_squashfs_headers_are_checked(tmp_path: Path, header: bytes, message: str) -> None:
    path = tmp_path / "image"
    path.write_bytes(header + bytes(4000 if len(header) == 96 else 0))
    with open(path, "rb") as file, pytest.raises(ImportFileError) as caught:
        check_squashfs(file.fileno(), path.stat().st_size, str(path), 1 << 20)
    assert str(caught.value) == f"{path} {message}"


def test_a_good_header_passes_and_the_size_limit_holds(tmp_path: Path) -> None:
    path = tmp_path / "image"
    path.write_bytes(superblock() + bytes(4000))
    with open(path, "rb") as file:
        check_squashfs(file.fileno(), path.stat().st_size, str(path), 1 << 20)
        with pytest.raises(ImportFileError) as caught:
            check_squashfs(file.fileno(), path.stat().st_size, str(path), 100)
    assert str(caught.value) == f"{path} is 4096 bytes, more than the 100 bytes an import may be"


def test_fasthash_of_a_small_file_is_its_sha256(tmp_path: Path) -> None:
    """The original's test vector (gateway contract §4)."""
    path = tmp_path / "blah"
    path.write_bytes(b"blah blah hash")
    assert fasthash(path) == "ff68165577eb209adcfa2f793476a25da637142283409d6f4d8d61ee042c5e63"


def test_fasthash_samples_one_mebibyte_every_512(tmp_path: Path) -> None:
    path = tmp_path / "sparse"
    marks = {0: b"first", FASTHASH_STRIDE: b"second", 2 * FASTHASH_STRIDE + 5: b"third"}
    with open(path, "wb") as file:  # sparse: gigabytes of holes cost nothing
        for offset, data in marks.items():
            file.seek(offset)
            file.write(data)
    expected = hashlib.sha256()
    with open(path, "rb") as file:
        for offset in (0, FASTHASH_STRIDE, 2 * FASTHASH_STRIDE):
            file.seek(offset)
            expected.update(file.read(FASTHASH_CHUNK))
    assert fasthash(path) == expected.hexdigest()
    with open(path, "r+b") as file:  # a byte outside the samples does not count
        file.seek(FASTHASH_CHUNK + 10)
        file.write(b"x")
    assert fasthash(path) == expected.hexdigest()
