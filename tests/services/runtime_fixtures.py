"""Fixtures for the runtime tests: real images, a site (udiRoot.conf and its directories),
and `shifter` run as an ordinary test account (scripts/install.sh creates them).

- `runtime_images` (session): an imagePath holding a squashfs image built with mksquashfs
  from a tree of busybox applets plus a setuid-root copy of /usr/bin/id with its
  libraries (`/usr/bin/id-suid`: `id` prints `euid=0(root)` when the setuid bit works),
  and several `.meta` files for that one image file (ids `main`, `plain`, `private_user`,
  `private_group`, `ext4`); the tree itself serves as a `local:` image.
- `runtime_site`: a fresh site directory (world-searchable, as users must reach it): udiMount,
  loopMount, a root-owned udiRoot.conf (`site.configure(...)` rewrites it) and `site.run(...)`
  to run `shifter` as a test user. On teardown it checks that nothing is left behind: no
  mount of the site or the images on the host, no squashfuse serving the images.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from shifter.image.meta import format_meta
from shifter.runtime.identity.userdir import user_dir_path
from tests.services.leftovers import process_running, processes_mentioning, run_as_group

TEST_USER = "shiftertest1"  # member of TEST_GROUP
OTHER_USER = "shiftertest2"
TEST_GROUP = "shiftertestgrp"
SHIFTER = Path(sys.executable).parent / "shifter"
APPLETS = (
    "sh", "cat", "id", "ls", "echo", "env", "pwd", "sleep", "true", "false", "grep", "stat",
    "readlink", "touch", "mkdir", "head", "wc", "test", "kill", "mount", "tr",
)  # fmt: skip
IMAGE_NAMES = ("main", "plain", "private_user", "private_group", "ext4")
BIG_FILE_SIZE = 6 * 1024 * 1024  # above the 5 MiB copy limit: bind-mounted, not copied
LEAK_WAIT_S = 10.0


def image_id(name: str) -> str:
    return hashlib.sha256(f"shifter-runtime-test-{name}".encode()).hexdigest()


def uid_of(user: str) -> int:
    return pwd.getpwnam(user).pw_uid


def gid_of(group: str) -> int:
    return grp.getgrnam(group).gr_gid


def _copy_with_libraries(binary: str, root: Path, name: str) -> Path:
    """Copy `binary` to `root/<name>` and the shared libraries it needs to the same paths
    under `root` (ldd's answer), so it runs inside an image built from `root`."""
    target = root / name.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(binary, target)
    output = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    for line in output.splitlines():
        words = line.split()
        path = next((w for w in words if w.startswith("/")), None)
        if path is None:
            continue
        copy = root / path.lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, copy)  # follows symlinks: the library itself
    return target


def build_tree(root: Path) -> None:
    """The test image's content (see the module docstring)."""
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    etc = root / "etc"
    (etc / "ssh").mkdir(parents=True)
    (etc / "os-release").write_text('NAME="Shifter Test Image"\nID=shiftertest\n')
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nimageuser:x:4242:4242::/:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nimagegroup:x:4242:\n")
    (etc / "image-only.conf").write_text("from the image\n")
    (etc / "ssh" / "ssh_config").write_text("# the image's, hidden by the site\n")
    (etc / "image.d").mkdir()
    (etc / "image.d" / "entry").write_text("image directory entry\n")
    (root / "work").mkdir()
    (root / "opt" / "app").mkdir(parents=True)
    (root / "opt" / "app" / "hello").write_text("hello from opt\n")
    (root / "var" / "lib" / "image-state").mkdir(parents=True)
    (root / "usr" / "share").mkdir(parents=True)
    with open(root / "usr" / "share" / "big.bin", "wb") as file:
        file.truncate(BIG_FILE_SIZE)
    (root / "data_link").symlink_to("/etc")  # an image symlink a volume must not follow out
    (root / "up_link").symlink_to("../../../../../../etc")
    suid = _copy_with_libraries("/usr/bin/id", root, "/usr/bin/id-suid")
    os.chown(suid, 0, 0)
    suid.chmod(0o4755)
    for path in (root, *root.rglob("*")):
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))


@dataclass(frozen=True)
class RuntimeImages:
    """The session's images: `path` is the imagePath, `tree` the local: image directory."""

    path: Path
    tree: Path
    squashfs: Path

    def id(self, name: str) -> str:
        return image_id(name)

    def ref(self, name: str) -> str:
        return f"id:{image_id(name)}"


def _write_metas(image_path: Path) -> None:
    common = {"env": ["PATH=/usr/bin:/bin", "IMAGE_VAR=from-image"], "workdir": "/work"}
    metas = {
        "main": format_meta("squashfs", entrypoint=["/bin/echo", "entry"], cmd=["cmd"], **common),
        "plain": format_meta("squashfs", env=["PATH=/bin"]),
        "private_user": format_meta("squashfs", user_acl=[uid_of(OTHER_USER)], **common),
        "private_group": format_meta("squashfs", group_acl=[gid_of(TEST_GROUP)], **common),
        "ext4": format_meta("ext4", **common),
    }
    for name, (text, _warnings) in metas.items():
        (image_path / f"{image_id(name)}.meta").write_text(text)


@pytest.fixture(scope="session")
def runtime_images() -> Iterator[RuntimeImages]:
    for user in (TEST_USER, OTHER_USER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            pytest.fail(f"test account {user} is missing: run sudo scripts/install.sh")
    base = Path(tempfile.mkdtemp(prefix="shifter-rt-images-"))
    try:
        base.chmod(0o755)
        tree = base / "tree"
        build_tree(tree)
        image_path = base / "images"
        image_path.mkdir(mode=0o755)
        squashfs = image_path / f"{image_id('main')}.squashfs"
        subprocess.run(
            ["mksquashfs", str(tree), str(squashfs), "-noappend", "-all-root", "-no-xattrs",
             "-quiet", "-no-progress"],
            check=True, capture_output=True,
        )  # fmt: skip
        squashfs.chmod(0o644)
        for name in IMAGE_NAMES[1:]:
            os.link(squashfs, image_path / f"{image_id(name)}.squashfs")
        (image_path / f"{image_id('ext4')}.ext4").write_bytes(b"")
        _write_metas(image_path)
        yield RuntimeImages(image_path, tree, squashfs)
    finally:
        shutil.rmtree(base)


@dataclass
class Site:
    """One test's site: its directories, its udiRoot.conf, and a way to run shifter."""

    root: Path
    images: RuntimeImages

    @property
    def config(self) -> Path:
        return self.root / "udiRoot.conf"

    @property
    def udi_mount(self) -> Path:
        return self.root / "udiMount"

    @property
    def loop_mount(self) -> Path:
        return self.root / "loopMount"

    def directory(self, name: str, mode: int = 0o755) -> Path:
        """A fresh directory in the site, owned by root, with `mode`."""
        path = self.root / name
        path.mkdir(parents=True)
        path.chmod(mode)
        return path

    def configure(self, *lines: str, **keys: object) -> Path:
        """Write udiRoot.conf: the site's paths, `populateEtcDynamically=1`, then `keys`
        (key=value, replacing the defaults) and extra `lines`."""
        settings: dict[str, object] = {
            "udiMount": self.udi_mount,
            "loopMount": self.loop_mount,
            "imagePath": self.images.path,
            "rootfsType": "tmpfs",
            "populateEtcDynamically": 1,
            "mountUdiRootWritable": 0,
        }
        settings.update(keys)
        text = "".join(f"{key}={value}\n" for key, value in settings.items())
        self.config.write_text(text + "".join(f"{line}\n" for line in lines))
        os.chown(self.config, 0, 0)
        self.config.chmod(0o644)
        return self.config

    def run(
        self,
        *args: str,
        user: str | None = TEST_USER,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        input: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """`shifter ARGS` as `user` (runuser; None: as root), with SHIFTER_CONFIG set."""
        return run_as_group(shifter_argv(args, user), env=shifter_env(self.config, env),
                            cwd=cwd or self.root, input=input, timeout=timeout)  # fmt: skip


def shifter_argv(args: Sequence[str], user: str | None) -> list[str]:
    argv = [str(SHIFTER), *args]
    return argv if user is None else ["/usr/sbin/runuser", "-u", user, "--", *argv]


def shifter_env(config: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "SHIFTER_CONFIG": str(config), **(extra or {})}


def container_env_from_exactly(
    config: Path, variables: Mapping[str, str], *args: str
) -> dict[str, str]:
    """The environment `env` prints in the container when the test user runs `shifter
    ARGS env` with exactly `variables` (and PATH, SHIFTER_CONFIG): `env -i` after runuser,
    so that neither runuser nor PAM adds anything."""
    given = {"PATH": "/usr/bin:/bin", "SHIFTER_CONFIG": str(config), **variables}
    argv = ["/usr/sbin/runuser", "-u", TEST_USER, "--", "env", "-i",
            *(f"{name}={value}" for name, value in given.items()), str(SHIFTER), *args, "env"]
    result = subprocess.run(argv, env={}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a run that must have succeeded (its stderr in the failure message)."""
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_refused(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    """A run that shifter refused (exit 1) with each of `phrases` in its message."""
    assert result.returncode == 1, result.stdout
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def host_mounts_under(*paths: Path) -> list[str]:
    """Lines of the host's mount table that mention any of `paths`."""
    text = Path("/proc/self/mounts").read_text()
    return [line for line in text.splitlines() if any(str(p) in line for p in paths)]


def remove_user_dirs(*users: str) -> None:
    """Remove what the users' launches left in their directories on the node (the shared
    user namespace's record, remembered userhook verdicts: runtime/identity/userdir.py)."""
    for user in users:
        shutil.rmtree(user_dir_path(uid_of(user)), ignore_errors=True)


def wait_until_no_process_mentions(text: str, timeout: float = LEAK_WAIT_S) -> list[int]:
    """Wait (squashfuse exits only once the kernel aborts its connection) and return the
    PIDs still running with `text` in their command line."""
    deadline = time.monotonic() + timeout
    while True:
        running = [pid for pid in processes_mentioning(text) if process_running(pid)]
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.05)


@pytest.fixture
def runtime_site(runtime_images: RuntimeImages) -> Iterator[Site]:
    root = Path(tempfile.mkdtemp(prefix="shifter-rt-site-"))
    root.chmod(0o755)
    site = Site(root, runtime_images)
    site.directory("udiMount")
    site.directory("loopMount")
    site.configure()
    yield site
    leaked = host_mounts_under(root, runtime_images.path, runtime_images.tree)
    if leaked:  # never delete through a mount
        pytest.fail(f"mounts left on the host: {leaked}")
    shutil.rmtree(root)
    for text in (str(runtime_images.path), str(root)):
        assert wait_until_no_process_mentions(text) == []
    remove_user_dirs(TEST_USER, OTHER_USER)
