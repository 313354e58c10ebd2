"""Real images from real layers, the squashfs options and what a build leaves behind: options
reaching mksquashfs, the same image byte for byte from the same layers, failures that leave
nothing behind, bounded memory, and the pipe into the tool (shifter.proc.run_feeding).

Needs root for the loop mounts and the tmpfs destinations. Every mount is undone in
teardown. Helpers: test_build_image_support.py.
"""

from __future__ import annotations

import os
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from shifter import proc
from shifter.convert import ImageBuildError, LayerError, build_image
from shifter.errors import ToolError, ToolNotFoundError
from shifter.ocibuild import catalog
from shifter.ocibuild.layer import Compression, Dir, File
from shifter.proc import run_feeding
from tests.root.test_build_image_support import (
    Mounter,
    build_in_subprocess,
    catalog_layers,
    leftovers,
    loop_mounts,
    write_layers,
)

RSS_LIMIT_MIB = 150


@pytest.fixture
def mount_image(tmp_path: Path) -> Iterator[Mounter]:
    """Loop-mounted images, read-only, unmounted in teardown."""
    yield from loop_mounts(tmp_path)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Small tmpfs mounts under tmp_path, unmounted in teardown."""
    mounted: list[Path] = []

    def make(options: str) -> Path:
        target = tmp_path / f"tmpfs{len(mounted)}"
        target.mkdir()
        proc.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)])
        mounted.append(target)
        return target

    yield make
    for target in reversed(mounted):
        proc.run(["umount", str(target)])


# --- options and reproducible output ---------------------------------------------------------


@pytest.mark.parametrize("compression", list(Compression))
def test_compressed_and_plain_layers(
    tmp_path: Path, mount_image: Mounter, compression: Compression
) -> None:
    layers = write_layers(
        tmp_path / "layers",
        [Dir("d"), File("d/f", b"one")],
        [File("d/g", b"two" * 100_000)],
        compression=compression,
    )
    root = mount_image(build_image(layers, tmp_path, "image").path, "squashfs")
    assert (root / "d/f").read_bytes() == b"one"
    assert (root / "d/g").read_bytes() == b"two" * 100_000


def test_compressor_and_extra_options_reach_mksquashfs(tmp_path: Path) -> None:
    layers = write_layers(tmp_path / "layers", [File("f", b"x" * 100_000)])
    result = build_image(layers, tmp_path, "image", compressor="zstd", extra_options=["-b", "64K"])
    superblock = proc.run(["unsquashfs", "-s", str(result.path)]).stdout.decode()
    assert "Compression zstd" in superblock
    assert "Block size 65536" in superblock


def test_a_compressor_in_the_extra_options_wins(tmp_path: Path, mount_image: Mounter) -> None:
    layers = write_layers(tmp_path / "layers", [File("f", b"x" * 100_000)])
    options = ["-comp", "xz", "-Xdict-size", "50%"]  # -X options must follow their -comp
    result = build_image(layers, tmp_path, "image", extra_options=options)
    superblock = proc.run(["unsquashfs", "-s", str(result.path)]).stdout.decode()
    assert "Compression xz" in superblock
    assert (mount_image(result.path, "squashfs") / "f").read_bytes() == b"x" * 100_000


def test_an_option_mksquashfs_refuses_is_named(tmp_path: Path) -> None:
    layers = write_layers(tmp_path / "layers", [File("f")])
    out = tmp_path / "out"
    out.mkdir()
    refused = r"mksquashfs refused its command line: .* --block-size 65536"
    with pytest.raises(ImageBuildError, match=refused) as failure:
        build_image(layers, out, "image", extra_options=["--block-size", "65536"])
    assert "ConverterOptions" in str(failure.value.hint)
    assert leftovers(out) == []


def test_the_same_layers_give_the_same_image_byte_for_byte(
    tmp_path: Path, mount_image: Mounter
) -> None:
    """No build time in the image: the root directory and the creation time get the newest
    time of the layers (mksquashfs would use the clock), and no file time changes."""
    layers = write_layers(
        tmp_path / "layers",
        [Dir("./", mtime=100), File("old", b"o", mtime=1_000), File("new", b"n", mtime=5_000)],
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = build_image(layers, tmp_path / "a", "image").path
    time.sleep(1.1)  # a clock-based time would now differ
    second = build_image(layers, tmp_path / "b", "image").path
    assert first.read_bytes() == second.read_bytes()
    root = mount_image(first, "squashfs")
    times = {name: int(os.lstat(root / name).st_mtime) for name in ("", "old", "new")}
    assert times == {"": 5_000, "old": 1_000, "new": 5_000}


def test_time_options_in_the_extra_options_set_the_times(tmp_path: Path) -> None:
    layers = write_layers(tmp_path / "layers", [File("f", b"f", mtime=5_000)])
    image = build_image(layers, tmp_path, "image", extra_options=["-mkfs-time", "86400"]).path
    superblock = proc.run(["unsquashfs", "-s", str(image)]).stdout.decode()
    assert "Creation or last append time Fri Jan  2 00:00:00 1970" in superblock


def test_rebuilding_replaces_the_image(tmp_path: Path, mount_image: Mounter) -> None:
    first = write_layers(tmp_path / "a", [File("version", b"1")])
    second = write_layers(tmp_path / "b", [File("version", b"2")])
    build_image(first, tmp_path, "image")
    result = build_image(second, tmp_path, "image")
    assert (mount_image(result.path, "squashfs") / "version").read_bytes() == b"2"


# --- failures leave nothing behind ---------------------------------------------------------


def test_full_destination_fails_cleanly(tmp_path: Path, tmpfs: Callable[[str], Path]) -> None:
    full = tmpfs("size=1m")
    layers = write_layers(tmp_path / "layers", [File("random", os.urandom(3 << 20))])
    with pytest.raises(ToolError, match="mksquashfs") as failure:
        build_image(layers, full, "image")
    assert failure.value.stderr_tail  # the tool's own words about the full disk
    assert leftovers(full) == []
    with pytest.raises(ImageBuildError, match="cannot build the ext4 image"):
        build_image(layers, full, "image", fmt="ext4")
    assert leftovers(full) == []


def test_read_only_destination_fails_cleanly(tmp_path: Path, tmpfs: Callable[[str], Path]) -> None:
    read_only = tmpfs("size=1m,ro")
    layers = write_layers(tmp_path / "layers", [File("f", b"x")])
    with pytest.raises(ImageBuildError, match="cannot write the image in") as failure:
        build_image(layers, read_only, "image")
    assert failure.value.hint
    assert leftovers(read_only) == []


def test_a_corrupt_layer_removes_the_partial_image(tmp_path: Path) -> None:
    layers = write_layers(
        tmp_path / "layers", [File("a", b"a" * 100_000)], [File("b", b"b" * 100_000)]
    )
    blob = layers[1].read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    # Corrupt the middle of the deflate stream: the plan pass notices it while reading.
    layers[1].write_bytes(blob[:20] + bytes(len(blob) - 40) + blob[-20:])
    with pytest.raises(LayerError):
        build_image(layers, out, "image")
    assert leftovers(out) == []


def test_bad_arguments_are_refused_before_any_work(tmp_path: Path) -> None:
    layers = write_layers(tmp_path / "layers", [File("f")])
    for kwargs, message in [
        ({"fmt": "xfs"}, "unknown image format"),
        ({"compressor": "brotli"}, "unknown squashfs compressor"),
        ({"ownership": "nobody"}, "unknown ownership"),
        ({"mode": 0o4644}, "bits beyond 0777"),
    ]:
        with pytest.raises(ImageBuildError, match=message):
            build_image(layers, tmp_path, "image", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ImageBuildError, match="invalid image file name"):
        build_image(layers, tmp_path, "../image")
    assert not list(tmp_path.glob("*image*"))


# --- memory ---------------------------------------------------------------------------------


def test_a_tar_bomb_streams_in_bounded_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layers = catalog_layers(catalog.build("tarbomb"), tmp_path / "layers")
    report = build_in_subprocess(layers, tmp_path)
    assert report["entries"] > catalog.TAR_BOMB_FILES
    rss_mib = report["rss_kib"] / 1024
    with capsys.disabled():
        print(f"\n  tar bomb ({catalog.TAR_BOMB_FILES} files): peak RSS {rss_mib:.1f} MiB")
    assert rss_mib < RSS_LIMIT_MIB


def test_a_huge_file_never_sits_in_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    size = 512 << 20
    layer = tmp_path / "layer.tar"
    info = tarfile.TarInfo("big")
    info.size = size
    with open(layer, "wb") as out:
        # Header, then zeros in chunks: making the layer must not need the memory either.
        out.write(info.tobuf(tarfile.PAX_FORMAT))
        chunk = bytes(1 << 20)
        for _ in range(size >> 20):
            out.write(chunk)
        out.write(bytes(1024))
    report = build_in_subprocess([layer], tmp_path)
    rss_mib = report["rss_kib"] / 1024
    with capsys.disabled():
        print(f"\n  one {size >> 20} MiB file: peak RSS {rss_mib:.1f} MiB")
    assert rss_mib < RSS_LIMIT_MIB
    listing = proc.run(["rdsquashfs", "-s", "/big", str(tmp_path / "image.squashfs")]).stdout
    assert f"{size}".encode() in listing


# --- the pipe into the tool (shifter.proc.run_feeding) --------------


def flood(pipe: BinaryIO) -> None:
    for _ in range(100):
        pipe.write(bytes(1 << 16))


def test_a_tool_failing_while_fed_raises_its_status_and_last_lines() -> None:
    with pytest.raises(ToolError, match="sh failed with exit status 3") as failure:
        run_feeding(["sh", "-c", "echo first; echo boom >&2; exit 3"], flood)
    assert (failure.value.returncode, failure.value.stderr_tail) == (3, "first\nboom")


def test_a_tool_that_stops_reading_is_a_failure() -> None:
    with pytest.raises(ToolError, match="true stopped reading its input"):
        run_feeding(["true"], flood)


def test_a_failing_feed_kills_the_tool_and_propagates() -> None:
    def broken(pipe: BinaryIO) -> None:
        pipe.write(b"partial")
        raise LayerError("layer went bad")

    with pytest.raises(LayerError, match="layer went bad"):
        run_feeding(["sleep", "60"], broken)


def test_a_tool_outliving_its_timeout_is_killed() -> None:
    with pytest.raises(ToolError, match=r"did not finish within 0\.2 s"):
        run_feeding(["sh", "-c", "cat >/dev/null; exec sleep 60"], flood, timeout=0.2)


def test_a_missing_tool_is_named() -> None:
    with pytest.raises(ToolNotFoundError, match="no-such-tool"):
        run_feeding(["no-such-tool"], flood)
