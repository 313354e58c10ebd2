"""Helpers shared by the test_build_image* modules (this module holds no tests).

Layer files from the test-image catalog or from entries, loop mounts of the built images
(each module declares its `mount_image` fixture as a one-liner over `loop_mounts`), the
check of an image tree against its catalog outcome, and a build in a child process (as
another user, with its peak memory).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from shifter import proc
from shifter.ocibuild.catalog import Expected
from shifter.ocibuild.image import BuiltImage
from shifter.ocibuild.layer import Compression, build_layer

FSTYPES = {"squashfs": "squashfs", "ext4": "ext4"}

Mounter = Callable[[Path, str], Path]


def loop_mounts(tmp_path: Path) -> Iterator[Mounter]:
    """Loop-mounts images read-only; unmounts them (and so frees the loops) when resumed."""
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
