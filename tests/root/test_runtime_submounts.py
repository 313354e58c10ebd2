"""A directory that holds other mounts, bound into a container: a user volume, a site
filesystem, the host's /tmp. On the unprivileged path the kernel only lets such a
directory be bound together with its submounts (they are locked together in a user
namespace), so they show, and each of them gets the bind's restrictions (nosuid, nodev, ro
when asked), not only the top mount. On the privileged path a plain bind shows the
directory under the submount (as the original did) and a `rec` site filesystem restricts
every mount it brings in.

The submount is a small tmpfs, mounted without nosuid or nodev and writable by the test
user, holding a file and a device node (a copy of /dev/null): a write shows whether it is
read-only, opening the node whether it is nodev, and the container's mountinfo gives the
flags themselves.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services.runtime_fixtures import TEST_USER, Site, gid_of, output_of, uid_of
from tests.services.setuproot_fixtures import RootSite, make_root_site, setup_ok


@dataclass(frozen=True)
class Probe:
    """What a container saw at a directory with a submount at `sub`."""

    files: list[str]  # the lines of `cat top sub/inner` (or what ls found)
    write: str  # "ok" or "refused": a new file in sub
    device: str  # "ok" or "refused": opening sub/null for writing
    options: set[str] | None  # the per-mount options of sub, None when sub is no mount point


@pytest.fixture
def nested() -> Iterator[Path]:
    """A directory of the test user's under the host's /tmp, with `top`, and a tmpfs (suid,
    dev, rw, the test user's) mounted at `sub` holding `inner` and a device node `null`."""
    outer = Path(tempfile.mkdtemp(prefix="shifter-submount-"))
    sub = outer / "sub"
    try:
        outer.chmod(0o755)
        (outer / "top").write_text("outer file\n")
        sub.mkdir()
        uid, gid = uid_of(TEST_USER), gid_of(TEST_USER)
        for path in (outer, outer / "top", sub):
            os.chown(path, uid, gid)
        options = f"size=1m,mode=0755,uid={uid},gid={gid}"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "submount", str(sub)], check=True)
        try:
            (sub / "inner").write_text("submount file\n")
            os.mknod(sub / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
            (sub / "null").chmod(0o666)
            yield outer
        finally:
            subprocess.run(["umount", str(sub)], check=True)
    finally:
        shutil.rmtree(outer)


@pytest.fixture
def root_site(nested: Path, runtime_site: Site) -> Iterator[RootSite]:
    # After `nested`, so torn down (unsetupRoot) before it: while the job's container
    # holds a copy of the submount, its mount point cannot be removed.
    yield from make_root_site(runtime_site)


def _script(path: str) -> str:
    return (
        f"cat {path}/top {path}/sub/inner 2>&1; ls {path}/sub; "
        f"if touch {path}/sub/new 2>/dev/null; then echo write:ok; else echo write:refused; fi; "
        f"if (echo x > {path}/sub/null) 2>/dev/null; then echo device:ok; "
        "else echo device:refused; fi; cat /proc/self/mountinfo"
    )


def _probe(out: str, path: str) -> Probe:
    lines = out.splitlines()
    write = next(line for line in lines if line.startswith("write:"))
    device = next(line for line in lines if line.startswith("device:"))
    options = None
    for line in lines[lines.index(device) + 1 :]:
        fields = line.split(" ")
        if len(fields) > 5 and fields[4] == f"{path}/sub":
            options = set(fields[5].split(","))  # the last one: the mount on top
    return Probe(lines[: lines.index(write)], write[6:], device[7:], options)


def _run(site: Site, path: str, *options: str) -> Probe:
    image = f"--image={site.images.ref('main')}"
    return _probe(output_of(site.run(image, *options, "sh", "-c", _script(path))), path)


VISIBLE = ["outer file", "submount file", "inner", "null"]


# The unprivileged path (shifter as the test user builds its own container).


@pytest.mark.parametrize("read_only", [False, True], ids=["rw", "ro"])
def test_user_volume_over_a_submount(runtime_site: Site, nested: Path, read_only: bool) -> None:
    flag = ":ro" if read_only else ""
    probe = _run(runtime_site, "/data", f"--volume={nested}:/data{flag}")
    assert probe.files == VISIBLE
    assert probe.device == "refused"
    assert probe.options is not None
    assert {"nosuid", "nodev"} <= probe.options
    if read_only:
        assert (probe.write, "ro" in probe.options) == ("refused", True)
        assert not (nested / "sub" / "new").exists()
    else:
        assert (probe.write, "rw" in probe.options) == ("ok", True)
        assert (nested / "sub" / "new").stat().st_uid == uid_of(TEST_USER)


@pytest.mark.parametrize("read_only", [False, True], ids=["rw", "ro"])
def test_site_filesystem_over_a_submount(runtime_site: Site, nested: Path, read_only: bool) -> None:
    runtime_site.configure(siteFs=f"{nested}:/site" + (":ro" if read_only else ""))
    probe = _run(runtime_site, "/site")
    assert probe.files == VISIBLE
    assert probe.device == "refused"
    assert probe.options is not None
    assert {"nosuid", "nodev", "ro" if read_only else "rw"} <= probe.options
    assert probe.write == ("refused" if read_only else "ok")


def test_user_volume_of_a_site_filesystem_with_a_submount(runtime_site: Site, nested: Path) -> None:
    # The source is the site filesystem's copy inside the container, submount included.
    runtime_site.configure(siteFs=f"{nested}:/site")
    probe = _run(runtime_site, "/mine", "--volume=/site:/mine:ro")
    assert probe.files == VISIBLE
    assert (probe.write, probe.device) == ("refused", "refused")
    assert probe.options is not None
    assert {"nosuid", "nodev", "ro"} <= probe.options


def test_host_tmp_shows_a_submount_restricted(runtime_site: Site, nested: Path) -> None:
    probe = _run(runtime_site, str(nested))
    assert probe.files == VISIBLE
    assert (probe.write, probe.device) == ("ok", "refused")
    assert probe.options is not None
    assert {"nosuid", "nodev", "rw"} <= probe.options


# The privileged path (setupRoot builds the container as root, shifter enters it).


def test_setuproot_volume_over_a_submount(root_site: RootSite, nested: Path) -> None:
    # /tmp is a plain bind on this path: the volume's source is the directory under the
    # submount (empty), as with the original.
    setup_ok(root_site, "-v", f"{nested}:/data:ro")
    probe = _run(root_site.site, "/data", f"--volume={nested}:/data:ro")
    assert probe.files[0] == "outer file"
    assert "submount file" not in probe.files
    assert (probe.write, probe.device, probe.options) == ("refused", "refused", None)


@pytest.mark.parametrize("recursive", [False, True], ids=["plain", "rec"])
def test_setuproot_site_filesystem_over_a_submount(
    root_site: RootSite, nested: Path, recursive: bool
) -> None:
    root_site.configure(siteFs=f"{nested}:/site:ro" + (":rec" if recursive else ""))
    setup_ok(root_site)
    probe = _run(root_site.site, "/site")
    assert (probe.write, probe.device) == ("refused", "refused")
    if recursive:
        assert probe.files == VISIBLE
        assert probe.options is not None
        assert {"nosuid", "nodev", "ro"} <= probe.options
    else:
        assert probe.files[0] == "outer file"
        assert "submount file" not in probe.files
        assert probe.options is None
