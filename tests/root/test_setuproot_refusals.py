"""Everything setupRoot refuses, with the message it gives, and that a refusal (before or
in the middle of the build) leaves nothing mounted and no loop device attached."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.runtime_fixtures import (
    OTHER_USER,
    TEST_USER,
    Site,
    assert_refused,
    image_id,
    uid_of,
)
from tests.services.setuproot_fixtures import (
    RootSite,
    loops_backed_by,
    make_root_site,
    setup_ok,
)


@pytest.fixture
def root_site(runtime_site: Site) -> Iterator[RootSite]:
    yield from make_root_site(runtime_site)


def _refused(root: RootSite, *options: str, phrases: tuple[str, ...], **kwargs: str) -> None:
    result = root.setup(*options, **kwargs)  # type: ignore[arg-type]
    assert_refused(result, *phrases)
    assert root.mounts() == []
    assert loops_backed_by(root.images.path, root.site.root) == {}


@pytest.fixture
def user_dir() -> Iterator[Path]:
    """/tmp/<dir> (0755, the test user's) holding a directory only root may enter."""
    base = Path("/tmp") / f"shifter-setuproot-{os.getpid()}"
    (base / "closed" / "inner").mkdir(parents=True)
    base.chmod(0o755)
    (base / "closed").chmod(0o700)
    (base / "closed" / "inner").chmod(0o755)
    (base / "open").mkdir(mode=0o755)
    os.chown(base / "open", uid_of(TEST_USER), -1)
    yield base
    shutil.rmtree(base)


def test_usage_errors(root_site: RootSite) -> None:
    result = root_site.setup(image_type="id", image="main", user=None)
    assert_refused(result, "setupRoot needs the job's user (-u USER)")
    bare = root_site.setup("-U", "abc")
    assert_refused(bare, "-U abc: expected a number")
    unknown = root_site.setup("-x")
    assert_refused(unknown, "invalid option -- 'x'")


def test_missing_positional_arguments(root_site: RootSite) -> None:
    import subprocess

    from tests.services.setuproot_fixtures import SETUP_ROOT

    result = subprocess.run([str(SETUP_ROOT), "-u", TEST_USER, "id"], env=root_site.env(),
                            capture_output=True, text=True)  # fmt: skip
    assert_refused(result, "must specify image type and image identifier")


def test_a_bad_hostsfile_spec_is_refused_before_anything_is_mounted(root_site: RootSite) -> None:
    _refused(root_site, "-N", "host1/4 host2", phrases=("'host2' has no '/COUNT'",))
    _refused(root_site, "-N", "host1/0", phrases=("the count must be a number",))
    _refused(root_site, "-N", "../x/2", phrases=("characters a host name cannot have",))


def test_the_user_must_exist_agree_and_not_be_root(root_site: RootSite) -> None:
    _refused(root_site, user="no-such-user-here", phrases=("-u no-such-user-here: no such user",))
    _refused(root_site, "-U", str(uid_of(OTHER_USER)),
             phrases=(f"-u {TEST_USER} and -U {uid_of(OTHER_USER)} disagree",))  # fmt: skip
    _refused(root_site, user="root", phrases=("does not run containers as root",))
    _refused(root_site, "-G", "0", phrases=("does not run containers as root",))


def test_unknown_and_unready_images(root_site: RootSite) -> None:
    _refused(root_site, image="never-pulled", phrases=("not found", "or not ready yet"))
    # A file without its .meta is not ready (the gateway writes the .meta last).
    unready = root_site.images.path / f"{image_id('unready')}.squashfs"
    shutil.copy(root_site.images.squashfs, unready)
    try:
        _refused(root_site, image="unready", phrases=("not ready yet",))
    finally:
        unready.unlink()
    _refused(root_site, image="../../etc/passwd", image_type="id",
             phrases=("image id",))  # fmt: skip


def test_a_private_image_is_refused_even_when_its_file_is_readable(root_site: RootSite) -> None:
    squashfs = root_site.images.path / f"{image_id('private_user')}.squashfs"
    assert squashfs.stat().st_mode & 0o004  # readable by anyone
    _refused(root_site, image="private_user", phrases=("permission denied to image",))
    # The group ACL lets the test user in (through a supplementary group).
    setup_ok(root_site, image="private_group")


def test_user_volume_rules(root_site: RootSite, user_dir: Path) -> None:
    _refused(root_site, "-v", f"{user_dir}/open:/data:rec",
             phrases=("flag 'rec' is for site volumes only",))  # fmt: skip
    _refused(root_site, "-v", f"{user_dir}/open:/etc/x", phrases=("reserved for the system",))
    _refused(root_site, "-v", f"{user_dir}/open:/data:bogus", phrases=("unknown flag 'bogus'",))
    missing = ("-v: volume source", "is not a directory visible in the container")
    _refused(root_site, "-v", f"{user_dir}/missing:/data", phrases=missing)


def test_a_symlink_in_the_image_cannot_lead_a_volume_out(
    root_site: RootSite, user_dir: Path
) -> None:
    # The image's /data_link points to /etc: refused once resolved, mid-build, cleaned up.
    _refused(root_site, "-v", f"{user_dir}/open:/data_link/x",
             phrases=("resolves to /etc", "reserved for the system"))  # fmt: skip


def test_sources_are_looked_up_with_the_users_permissions(
    root_site: RootSite, user_dir: Path
) -> None:
    # Root could bind it; the user cannot reach it, so neither may their volume.
    _refused(root_site, "-v", f"{user_dir}/closed/inner:/data",
             phrases=("Permission denied",))  # fmt: skip
    setup_ok(root_site, "-v", f"{user_dir}/open:/data")


def test_per_node_cache_policy(root_site: RootSite) -> None:
    root_site.configure(perNodeCacheSizeLimit="100M")
    _refused(root_site, "-v", "/x:/cache:perNodeCache=size=320M",
             phrases=("exceeds this site's limit",))  # fmt: skip
    root_site.configure()
    root_site.per_node_cache.chmod(0o777)  # users could swap the file mkfs writes to
    _refused(root_site, "-v", "/x:/cache:perNodeCache=size=320M",
             phrases=("must be a directory owned by root and not writable by others",))  # fmt: skip
    root_site.per_node_cache.chmod(0o700)
    root_site.configure(perNodeCachePath="")
    _refused(root_site, "-v", "/x:/cache:perNodeCache=size=320M",
             phrases=("perNodeCachePath",))  # fmt: skip
    assert list(root_site.per_node_cache.iterdir()) == []


def test_unknown_module(root_site: RootSite) -> None:
    _refused(root_site, "-m", "nosuchmodule", phrases=("unknown shifter module 'nosuchmodule'",))


def test_shifter_as_root_keeps_refusing(root_site: RootSite) -> None:
    setup_ok(root_site)
    result = root_site.run(f"--image={root_site.images.ref('main')}", "true", user=None)
    assert_refused(result, "shifter does not run containers as root")


def test_sources_resolving_to_the_root_or_kernel_interfaces(
    root_site: RootSite, user_dir: Path
) -> None:
    (user_dir / "open" / "to_root").symlink_to("/")
    (user_dir / "open" / "to_proc_sys").symlink_to("/proc/sys")
    _refused(root_site, "-v", f"{user_dir}/open/to_root:/data",
             phrases=("resolves to /: it is the container's root",))  # fmt: skip
    _refused(root_site, "-v", f"{user_dir}/open/to_proc_sys:/data",
             phrases=("resolves to /proc/sys: /proc/sys is in /proc",))  # fmt: skip
    _refused(root_site, "-v", "/dev/shm:/data", phrases=("/dev/shm is in /dev",))
    # Another user's /proc/PID/root: refused cleanly (exit 1), whichever check says so.
    _refused(root_site, "-v", "/proc/1/root:/data", phrases=("-v: volume source /proc/1/root",))


def test_a_source_in_etc_is_bound_read_only(root_site: RootSite, user_dir: Path) -> None:
    # With a writable root, only the volume's own flag keeps /etc from the user's writes.
    root_site.configure(mountUdiRootWritable=1)
    (user_dir / "open" / "to_etc").symlink_to("/etc")
    setup_ok(root_site, "-v", f"{user_dir}/open/to_etc:/data")
    target = f"{root_site.site.udi_mount}/data"
    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    lines = [line.split() for line in mountinfo if line.split()[4] == target]
    assert len(lines) == 1, lines
    assert "ro" in lines[0][5].split(",")  # the mount's own flags, not the superblock's
