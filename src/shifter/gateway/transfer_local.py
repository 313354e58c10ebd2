"""accesstype "local": the gateway writes images straight into `local.imageDir`.

A publish is all or nothing up to its renames: every file is first copied to a hidden
temporary name in imageDir (`.<name>.<random>.partial`, created 0600 so nobody else can
open it meanwhile), fsynced and given its final mode and ACL; only when all of them are
staged are they renamed over their final names, `.meta` last, and the directory fsynced.
Any failure while staging (a full disk, an unreadable source) removes every temporary
file and leaves imageDir exactly as it was.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from shifter.engine.files import fsync_directory
from shifter.gateway.access import XATTR_NAME, ImageAccess
from shifter.gateway.transfer_files import (
    TransferError,
    check_file_name,
    publish_order,
    removal_order,
)

log = logging.getLogger(__name__)

COPY_CHUNK = 1 << 24  # bytes per sendfile call; the kernel copies without a user buffer
ACL_HINT = (
    "private images need POSIX ACLs: put imageDir on a file system that supports them "
    "(ext4, xfs, tmpfs; Lustre and NFS with the acl mount option)"
)


class LocalTransfer:
    """Publishes into a directory on this host; `label` names it in messages."""

    def __init__(self, image_dir: str | os.PathLike[str], *, label: str) -> None:
        self.image_dir = Path(image_dir)
        self.label = label

    def publish(self, files: Sequence[Path], *, access: ImageAccess) -> None:
        ordered = publish_order(files)
        staged: list[tuple[Path, Path]] = []
        try:
            for source in ordered:
                staged.append((self._stage(source, access), self.image_dir / source.name))
            for temp, final in staged:
                os.replace(temp, final)
            fsync_directory(self.image_dir)
        except OSError as error:
            raise self._error("publish", error) from error
        finally:
            for temp, _ in staged:  # only the ones not renamed are still there
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
        log.info("published %s to %s", ", ".join(p.name for p in ordered), self.label)

    def remove(self, names: Sequence[str]) -> None:
        ordered = removal_order(names)
        try:
            for name in ordered:
                with contextlib.suppress(FileNotFoundError):
                    (self.image_dir / name).unlink()
            if ordered:
                fsync_directory(self.image_dir)
        except OSError as error:
            raise self._error("remove", error) from error

    def exists(self, name: str) -> bool:
        return (self.image_dir / check_file_name(name)).is_file()

    def set_access(self, names: Sequence[str], *, access: ImageAccess) -> None:
        try:
            for name in names:
                _change_access(self.image_dir / check_file_name(name), access)
        except OSError as error:
            raise self._error("change the access of", error) from error

    def read_text(self, name: str) -> str:
        try:
            return (self.image_dir / check_file_name(name)).read_text()
        except OSError as error:
            raise self._error("read", error) from error

    def _stage(self, source: Path, access: ImageAccess) -> Path:
        """Copy `source` to a new hidden file in imageDir with its final mode and ACL."""
        with open(source, "rb") as reader:
            if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(source))
            fd, temp_name = tempfile.mkstemp(
                prefix=f".{source.name}.", suffix=".partial", dir=self.image_dir
            )
            temp = Path(temp_name)
            try:
                with os.fdopen(fd, "wb") as writer:
                    _copy(reader.fileno(), writer.fileno())
                    os.fsync(writer.fileno())
                    _apply_access(writer.fileno(), access, temp)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
        return temp

    def _error(self, action: str, error: OSError) -> TransferError:
        where = f" ({error.filename})" if error.filename else ""
        hint = None
        if error.errno == errno.ENOSPC:
            hint = "free space in imageDir, or remove expired images"
        elif error.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            hint = ACL_HINT
        elif error.errno in (errno.ENOENT, errno.EACCES) and not self.image_dir.is_dir():
            hint = "create imageDir and make it writable by the gateway account"
        return TransferError(
            f"could not {action} image files in {self.label}: "
            f"{error.strerror or error}{where}",
            hint=hint,
        )


def _copy(source_fd: int, dest_fd: int) -> None:
    while os.sendfile(dest_fd, source_fd, None, COPY_CHUNK):
        pass


def _change_access(path: Path, access: ImageAccess) -> None:
    """Give a published file `access` in place. A private access is one setxattr, which
    sets the permission bits with the ACL; a public one is chmod (with an ACL present that
    already admits everyone) and then the ACL's removal."""
    if access.private:
        os.setxattr(path, XATTR_NAME, access.posix_acl_xattr())
        return
    os.chmod(path, access.mode)
    try:
        os.removexattr(path, XATTR_NAME)
    except OSError as error:
        if error.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise


def _apply_access(fd: int, access: ImageAccess, path: Path) -> None:
    os.fchmod(fd, access.mode)
    if access.private:
        try:
            os.setxattr(fd, XATTR_NAME, access.posix_acl_xattr())
        except OSError as error:
            # setxattr on an fd reports no file name; the message should say which file.
            raise OSError(error.errno, error.strerror, str(path)) from error
