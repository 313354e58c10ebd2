"""User volumes and site filesystems in a real container: where they appear, with which
flags, and every way a user may try to put one where it must not go."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.services.runtime_fixtures import (
    TEST_USER,
    Site,
    assert_refused,
    output_of,
    shifter_argv,
    shifter_env,
    uid_of,
)


@pytest.fixture
def data(runtime_site: Site) -> Path:
    """A directory of the test user's, under /tmp (which the container binds)."""
    path = runtime_site.directory("data", 0o755)
    (path / "file").write_text("host data\n")
    os.chown(path, uid_of(TEST_USER), -1)
    return path


def test_read_only_volume(runtime_site: Site, data: Path) -> None:
    script = "cat /input/file; touch /input/new 2>&1; grep ' /input ' /proc/mounts"
    result = runtime_site.run(
        f"--image={runtime_site.images.ref('main')}",
        f"--volume={data}:/input:ro",
        "sh",
        "-c",
        script,
    )
    out = output_of(result)
    assert out.startswith("host data\n")
    assert "Read-only file system" in out
    options = out.strip().splitlines()[-1].split()[3].split(",")
    assert {"ro", "nosuid", "nodev"} <= set(options)
    assert not (data / "new").exists()


def test_writable_volume_reaches_the_host(runtime_site: Site, data: Path) -> None:
    image = f"--image={runtime_site.images.ref('main')}"
    output_of(
        runtime_site.run(image, "-V", f"{data}:/output", "sh", "-c", "echo made > /output/new")
    )
    assert (data / "new").read_text() == "made\n"
    assert (data / "new").stat().st_uid == uid_of(TEST_USER)


def test_volumes_from_the_environment_and_the_command_line_replaces_them(
    runtime_site: Site, data: Path
) -> None:
    image = f"--image={runtime_site.images.ref('main')}"
    env = {"SHIFTER_VOLUME": f"{data}:/fromenv"}
    assert output_of(runtime_site.run(image, "cat", "/fromenv/file", env=env)) == "host data\n"
    result = runtime_site.run(image, "-V", f"{data}:/fromcli", "ls", "/fromenv", env=env)
    assert result.returncode != 0  # /fromenv was not mounted, so not even created


def test_volume_onto_a_directory_of_the_image(runtime_site: Site, data: Path) -> None:
    image = f"--image={runtime_site.images.ref('main')}"
    assert (
        output_of(runtime_site.run(image, "-V", f"{data}:/opt/app", "ls", "/opt/app")) == "file\n"
    )


def test_missing_volume_source(runtime_site: Site) -> None:
    result = runtime_site.run(
        f"--image={runtime_site.images.ref('main')}", f"-V{runtime_site.root}/nope:/d", "true"
    )
    assert_refused(result, "volume source", "is not a directory visible in the container")


def test_a_source_the_container_cannot_see_isassert_refused(runtime_site: Site) -> None:
    # /root exists on the host but the container has no /root: sources are looked up
    # inside the container, as in the original.
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", "-V/root:/d", "true")
    assert_refused(result, "volume source /root is not a directory visible in the container")


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("/etc/passwd", "/etc/passwd is in /etc, which is reserved for the system"),
        ("/var/log", "/var/log is in /var"),
        ("/opt", "/opt is reserved for the system"),
        ("/opt/udiImage/x", "is in /opt/udiImage"),
        ("/proc/x", "is in /proc"),
        ("/", "/ is reserved"),
    ],
)
def test_forbidden_destinations(runtime_site: Site, data: Path, target: str, reason: str) -> None:
    result = runtime_site.run(
        f"--image={runtime_site.images.ref('main')}", f"--volume={data}:{target}", "true"
    )
    assert_refused(result, reason)


@pytest.mark.parametrize("link", ["/data_link", "/up_link", "/data_link/x"])
def test_destination_escaping_through_an_image_symlink(
    runtime_site: Site, data: Path, link: str
) -> None:
    # /data_link -> /etc and /up_link -> ../../../../../../etc in the image: both resolve,
    # inside the container, to /etc, which users may not mount over.
    result = runtime_site.run(
        f"--image={runtime_site.images.ref('main')}", f"--volume={data}:{link}", "true"
    )
    assert_refused(result, "the destination resolves to /etc", "reserved for the system")


def test_var_tmp_itself_is_allowed(runtime_site: Site, data: Path) -> None:
    image = f"--image={runtime_site.images.ref('main')}"
    assert (
        output_of(runtime_site.run(image, f"-V{data}:/var/tmp", "cat", "/var/tmp/file"))
        == "host data\n"
    )


def test_a_mount_point_cannot_be_created_inside_the_image(runtime_site: Site, data: Path) -> None:
    result = runtime_site.run(
        f"--image={runtime_site.images.ref('main')}", f"-V{data}:/usr/newdir", "true"
    )
    assert_refused(result, "cannot create the mount point /usr/newdir in that location")


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("{data}:/d:rw", "unknown flag 'rw'"),
        ("{data}:/d:ro,rec", "flags are separated by ':', not ','"),
        ("{data}:/d:rec", "flag 'rec' is for site volumes only"),
        ("{data}:/d:slave", "flag 'slave' is for site volumes only"),
        ("{data}", "the container path is missing"),
        ("relative:/d", "is not absolute"),
        ("{data}:/d/../etc", "contains '..'"),
        ("{data}:/d:perNodeCache=size=0", "must be at least one byte"),
    ],
)
def test_malformed_volumes(runtime_site: Site, data: Path, spec: str, reason: str) -> None:
    result = runtime_site.run(
        f"--image={runtime_site.images.ref('main')}", "-V", spec.format(data=data), "true"
    )
    assert_refused(result, reason)


def test_per_node_cache_needs_the_privileged_path(runtime_site: Site, data: Path) -> None:
    result = runtime_site.run(
        f"--image={runtime_site.images.ref('main')}",
        f"-V{data}:/cache:perNodeCache=size=1g",
        "true",
    )
    assert_refused(result, "perNodeCache needs the privileged path")


def test_site_filesystems_appear_with_their_flags(runtime_site: Site) -> None:
    shared = runtime_site.directory("shared")
    (shared / "site-file").write_text("site data\n")
    ro = runtime_site.directory("readonly")
    runtime_site.configure(siteFs=f"{shared}:/global;{ro}:/ro:ro")
    script = "cat /global/site-file; grep -E ' /(global|ro) ' /proc/mounts"
    out = output_of(
        runtime_site.run(f"--image={runtime_site.images.ref('main')}", "sh", "-c", script)
    )
    lines = out.splitlines()
    assert lines[0] == "site data"
    flags = {line.split()[1]: set(line.split()[3].split(",")) for line in lines[1:]}
    assert {"nosuid", "nodev", "rw"} <= flags["/global"]
    assert {"nosuid", "nodev", "ro"} <= flags["/ro"]


def test_user_volume_from_a_site_filesystem(runtime_site: Site) -> None:
    shared = runtime_site.directory("shared2")
    (shared / "sub").mkdir()
    (shared / "sub" / "f").write_text("deep\n")
    runtime_site.configure(siteFs=f"{shared}:/global")
    image = f"--image={runtime_site.images.ref('main')}"
    assert output_of(runtime_site.run(image, "-V/global/sub:/mine", "cat", "/mine/f")) == "deep\n"


def test_slave_site_filesystem_sees_later_host_mounts(runtime_site: Site) -> None:
    # A site filesystem whose host mount is shared (as DataWarp's are) and the `slave`
    # flag: a mount made on the host after the container started shows up inside.
    shared = runtime_site.directory("propagating")
    subprocess.run(["mount", "--bind", str(shared), str(shared)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(shared)], check=True)
        (shared / "later").mkdir()
        runtime_site.configure(siteFs=f"{shared}:/dws:slave")
        script = "echo ready; while [ ! -e /dws/later/marker ]; do sleep 0.05; done; echo seen"
        process = subprocess.Popen(
            shifter_argv(
                [f"--image={runtime_site.images.ref('main')}", "sh", "-c", script], TEST_USER
            ),
            env=shifter_env(runtime_site.config),
            cwd=runtime_site.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n"
            subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(shared / "later")], check=True)
            (shared / "later" / "marker").write_text("x")
            assert process.wait(timeout=30) == 0
            assert process.stdout.read() == "seen\n"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            subprocess.run(["umount", str(shared / "later")], check=False)
    finally:
        subprocess.run(["umount", str(shared)], check=True)


def test_site_filesystem_onto_a_forbidden_place(runtime_site: Site) -> None:
    shared = runtime_site.directory("bad")
    runtime_site.configure(siteFs=f"{shared}:/etc")
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", "true")
    assert_refused(result, "site volume", "/etc is reserved for the system")


def test_site_filesystem_missing_on_the_host(runtime_site: Site) -> None:
    runtime_site.configure(siteFs=f"{runtime_site.root}/absent:/absent")
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", "true")
    assert_refused(result, "is not a directory on this host")


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{data}/to_root", "resolves to /: it is the container's root"),
        ("/", "volume source /: it is the container's root"),
        ("{data}/to_proc_sys", "resolves to /proc/sys: /proc/sys is in /proc"),
        ("/sys/kernel", "/sys/kernel is in /sys, which users may not bind elsewhere"),
        ("{data}/to_dev", "resolves to /dev: /dev is in /dev"),
        ("/proc/self/root", "resolves to /: it is the container's root"),
        # readlink of another user's /proc/PID/root fails (EACCES): a refusal, not exit 70
        ("/proc/1/root", "cannot look up /proc/1/root in the container: Permission denied"),
    ],
)
def test_sources_resolving_to_the_root_or_kernel_interfaces_are_refused(
    runtime_site: Site, data: Path, source: str, reason: str
) -> None:
    for name, target in (("to_root", "/"), ("to_proc_sys", "/proc/sys"), ("to_dev", "/dev")):
        (data / name).symlink_to(target)
    result = runtime_site.run(
        f"--image={runtime_site.images.ref('main')}", f"-V{source.format(data=data)}:/d", "true"
    )
    assert_refused(result, reason, "hint: users can bind directories under /tmp")


def test_a_source_in_etc_is_bound_read_only(runtime_site: Site, data: Path) -> None:
    # With a writable root, only the volume's own flag keeps /etc from the user's writes.
    runtime_site.configure(mountUdiRootWritable=1)
    (data / "to_etc").symlink_to("/etc")
    script = "touch /d/x 2>&1; grep ' /d ' /proc/self/mountinfo"
    out = output_of(
        runtime_site.run(
            f"--image={runtime_site.images.ref('main')}", f"-V{data}/to_etc:/d", "sh", "-c", script
        )
    )
    assert "Read-only file system" in out
    assert "ro" in out.strip().splitlines()[-1].split()[5].split(",")
