"""Real images from real layers: built with mksquashfs, mke2fs and mkfs.cramfs, then mounted
(loop, read-only) or extracted and checked file by file against the test-image catalog.

This module: the catalog's outcomes, owners, modes, names and links, the three formats, and
a build without root. Options, reproducible output, failures, memory and the pipe into the
tool: test_build_image_output.py. Helpers: test_build_image_support.py.

Needs root for the loop mounts and the non-root build (setpriv). Every mount is undone in
teardown.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shifter import proc
from shifter.convert import LayerError, build_image
from shifter.errors import ToolError
from shifter.ocibuild import catalog
from shifter.ocibuild.layer import Dir, File, HardLink, Symlink
from tests.root.test_build_image_support import (
    Mounter,
    all_owners,
    build_in_subprocess,
    catalog_layers,
    check_expected,
    inside,
    is_absent,
    leftovers,
    loop_mounts,
    write_layers,
)


@pytest.fixture
def mount_image(tmp_path: Path) -> Iterator[Mounter]:
    """Loop-mounted images, read-only, unmounted in teardown."""
    yield from loop_mounts(tmp_path)


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


# --- without root ---------------------------------------------------------------------------


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
