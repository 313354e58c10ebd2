"""Image builders: a plan and its layers in, one read-only filesystem image file out.

squashfs is built by streaming the merged tar straight into `mksquashfs -tar` (squashfs-tools
4.5 or later): no extraction, no expand directory, no root. ext4 and cramfs need a tree on
disk, so the already sanitised plan is written under a temporary directory first.

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
from shifter.errors import ShifterError, ToolError

log = logging.getLogger(__name__)

FORMATS = ("squashfs", "ext4", "cramfs")
SQUASHFS_COMPRESSORS = ("gzip", "lzma", "lzo", "lz4", "xz", "zstd")
# mksquashfs's own cache and queues; its default is a quarter of the RAM, which only makes the
# peak larger (measured: the same speed with 64M on the bench's images, ~60 MiB instead of ~220).
SQUASHFS_MEMORY = "64M"
# mksquashfs refuses these together with SOURCE_DATE_EPOCH: whoever passes one sets the times.
_TIME_OPTIONS = frozenset({"-mkfs-time", "-fstime", "-all-time", "-root-time"})
EXT4_BLOCK = 4096
EXT4_INODE = 256


class ImageBuildError(ShifterError):
    """The image file could not be produced (bad option, unwritable or full destination)."""


@dataclass(frozen=True)
class BuildOptions:
    """How to build; `extra_options` (ConverterOptions) go to the tool verbatim, after its
    fixed options (mksquashfs: last; mke2fs, mkfs.cramfs: before the paths)."""

    fmt: str = "squashfs"
    ownership: Ownership = "root"
    compressor: str = "gzip"  # gzip mounts everywhere; zstd needs kernel >= 4.14
    processors: int | None = None
    block_size: int | None = None
    extra_options: tuple[str, ...] = ()
    mksquashfs: str = "mksquashfs"
    mke2fs: str = "mke2fs"
    debugfs: str = "debugfs"
    mkfs_cramfs: str = "mkfs.cramfs"
    unshare: str = "unshare"


def build_squashfs(plan: Plan, layers: Sequence[Path], out: Path, options: BuildOptions) -> None:
    """Stream the merged tar into `mksquashfs -tar`; the plan has already set owners and modes."""
    argv = squashfs_argv(plan, out, options)
    env = None
    if not _TIME_OPTIONS.intersection(options.extra_options):  # those conflict with it
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(newest_mtime(plan))}
    try:
        proc.run_feeding(argv, lambda pipe: write_merged_tar(plan, layers, pipe), env=env)
    except ToolError as exc:
        if "SYNTAX:" not in exc.stderr_tail and "See also:" not in exc.stderr_tail:
            raise
        # A refused option makes mksquashfs print its whole help: the tail says nothing.
        raise ImageBuildError(
            f"mksquashfs refused its command line: {' '.join(argv)}",
            hint="check ConverterOptions for squashfs (mksquashfs options); "
            "reading a tar (-tar) needs squashfs-tools 4.5 or later",
        ) from exc


def squashfs_argv(plan: Plan, out: Path, options: BuildOptions) -> list[str]:
    """The mksquashfs command: fixed options first, then `extra_options` (ConverterOptions),
    which mksquashfs lets override them, as the original gateway's options did.

    A `-comp` in `extra_options` replaces `compressor`: mksquashfs refuses two. The merged tar
    carries no xattrs, so `-no-xattrs` is defence in depth that no option can undo.
    """
    extra = options.extra_options
    if "-comp" not in extra and options.compressor not in SQUASHFS_COMPRESSORS:
        raise ImageBuildError(
            f"unknown squashfs compressor {options.compressor!r}",
            hint=f"use one of {', '.join(SQUASHFS_COMPRESSORS)}",
        )
    root = plan.root
    argv = [options.mksquashfs, "-", str(out), "-tar", "-noappend", "-no-xattrs"]
    # -exit-on-error: fail rather than drop a record mksquashfs cannot read (the merged tar
    # never holds one); -quiet and -no-progress keep the captured output to real messages.
    argv += ["-exit-on-error", "-quiet", "-no-progress"]
    argv += ["-processors", str(_processors(options)), "-mem", SQUASHFS_MEMORY]
    if "-comp" not in extra:
        argv += ["-comp", options.compressor]
    if options.block_size is not None:
        argv += ["-b", str(options.block_size)]
    if options.ownership == "root":
        argv.append("-all-root")
    # A tar's "./" entry is ignored by mksquashfs -tar, so the root's attributes go as
    # options (its time cannot: see `newest_mtime`).
    argv += ["-root-mode", f"{root.mode:04o}"]
    argv += ["-root-uid", str(root.uid), "-root-gid", str(root.gid)]
    return [*argv, *extra]


def newest_mtime(plan: Plan) -> int:
    """The SOURCE_DATE_EPOCH that makes the image reproducible without changing any time.

    mksquashfs 4.5.1 with -tar gives the root directory the build time and ignores
    -root-time; with SOURCE_DATE_EPOCH it uses that (when it is not in the future) for the
    root and the creation time instead, and clamps any later file time to it. The newest
    time in the plan clamps nothing, so the same layers give the same image, byte for byte.
    """
    return max(entry.mtime for entry in plan.entries)


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
