"""Image builders: a plan and its layers in, one read-only filesystem image file out.

squashfs is built by streaming the merged tar straight into `tar2sqfs` (squashfs-tools-ng):
no extraction, no expand directory, no root. ext4 and cramfs need a tree on disk, so the
already sanitised plan is written under a temporary directory first.

Each builder writes to the path it is given; the caller (`engine.build_image`) owns the
temporary name, the final rename and the clean-up.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from shifter import proc
from shifter.convert.layers import Kind
from shifter.convert.merge import extract_merged_tree, write_merged_tar
from shifter.convert.plan import Ownership, Plan, PlannedEntry
from shifter.errors import ShifterError

log = logging.getLogger(__name__)

FORMATS = ("squashfs", "ext4", "cramfs")
SQUASHFS_COMPRESSORS = ("gzip", "lzma", "lzo", "lz4", "xz", "zstd")
EXT4_BLOCK = 4096
EXT4_INODE = 256


class ImageBuildError(ShifterError):
    """The image file could not be produced (bad option, unwritable or full destination)."""


@dataclass(frozen=True)
class BuildOptions:
    """How to build; `extra_options` go to the tool verbatim, before the output path."""

    fmt: str = "squashfs"
    ownership: Ownership = "root"
    compressor: str = "gzip"  # gzip mounts everywhere; zstd needs kernel >= 4.14
    processors: int | None = None
    block_size: int | None = None
    extra_options: tuple[str, ...] = ()
    quiet: bool = True
    tar2sqfs: str = "tar2sqfs"
    mke2fs: str = "mke2fs"
    debugfs: str = "debugfs"
    mkfs_cramfs: str = "mkfs.cramfs"
    unshare: str = "unshare"


def build_squashfs(plan: Plan, layers: Sequence[Path], out: Path, options: BuildOptions) -> None:
    """Stream the merged tar into tar2sqfs; the plan has already set owners and modes."""
    if options.compressor not in SQUASHFS_COMPRESSORS:
        raise ImageBuildError(
            f"unknown squashfs compressor {options.compressor!r}",
            hint=f"use one of {', '.join(SQUASHFS_COMPRESSORS)}",
        )
    argv = [options.tar2sqfs, "--no-xattr", "--no-skip", "--force"]
    argv += ["--compressor", options.compressor, "--num-jobs", str(_processors(options))]
    argv += ["--defaults", "uid=0,gid=0,mode=0755"]
    if options.block_size is not None:
        argv += ["--block-size", str(options.block_size)]
    if options.quiet:
        argv.append("--quiet")
    argv += [*options.extra_options, str(out)]
    proc.run_feeding(argv, lambda pipe: write_merged_tar(plan, layers, pipe))


def ext4_size(plan: Plan) -> tuple[int, int]:
    """Bytes and inodes for an ext4 image holding `plan`, with room to spare.

    Data rounded up to blocks, directory entries at their on-disk size, long symlinks one
    block each, the inode table; then 10% and 16 MiB for group metadata and slack.
    """
    blocks = 0
    dirent_bytes = 0
    for entry in plan.entries:
        name = entry.path.rpartition("/")[2].encode("utf-8", "surrogateescape")
        dirent_bytes += 8 + ((len(name) + 3) & ~3)
        if entry.kind is Kind.FILE:
            blocks += math.ceil(entry.size / EXT4_BLOCK) + 1  # +1: extent index, tails
        elif entry.kind is Kind.DIR or _slow_symlink(entry):
            blocks += 1
    inodes = len(plan.entries) + 64
    raw = blocks * EXT4_BLOCK + 2 * dirent_bytes + inodes * EXT4_INODE
    size = int(raw * 1.1) + (16 << 20)
    return -(-size // EXT4_BLOCK) * EXT4_BLOCK, inodes


def _slow_symlink(entry: PlannedEntry) -> bool:
    """ext4 keeps targets under 60 bytes in the inode; longer ones take a block."""
    return entry.kind is Kind.SYMLINK and len(entry.link.encode("utf-8", "surrogateescape")) >= 60


def build_ext4(
    plan: Plan, layers: Sequence[Path], out: Path, options: BuildOptions, work_dir: Path
) -> None:
    """mke2fs -d from a temporary tree; no journal, the image is mounted read-only."""
    size, inodes = ext4_size(plan)
    with _merged_tree(plan, layers, work_dir, options) as tree:
        argv = [proc.find_tool(options.mke2fs), "-q", "-F", "-t", "ext4", "-O", "^has_journal"]
        argv += ["-m", "0", "-b", str(EXT4_BLOCK), "-I", str(EXT4_INODE), "-N", str(inodes)]
        argv += ["-E", "root_owner=0:0", "-d", str(tree)]
        argv += [*options.extra_options, str(out), f"{size // 1024}k"]
        proc.run(_as_tree_owner(argv, options))
    if "lost+found" not in plan:
        # mke2fs always makes one; an image should hold what its layers hold, nothing more.
        proc.run([options.debugfs, "-w", "-R", "rmdir /lost+found", str(out)])


def build_cramfs(
    plan: Plan, layers: Sequence[Path], out: Path, options: BuildOptions, work_dir: Path
) -> None:
    """mkfs.cramfs from a temporary tree; -E turns its truncation warnings into failures."""
    with _merged_tree(plan, layers, work_dir, options) as tree:
        argv = [proc.find_tool(options.mkfs_cramfs), "-E", *options.extra_options, str(tree)]
        proc.run(_as_tree_owner([*argv, str(out)], options))


@contextlib.contextmanager
def _merged_tree(
    plan: Plan, layers: Sequence[Path], work_dir: Path, options: BuildOptions
) -> Iterator[Path]:
    """A temporary directory in `work_dir` holding the merged image, removed on exit."""
    if options.ownership == "preserve" and os.geteuid() != 0:
        raise ImageBuildError(
            f"{options.fmt} images keep file owners only when built as root",
            hint="use ownership='root', or build squashfs images, which need no root",
        )
    path = Path(tempfile.mkdtemp(prefix=".tree.", dir=work_dir))
    try:
        extract_merged_tree(plan, layers, path, chown=os.geteuid() == 0)
        yield path
    finally:
        remove_tree(path)


def _as_tree_owner(argv: list[str], options: BuildOptions) -> list[str]:
    """As root the tree already has its final owners; otherwise every file belongs to us,
    so the tool runs in a user namespace where our uid is 0 and sees an all-root tree."""
    if os.geteuid() == 0:
        return argv
    return [options.unshare, "--user", "--map-root-user", "--", *argv]


def remove_tree(path: Path) -> None:
    """rmtree that copes with read-only directories (an image may hold 0555 or 0000 ones)."""
    os.chmod(path, 0o700)
    for dirpath, dirnames, _files in os.walk(path):
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, 0o700)  # before os.walk descends into it
    shutil.rmtree(path)


def _processors(options: BuildOptions) -> int:
    if options.processors is not None:
        if options.processors < 1:
            raise ImageBuildError(f"processors must be at least 1, not {options.processors}")
        return options.processors
    return max(1, len(os.sched_getaffinity(0)))
