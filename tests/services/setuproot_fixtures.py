"""Fixtures for the privileged path: setupRoot and unsetupRoot as root on a test site (its
own udiMount and loopMount under a temp directory, never /var/udiMount), `shifter` as the
test user entering what setupRoot built, and a cleanup that cannot leak.

- `root_site`: a `runtime_site` (tests/services/runtime_fixtures.py) with a perNodeCache
  directory, and `setup(...)`, `unsetup()`, `run(...)`. On teardown, whatever the test
  did: unsetupRoot, then an independent sweep (`umount -l` of anything still mounted under
  the site, with util-linux, not our code), then a wait until no loop device is backed by
  a file of the site or the images; the test fails if anything had to be swept or stays.
- `ext4_image` (session): an ext4 image of the test tree (mkfs.ext4 -d) in the imagePath.

A test module declares the fixtures it uses as one-liners over `make_root_site`,
`make_second_root_site` and `make_ext4_image` (conftest.py registers other helpers'
fixture modules; this one stays out of that shared file).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shifter.image.meta import format_meta
from tests.services.runtime_fixtures import (
    TEST_USER,
    RuntimeImages,
    Site,
    host_mounts_under,
    image_id,
)

BIN = Path(sys.executable).parent
SETUP_ROOT = BIN / "setupRoot"
UNSETUP_ROOT = BIN / "unsetupRoot"
EXT4_NAME = "setuproot-ext4"
LOOP_WAIT_S = 10.0


def loops_backed_by(*trees: Path) -> dict[str, str]:
    """Loop device -> backing file, for every bound device whose file is under `trees`."""
    found = {}
    for entry in Path("/sys/block").iterdir():
        backing = entry / "loop" / "backing_file"
        try:
            path = backing.read_text().strip()
        except OSError:
            continue
        if any(path.startswith(f"{tree}/") for tree in trees):
            found[f"/dev/{entry.name}"] = path
    return found


def wait_for_no_loops(*trees: Path, timeout: float = LOOP_WAIT_S) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        left = loops_backed_by(*trees)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def mount_points_under(tree: Path) -> list[str]:
    """Mount points at or below `tree` in the host's table, in mount order."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split(" ")[4].replace("\\040", " ")
        if point == str(tree) or point.startswith(f"{tree}/"):
            points.append(point)
    return points


def sweep(tree: Path) -> list[str]:
    """Lazily unmount (util-linux) everything under `tree`; what had to be swept."""
    swept = []
    for _ in range(20):
        points = mount_points_under(tree)
        if not points:
            break
        for point in reversed(points):
            subprocess.run(["umount", "-l", point], capture_output=True)
            swept.append(point)
    return swept


@dataclass
class RootSite:
    """A test site for setupRoot: `site` is the underlying runtime site."""

    site: Site

    @property
    def images(self) -> RuntimeImages:
        return self.site.images

    @property
    def per_node_cache(self) -> Path:
        return self.site.root / "pnc"

    def configure(self, *lines: str, **keys: object) -> Path:
        keys.setdefault("perNodeCachePath", self.per_node_cache)
        return self.site.configure(*lines, **keys)

    def env(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "SHIFTER_CONFIG": str(self.site.config)}

    def setup(
        self,
        *options: str,
        image: str = "main",
        user: str | None = TEST_USER,
        image_type: str = "id",
    ) -> subprocess.CompletedProcess[str]:
        """`setupRoot [-u USER] OPTIONS TYPE ID` as root."""
        identity = ["-u", user] if user else []
        reference = image_id(image) if image_type == "id" else image
        argv = [str(SETUP_ROOT), *identity, *options, image_type, reference]
        return subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=120)

    def unsetup(self, *options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(UNSETUP_ROOT), *options],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def run(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        """`shifter ARGS` as the test user (see Site.run)."""
        return self.site.run(*args, **kwargs)  # type: ignore[arg-type]

    def mounts(self) -> list[str]:
        return mount_points_under(self.site.root)

    def loops(self) -> dict[str, str]:
        return loops_backed_by(self.images.path, self.site.root)


def setup_ok(root: RootSite, *options: str, image: str = "main") -> None:
    result = root.setup(*options, image=image)
    assert result.returncode == 0, result.stderr


def make_root_site(runtime_site: Site) -> Iterator[RootSite]:
    root = RootSite(runtime_site)
    runtime_site.directory("pnc", 0o700)
    root.configure()
    yield root
    root.unsetup()
    swept = sweep(runtime_site.root)
    left = wait_for_no_loops(root.images.path, runtime_site.root)
    assert swept == [], f"unsetupRoot left mounts behind: {swept}"
    assert left == {}, f"loop devices left attached: {left}"


def make_ext4_image(runtime_images: RuntimeImages) -> str:
    """The name (for `image_id`) of an ext4 image of the test tree."""
    path = runtime_images.path / f"{image_id(EXT4_NAME)}.ext4"
    subprocess.run(
        ["mkfs.ext4", "-q", "-d", str(runtime_images.tree), str(path), "64M"],
        check=True,
        capture_output=True,
    )
    path.chmod(0o644)
    text, _ = format_meta("ext4", env=["PATH=/usr/bin:/bin"], workdir="/work")
    (runtime_images.path / f"{image_id(EXT4_NAME)}.meta").write_text(text)
    return EXT4_NAME


def no_mounts_left(root: RootSite) -> bool:
    return not root.mounts() and not host_mounts_under(root.images.path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def make_second_root_site(runtime_images: RuntimeImages) -> Iterator[RootSite]:
    """Another site (its own udiMount and loopMount) on the same images."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="shifter-rt-site2-"))
    path.chmod(0o755)
    site = Site(path, runtime_images)
    for name in ("udiMount", "loopMount"):
        site.directory(name)
    root = RootSite(site)
    site.directory("pnc", 0o700)
    root.configure()
    yield root
    root.unsetup()
    swept = sweep(path)
    if not swept:
        shutil.rmtree(path)
    assert swept == [], f"unsetupRoot left mounts behind: {swept}"
