"""The conversion entry point the gateway calls: layers in, one image file out, atomically.

The image appears under its final name only once it is complete and on disk: it is built
under a temporary name in the destination directory, fsynced, then renamed; any failure
removes the temporary file.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shifter.convert.builders import (
    FORMATS,
    BuildOptions,
    ImageBuildError,
    build_cramfs,
    build_ext4,
    build_squashfs,
)
from shifter.convert.plan import OWNERSHIPS, Ownership, Plan, plan_layers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildResult:
    """What was built: the image file, its size, entries kept and members left out."""

    path: Path
    size: int
    entries: int
    skipped: tuple[tuple[str, str], ...]  # (path, reason)


def build_image(
    layers: Sequence[Path],
    dest_dir: Path,
    name: str,
    *,
    fmt: str = "squashfs",
    ownership: Ownership = "root",
    compressor: str = "gzip",
    extra_options: Sequence[str] = (),
    processors: int | None = None,
    block_size: int | None = None,
    mode: int = 0o644,
    work_dir: Path | None = None,
    plan: Plan | None = None,
) -> BuildResult:
    """Flatten `layers` (bottom first) into `dest_dir/<name>.<fmt>`, replacing any old file.

    `mode` is the image file's mode (0600 or 0640 for private images, whose access the
    gateway then grants with ACLs). `work_dir` holds the temporary tree ext4 and cramfs
    need (default `dest_dir`); squashfs needs none. `plan` is the layers' plan when the
    caller made it already (the pull engine plans while it downloads), made with the same
    `ownership`.
    """
    options = BuildOptions(
        fmt=fmt,
        ownership=ownership,
        compressor=compressor,
        processors=processors,
        block_size=block_size,
        extra_options=tuple(str(o) for o in extra_options),
    )
    _check(name, options, mode)
    dest_dir = Path(dest_dir)
    final = dest_dir / f"{name}.{fmt}"
    started = time.monotonic()
    if plan is None:
        plan = plan_layers([Path(p) for p in layers], ownership=ownership)
    planned = time.monotonic()
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{name}.{fmt}.", suffix=".partial", dir=dest_dir)
    except OSError as exc:
        raise _unwritable(dest_dir, exc) from exc
    os.close(fd)
    temp = Path(temp_name)
    try:
        _build(plan, layers, temp, options, Path(work_dir) if work_dir else dest_dir)
        _commit(temp, final, mode)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    size = final.stat().st_size
    log.info(
        "built %s: %d entries, %d bytes, plan %.1f s, build %.1f s",
        final,
        len(plan.entries),
        size,
        planned - started,
        time.monotonic() - planned,
    )
    return BuildResult(
        path=final,
        size=size,
        entries=len(plan.entries) - 1,  # the root directory is not an entry users see
        skipped=tuple((s.path, s.reason) for s in plan.skipped),
    )


def _check(name: str, options: BuildOptions, mode: int) -> None:
    if not name or "/" in name or name.startswith(".") or "\x00" in name:
        raise ImageBuildError(
            f"invalid image file name {name!r}",
            hint="use the image id: no slash, not starting with a dot",
        )
    if options.fmt not in FORMATS:
        raise ImageBuildError(
            f"unknown image format {options.fmt!r}", hint=f"use one of {', '.join(FORMATS)}"
        )
    if options.ownership not in OWNERSHIPS:
        raise ImageBuildError(
            f"unknown ownership {options.ownership!r}", hint=f"use one of {', '.join(OWNERSHIPS)}"
        )
    if mode & ~0o777:
        raise ImageBuildError(f"image file mode {mode:#o} has bits beyond 0777")


def _build(
    plan: Plan, layers: Sequence[Path], out: Path, options: BuildOptions, work_dir: Path
) -> None:
    try:
        if options.fmt == "squashfs":
            build_squashfs(plan, layers, out, options)
        elif options.fmt == "ext4":
            build_ext4(plan, layers, out, options, work_dir)
        else:
            build_cramfs(plan, layers, out, options, work_dir)
    except OSError as exc:
        # Our own writes (the ext4/cramfs tree) on a full or read-only file system.
        raise ImageBuildError(
            f"cannot build the {options.fmt} image in {work_dir}: {exc.strerror or exc}",
            hint="free space there or choose another directory",
        ) from exc


def _commit(temp: Path, final: Path, mode: int) -> None:
    """chmod, fsync, rename, fsync the directory: the image is whole or absent."""
    try:
        os.chmod(temp, mode)
        fd = os.open(temp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
        dir_fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise _unwritable(final.parent, exc) from exc


def _unwritable(directory: Path, exc: OSError) -> ImageBuildError:
    return ImageBuildError(
        f"cannot write the image in {directory}: {exc.strerror or exc}",
        hint="check that the directory exists, is writable and has free space",
    )
