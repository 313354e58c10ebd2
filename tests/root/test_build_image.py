"""Real images from real layers: built with mksquashfs, mke2fs and mkfs.cramfs, then mounted
(loop, read-only) or extracted and checked file by file against the test-image catalog.

Needs root for the loop mounts, the tmpfs destinations and the non-root build (setpriv).
Every mount is undone in teardown.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from shifter import proc
from shifter.convert import ImageBuildError, LayerError, build_image
from shifter.errors import ToolError, ToolNotFoundError
from shifter.ocibuild import catalog
from shifter.ocibuild.catalog import Expected
from shifter.ocibuild.image import BuiltImage
from shifter.ocibuild.layer import Compression, Dir, File, HardLink, Symlink, build_layer
from shifter.proc import run_feeding

FSTYPES = {"squashfs": "squashfs", "ext4": "ext4"}
RSS_LIMIT_MIB = 150

Mounter = Callable[[Path, str], Path]


@pytest.fixture
def mount_image(tmp_path: Path) -> Iterator[Mounter]:
    """Loop-mounts images read-only; unmounts them (and so frees the loops) in teardown."""
    mounted: list[Path] = []

    def mount(image: Path, fmt: str) -> Path:
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        options = "loop,ro,noload" if fmt == "ext4" else "loop,ro"
        proc.run(["mount", "-t", FSTYPES[fmt], "-o", options, str(image), str(target)])
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        proc.run(["umount", str(target)])


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


def catalog_layers(built: BuiltImage, dest: Path) -> list[Path]:
    """The image's layer blobs, bottom first, as files (linux/amd64 from an index)."""
    blobs = {blob.digest: blob for blob in (*built.blobs, *built.manifests)}
    manifest = json.loads(built.top.data)
    if "manifests" in manifest:
        (chosen,) = (m for m in manifest["manifests"] if m["platform"]["architecture"] == "amd64")
        manifest = json.loads(blobs[chosen["digest"]].data)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, layer in enumerate(manifest["layers"]):
        path = dest / f"layer{index}"
        path.write_bytes(blobs[layer["digest"]].data)
        paths.append(path)
    return paths


def write_layers(
    dest: Path, *layers: list, compression: Compression = Compression.GZIP
) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, entries in enumerate(layers):
        path = dest / f"layer{index}"
        path.write_bytes(build_layer(entries, compression).blob)
        paths.append(path)
    return paths


def inside(root: Path, path: str) -> Path:
    """`path` under `root`, asserting no symlink is met on the way: checks never leave the image."""
    current = root
    for part in path.strip("/").split("/")[:-1]:
        current = current / part
        assert stat.S_ISDIR(os.lstat(current).st_mode), f"{current} is not a real directory"
    return root / path.strip("/")


def is_absent(root: Path, path: str) -> bool:
    """No entry at `path`: a missing or non-directory parent counts; a symlink is never followed."""
    current = root
    for part in path.strip("/").split("/"):
        if not stat.S_ISDIR(os.lstat(current).st_mode):
            return True
        current = current / part
        if not os.path.lexists(current):
            return True
    return False


def check_expected(root: Path, expected: Expected, *, ownership: str) -> None:
    for path, content in expected.files.items():
        target = inside(root, path)
        assert stat.S_ISREG(os.lstat(target).st_mode), path
        assert target.read_bytes() == content, path
    for path in expected.dirs:
        assert stat.S_ISDIR(os.lstat(inside(root, path)).st_mode), path
    for path, link in expected.symlinks.items():
        assert os.readlink(inside(root, path)) == link, path
    for path in expected.absent:
        assert is_absent(root, path), path
    for path, mode in expected.modes.items():
        assert stat.S_IMODE(os.lstat(inside(root, path)).st_mode) == mode, path
    for first, second in expected.hardlinks:
        a, b = os.lstat(inside(root, first)), os.lstat(inside(root, second))
        assert (a.st_ino, stat.S_ISREG(a.st_mode)) == (b.st_ino, True), (first, second)
    for path, owner in expected.owners.items():
        info = os.lstat(inside(root, path))
        assert (info.st_uid, info.st_gid) == (owner if ownership == "preserve" else (0, 0)), path
    for path in expected.no_xattrs:
        assert xattrs(inside(root, path)) == [], path
    for path, count in expected.file_counts.items():
        found = sum(
            1
            for dirpath, _dirs, files in os.walk(inside(root, path))
            for name in files
            if stat.S_ISREG(os.lstat(os.path.join(dirpath, name)).st_mode)
        )
        assert found == count, path


def xattrs(path: Path) -> list[str]:
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.EOPNOTSUPP:  # squashfs without an xattr table at all
            return []
        raise


def all_owners(root: Path) -> set[tuple[int, int]]:
    owners = set()
    for dirpath, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            info = os.lstat(os.path.join(dirpath, name))
            owners.add((info.st_uid, info.st_gid))
    return owners


def leftovers(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name != "lost+found")


# --- the catalog ------------------------------------------------------------------------


@pytest.mark.parametrize("name", catalog.names())
def test_catalog_image_flattens_to_its_expected_outcome(
    tmp_path: Path, mount_image: Mounter, name: str
) -> None:
    expected = catalog.expected(name)
    layers = catalog_layers(catalog.build(name), tmp_path / "layers")
    out = tmp_path / "out"
    out.mkdir()
    host_passwd = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    host_paths = {p: os.path.lexists(p) for p in ("/escape", "/escape-deep", "/escaped", "/abs")}
    if expected.error is not None:
        with pytest.raises(LayerError, match=expected.error):
            build_image(layers, out, "image", ownership="preserve")
        assert leftovers(out) == []
    else:
        result = build_image(layers, out, "image", ownership="preserve")
        assert result.path == out / "image.squashfs"
        assert leftovers(out) == ["image.squashfs"]
        check_expected(mount_image(result.path, "squashfs"), expected, ownership="preserve")
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() == host_passwd
    assert {p: os.path.lexists(p) for p in host_paths} == host_paths


def test_skipped_members_are_reported(tmp_path: Path) -> None:
    layers = catalog_layers(catalog.build("hostile-devices"), tmp_path / "layers")
    result = build_image(layers, tmp_path, "image")
    assert sorted(result.skipped) == [
        ("hostile/null", "device nodes are not kept in images"),
        ("hostile/sda", "device nodes are not kept in images"),
    ]


def test_all_root_ownership_and_image_file_mode(tmp_path: Path, mount_image: Mounter) -> None:
    layers = catalog_layers(catalog.build("layered"), tmp_path / "layers")
    result = build_image(layers, tmp_path, "image", mode=0o600)
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    root = mount_image(result.path, "squashfs")
    check_expected(root, catalog.expected("layered"), ownership="root")
    assert all_owners(root) == {(0, 0)}


def test_root_directory_and_hard_link_only_layer(tmp_path: Path, mount_image: Mounter) -> None:
    layers = write_layers(
        tmp_path / "layers",
        [Dir("./", mode=0o750), Dir("lower"), File("lower/t", b"T", mode=0o4755)],
        [HardLink("link", "lower/t"), Symlink("abs", "/lower/t"), Symlink("rel", "lower/t")],
        [File("lower/t", b"replaced")],
    )
    root = mount_image(build_image(layers, tmp_path, "image").path, "squashfs")
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o750
    assert (root / "link").read_bytes() == b"T"  # the data the link had when it was made
    assert os.lstat(root / "link").st_mode == stat.S_IFREG | 0o755
    assert (root / "lower/t").read_bytes() == b"replaced"
    assert (os.readlink(root / "abs"), os.readlink(root / "rel")) == ("/lower/t", "lower/t")


def test_long_names_and_link_targets_survive_unchanged(
    tmp_path: Path, mount_image: Mounter
) -> None:
    """Targets over 100 bytes travel in a long-link record; mksquashfs 4.5.1 strips a
    leading `/`, `./` or `../` from PAX `linkpath` records, so these pin the workaround."""
    deep = "d" * 120
    targets = {
        "abs": f"/{deep}/f",
        "up": f"../../{deep}/f",
        "dot": f"./{deep}/f",
        "slashes": f"//{deep}/./f",
        "short-abs": "/etc/passwd",
    }
    long_name = f"{deep}/{'n' * 200}"
    latin1 = b"caf\xe9"
    layers = write_layers(
        tmp_path / "layers",
        [
            Dir(deep),
            File(f"{deep}/f", b"F", uid=3_000_000, gid=4_000_000, mtime=2**32 - 1),
            File(long_name, b"long", mode=0o1750),
            HardLink(f"{deep}/{'h' * 150}", long_name),
            File(latin1, b"latin1"),
            File("ünïcode name ", b"u"),
            *(Symlink(name, target) for name, target in targets.items()),
        ],
    )
    root = mount_image(
        build_image(layers, tmp_path, "image", ownership="preserve").path, "squashfs"
    )
    assert {name: os.readlink(root / name) for name in targets} == targets
    info = os.lstat(root / deep / "f")
    assert (info.st_uid, info.st_gid, info.st_mtime) == (3_000_000, 4_000_000, 2**32 - 1)
    assert stat.S_IMODE(os.lstat(root / long_name).st_mode) == 0o1750
    assert os.lstat(root / deep / ("h" * 150)).st_ino == os.lstat(root / long_name).st_ino
    assert (root / deep / ("h" * 150)).read_bytes() == b"long"
    assert (root / os.fsdecode(latin1)).read_bytes() == b"latin1"
    assert (root / "ünïcode name ").read_bytes() == b"u"


def tar_layer(path: Path, fmt: int, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w", format=fmt) as tar:
        for info, content in members:
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def member(
    name: str,
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int = 7,
    uname: str = "",
    gname: str = "",
    pax: dict[str, str] | None = None,
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, mtime
    info.uname, info.gname = uname, gname
    info.pax_headers = pax or {}
    return info


@pytest.mark.parametrize("ownership", ["root", "preserve"])
def test_members_copied_as_they_are_mean_what_the_plan_says(
    tmp_path: Path, mount_image: Mounter, ownership: str
) -> None:
    """The merge copies a member's own blocks when they say what the plan decided; owner
    names, setuid bits, integer PAX times (mksquashfs 4.5.1 cannot read them), out-of-range
    times and prefixed names must all be re-written instead."""
    long_dir = "p" * 120
    pax = tar_layer(
        tmp_path / "pax.tar",
        tarfile.PAX_FORMAT,
        [
            (
                member(
                    "./frac",
                    mode=0o640,
                    uid=1234,
                    gid=4321,
                    uname="root",
                    gname="root",
                    pax={"mtime": "1700000000.75", "atime": "1.5"},
                ),
                b"frac",
            ),
            (member("int", pax={"mtime": "1700000001"}), b"int"),
            (member("setuid", mode=0o4755), b"setuid"),
            (member("future", mtime=2**33 - 1), b"future"),
            (member("plain-a", uid=5, gid=6), b"a"),
            (member("plain-b", uid=5, gid=6), b"b" * 1000),
        ],
    )
    gnu = tar_layer(
        tmp_path / "gnu.tar",
        tarfile.GNU_FORMAT,
        [
            (member("gnu-named", uid=0, gid=0, uname="nobody", gname="nogroup"), b"gnu"),
            (member("gnu-plain", uid=7, gid=8, mtime=9), b"plain"),
        ],
    )
    ustar = tar_layer(
        tmp_path / "ustar.tar",
        tarfile.USTAR_FORMAT,
        [
            (member(f"{long_dir}/prefixed", mode=0o600), b"prefixed"),
        ],
    )
    image = build_image([pax, gnu, ustar], tmp_path, "image", ownership=ownership).path
    root = mount_image(image, "squashfs")
    expected = {  # path: (mode, uid, gid, mtime, content)
        "frac": (0o640, 1234, 4321, 1_700_000_000, b"frac"),
        "int": (0o644, 0, 0, 1_700_000_001, b"int"),
        "setuid": (0o755, 0, 0, 7, b"setuid"),
        "future": (0o644, 0, 0, 2**32 - 1, b"future"),
        "plain-a": (0o644, 5, 6, 7, b"a"),
        "plain-b": (0o644, 5, 6, 7, b"b" * 1000),
        "gnu-named": (0o644, 0, 0, 7, b"gnu"),
        "gnu-plain": (0o644, 7, 8, 9, b"plain"),
        f"{long_dir}/prefixed": (0o600, 0, 0, 7, b"prefixed"),
    }
    for path, (mode, uid, gid, mtime, content) in expected.items():
        info = os.lstat(inside(root, path))
        owner = (uid, gid) if ownership == "preserve" else (0, 0)
        assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (mode, *owner), path
        assert (info.st_mtime, (root / path).read_bytes()) == (mtime, content), path


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


# --- ext4 and cramfs ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["layered", "hostile-symlink-etc", "tarbomb"])
def test_ext4_images(tmp_path: Path, mount_image: Mounter, name: str) -> None:
    layers = catalog_layers(catalog.build(name), tmp_path / "layers")
    result = build_image(layers, tmp_path, "image", fmt="ext4", ownership="preserve")
    assert result.path.name == "image.ext4"
    proc.run(["e2fsck", "-fn", str(result.path)])
    root = mount_image(result.path, "ext4")
    check_expected(root, catalog.expected(name), ownership="preserve")
    assert not os.path.lexists(root / "lost+found")
    assert not list(tmp_path.glob(".tree.*"))


def test_cramfs_image(tmp_path: Path) -> None:
    layers = catalog_layers(catalog.build("layered"), tmp_path / "layers")
    result = build_image(layers, tmp_path, "image", fmt="cramfs")
    extracted = tmp_path / "extracted"
    proc.run(["fsck.cramfs", f"--extract={extracted}", str(result.path)])
    expected = catalog.expected("layered")
    for path, content in expected.files.items():
        assert inside(extracted, path).read_bytes() == content, path
    for path in expected.absent:
        assert is_absent(extracted, path), path
    first, second = expected.hardlinks[0]
    assert inside(extracted, first).read_bytes() == inside(extracted, second).read_bytes()


def test_cramfs_refuses_owners_it_would_truncate(tmp_path: Path) -> None:
    layers = catalog_layers(catalog.build("layered"), tmp_path / "layers")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ToolError, match=r"mkfs\.cramfs failed") as failure:
        build_image(layers, out, "image", fmt="cramfs", ownership="preserve")
    assert "gids truncated" in str(failure.value)
    assert leftovers(out) == []


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


# --- without root, and memory ---------------------------------------------------------------


# Peak RSS is VmHWM, not getrusage's ru_maxrss: the latter carries over the high-water mark
# of the forking parent (pytest) across exec, so it would measure pytest, not the build.
BUILD_SCRIPT = """
import json, re, sys
from pathlib import Path
from shifter.convert import build_image
args = json.loads(sys.argv[1])
result = build_image([Path(p) for p in args["layers"]], Path(args["dest"]), "image",
                     fmt=args.get("fmt", "squashfs"))
status = Path("/proc/self/status").read_text()
peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
print(json.dumps({"rss_kib": peak, "entries": result.entries}))
"""


def build_in_subprocess(
    layers: list[Path], dest: Path, *, fmt: str = "squashfs", user: int | None = None
) -> dict:
    argv = [
        sys.executable,
        "-c",
        BUILD_SCRIPT,
        json.dumps({"layers": [str(p) for p in layers], "dest": str(dest), "fmt": fmt}),
    ]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return json.loads(proc.run(argv).stdout)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A temp dir another user can reach (pytest's tmp_path is under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="shifter-convert-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


@pytest.mark.parametrize("fmt", ["squashfs", "ext4", "cramfs"])
def test_building_needs_no_root(shared_dir: Path, mount_image: Mounter, fmt: str) -> None:
    layers = catalog_layers(catalog.build("layered"), shared_dir / "layers")
    for layer in layers:
        layer.chmod(0o644)
    (shared_dir / "layers").chmod(0o755)
    build_in_subprocess(layers, shared_dir, fmt=fmt, user=65534)
    image = shared_dir / f"image.{fmt}"
    assert image.stat().st_uid == 65534
    expected = catalog.expected("layered")
    if fmt == "cramfs":  # this kernel has no cramfs driver: extract (as root, owners kept)
        root = shared_dir / "extracted"
        proc.run(["fsck.cramfs", f"--extract={root}", str(image)])
        expected = dataclasses.replace(expected, hardlinks=())  # cramfs has no link counts
    else:
        root = mount_image(image, fmt)
    check_expected(root, expected, ownership="root")
    assert all_owners(root) == {(0, 0)}


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
