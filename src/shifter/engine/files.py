"""Small files written atomically: whole under their final name, or absent.

The runtime treats `<id>.meta` as "this image exists", so it must never be seen half
written: it is written under a temporary name in the same directory, fsynced, given its
mode, renamed over the final name, and the directory is fsynced so the rename survives a
crash.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from shifter.errors import ShifterError
from shifter.registry.blobcache import fsync_directory


class OutputError(ShifterError):
    """A file of the converted image could not be written."""


def output_error(path: Path, exc: OSError) -> OutputError:
    return OutputError(
        f"cannot write {path}: {exc.strerror or exc}",
        hint="check that the directory is writable and has free space",
    )


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data`; on failure the old file (or none) stays and no temporary
    file is left, and OutputError says why."""
    try:
        fd, temp_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".partial", dir=path.parent
        )
    except OSError as exc:
        raise output_error(path, exc) from exc
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
        fsync_directory(path.parent)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise output_error(path, exc) from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
