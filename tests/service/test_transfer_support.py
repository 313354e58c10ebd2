"""Helpers shared by the test_transfer_* modules (this module holds no tests).

Image files made of random bytes under real image file names; image directories under
/tmp that the test accounts can reach (pytest's own temp dirs are 0700); read checks run
as real users with `runuser`; small file systems (tmpfs with a size, ramfs without
extended attributes) mounted for the failure tests and always unmounted; and an inotify
watch that records, in the kernel's order, every name created in or renamed into a
directory: that is how the tests see that `<id>.meta` appears last.
"""

from __future__ import annotations

import contextlib
import ctypes
import grp
import hashlib
import os
import pwd
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shifter import proc
from shifter.gateway.access import ImageAccess
from shifter.gateway.transfer import ImageTransfer

READER = "shiftertest1"  # listed in user ACLs, and a member of GROUP
OTHER = "shiftertest2"  # never listed: must not be able to open a private image
GROUP = "shiftertestgrp"

_IN_MOVED_TO = 0x80
_IN_CREATE = 0x100
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name


@dataclass(frozen=True)
class Accounts:
    reader_uid: int
    other_uid: int
    group_gid: int


@dataclass(frozen=True)
class ImageFiles:
    """One image's files in a source directory, as the worker would hand them over."""

    id: str
    image: Path
    sidecar: Path
    meta: Path

    @property
    def all(self) -> list[Path]:
        return [self.image, self.sidecar, self.meta]

    @property
    def names(self) -> list[str]:
        return [path.name for path in self.all]


def accounts() -> Accounts:
    """The accounts scripts/install.sh creates; a clear failure when they are missing."""
    try:
        reader, other = pwd.getpwnam(READER), pwd.getpwnam(OTHER)
        group = grp.getgrnam(GROUP)
    except KeyError as error:
        pytest.fail(f"test account missing ({error}): run sudo scripts/install.sh", pytrace=False)
    assert READER in group.gr_mem, f"{READER} must be a member of {GROUP} (scripts/install.sh)"
    return Accounts(reader.pw_uid, other.pw_uid, group.gr_gid)


def make_image(directory: Path, *, size: int = 64 * 1024, fmt: str = "squashfs") -> ImageFiles:
    """Random image bytes, a sidecar and a meta file named after the image's digest."""
    directory.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    image_id = hashlib.sha256(data).hexdigest()
    image = directory / f"{image_id}.{fmt}"
    image.write_bytes(data)
    sidecar = directory / f"{image_id}.json"
    sidecar.write_text('{"labels": {}}\n')
    meta = directory / f"{image_id}.meta"
    meta.write_text(f"FORMAT: {fmt}\nENV: PATH=/usr/bin:/bin\n")
    return ImageFiles(image_id, image, sidecar, meta)


@contextlib.contextmanager
def shared_dir(prefix: str) -> Iterator[Path]:
    """A fresh 0755 directory directly under /tmp, so other accounts can reach its files."""
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        directory.chmod(0o755)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def mounted(fstype: str, mountpoint: Path, options: str) -> Iterator[Path]:
    """A small file system at `mountpoint` (tmpfs, ramfs), unmounted whatever happens."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    proc.run(["mount", "-t", fstype, "-o", options, fstype, mountpoint])
    try:
        yield mountpoint
    finally:
        proc.run(["umount", mountpoint])


def read_as(user: str, path: Path) -> tuple[bool, str]:
    """Can `user` open and read `path`; the error `cat` printed when not."""
    result = proc.run(["runuser", "-u", user, "--", "cat", path], check=False)
    return result.returncode == 0, result.stderr.decode(errors="replace")


def assert_private(path: Path, *, readers: tuple[str, ...]) -> None:
    """Only `readers` (and root) may read `path`; OTHER gets "Permission denied"."""
    for user in readers:
        readable, error = read_as(user, path)
        assert readable, f"{user} should read {path}: {error}"
    readable, error = read_as(OTHER, path)
    assert not readable, f"{OTHER} could read private {path}"
    assert "Permission denied" in error
    assert os.stat(path).st_mode & 0o007 == 0


def assert_public(path: Path) -> None:
    assert os.stat(path).st_mode & 0o7777 == 0o644
    readable, error = read_as(OTHER, path)
    assert readable, f"{OTHER} should read public {path}: {error}"


def acl_of(path: Path) -> list[str]:
    """`getfacl` entries with numeric ids, comments left out."""
    text = proc.run(["getfacl", "--numeric", "--omit-header", "--absolute-names", path])
    return [line for line in text.stdout.decode().splitlines() if line and "#" not in line]


class DirectoryWatch:
    """inotify on one directory: ("create" | "moved", name) in the kernel's order."""

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        watch = libc.inotify_add_watch(self._fd, bytes(directory), _IN_CREATE | _IN_MOVED_TO)
        if watch < 0:
            os.close(self._fd)
            raise OSError(ctypes.get_errno(), "inotify_add_watch failed", str(directory))
        self._events: list[tuple[str, str]] = []

    def events(self) -> list[tuple[str, str]]:
        """Every event so far (read from the kernel's queue, which keeps them in order)."""
        while True:
            try:
                buffer = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return list(self._events)
            offset = 0
            while offset < len(buffer):
                _, mask, _, length = _EVENT.unpack_from(buffer, offset)
                start = offset + _EVENT.size
                name = buffer[start : start + length].rstrip(b"\0").decode()
                self._events.append(("moved" if mask & _IN_MOVED_TO else "create", name))
                offset = start + length

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> DirectoryWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def assert_meta_last(events: list[tuple[str, str]], files: ImageFiles) -> None:
    """Final names only ever appear by rename, every image file before the meta file."""
    created = [name for kind, name in events if kind == "create"]
    assert not set(created) & set(files.names), f"a final name was written in place: {events}"
    moved = [name for kind, name in events if kind == "moved" and name in files.names]
    assert sorted(moved) == sorted(files.names), events
    assert moved[-1] == files.meta.name, f".meta was not renamed last: {moved}"


def check_meta_last(transfer: ImageTransfer, image_dir: Path, source_dir: Path) -> list[str]:
    """Publish with the meta file listed first; returns the names created (temporaries)."""
    files = make_image(source_dir, size=4 << 20)
    with DirectoryWatch(image_dir) as watch:
        transfer.publish([files.meta, files.image, files.sidecar], access=ImageAccess.PUBLIC)
        events = watch.events()
    assert_meta_last(events, files)
    return [name for kind, name in events if kind == "create"]


def check_private_for_user(transfer: ImageTransfer, image_dir: Path, source_dir: Path) -> None:
    """A user ACL: READER reads every file, OTHER cannot, though imageDir is world-readable."""
    uid = accounts().reader_uid
    files = make_image(source_dir)
    transfer.publish(files.all, access=ImageAccess(True, user_ids=(uid,)))
    assert image_dir.stat().st_mode & 0o005 == 0o005  # only each file's own ACL keeps out
    for name in files.names:
        assert_private(image_dir / name, readers=(READER,))
        assert acl_of(image_dir / name) == [
            "user::rw-", f"user:{uid}:r--", "group::---", "mask::r--", "other::---",
        ]


def check_private_for_group(transfer: ImageTransfer, image_dir: Path, source_dir: Path) -> None:
    """A group ACL: READER reads as a member of GROUP, OTHER (not a member) cannot."""
    gid = accounts().group_gid
    files = make_image(source_dir)
    transfer.publish(files.all, access=ImageAccess(True, group_ids=(gid,)))
    assert_private(image_dir / files.image.name, readers=(READER,))
    assert acl_of(image_dir / files.image.name) == [
        "user::rw-", "group::---", f"group:{gid}:r--", "mask::r--", "other::---",
    ]



def check_access_changes_in_place(
    transfer: ImageTransfer, image_dir: Path, source_dir: Path
) -> None:
    """`ImageFiles.change_access`: the image keeps its inode while its access widens to
    public and narrows to a group; `.meta` follows with its ACL lines; the sidecar keeps
    the access it was published with."""
    from shifter.gateway.image_files import ImageFiles as PublishedImage
    from shifter.image.meta import read_meta

    users = accounts()
    files = make_image(source_dir)
    reader = ImageAccess(True, user_ids=(users.reader_uid,))
    transfer.publish(files.all, access=reader)
    image, meta = image_dir / files.image.name, image_dir / files.meta.name
    inode = image.stat().st_ino
    published = PublishedImage(transfer, files.id, "squashfs", scratch=source_dir / "scratch")
    assert transfer.read_text(files.meta.name) == files.meta.read_text()

    published.change_access(reader, ImageAccess.PUBLIC)
    for path in (image, meta):
        assert_public(path)
    assert read_meta(str(meta)).user_acl == ()
    assert_private(image_dir / files.sidecar.name, readers=(READER,))

    group = ImageAccess(True, group_ids=(users.group_gid,))
    published.change_access(ImageAccess.PUBLIC, group)
    for path in (image, meta):
        assert_private(path, readers=(READER,))
        assert acl_of(path) == [
            "user::rw-", "group::---", f"group:{users.group_gid}:r--", "mask::r--",
            "other::---",
        ]
    assert read_meta(str(meta)).group_acl == (users.group_gid,)
    assert image.stat().st_ino == inode
    assert meta.read_text().startswith("FORMAT: squashfs\n")
