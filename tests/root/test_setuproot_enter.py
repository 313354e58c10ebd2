"""setupRoot builds a job's container as root; `shifter`, run by the job's user, enters it
(fast, without building anything) when it asks for the same image, volumes and modules,
and builds its own container otherwise.

Proof of entering, from inside: the image is a kernel squashfs (the loop device), not
squashfuse, the tree holds setupRoot's enter record, and no squashfuse process starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.services.leftovers import processes_mentioning
from tests.services.runtime_fixtures import (
    SHIFTER,
    TEST_USER,
    RuntimeImages,
    Site,
    container_env_from_exactly,
    gid_of,
    output_of,
    shifter_env,
    uid_of,
)
from tests.services.setuproot_fixtures import (
    RootSite,
    make_ext4_image,
    make_root_site,
    setup_ok,
)


@pytest.fixture
def root_site(runtime_site: Site) -> Iterator[RootSite]:
    yield from make_root_site(runtime_site)


@pytest.fixture(scope="session")
def ext4_image(runtime_images: RuntimeImages) -> str:
    return make_ext4_image(runtime_images)


def _image_filesystem(out: str) -> str:
    """The filesystem type the container's /bin comes from (its mountinfo line)."""
    for line in out.splitlines():
        fields = line.split(" ")
        if len(fields) > 6 and fields[4] == "/bin":
            return fields[fields.index("-", 6) + 1]
    raise AssertionError(f"no /bin mount in {out}")


@pytest.fixture
def user_tmp() -> Iterator[Path]:
    """A directory under the host's /tmp (which the container binds), the test user's."""
    path = Path(tempfile.mkdtemp(prefix="shifter-setuproot-vol-"))
    os.chown(path, uid_of(TEST_USER), gid_of(TEST_USER))
    (path / "from-host").write_text("volume content\n")
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def test_shifter_enters_the_setuproot_container(root_site: RootSite) -> None:
    setup_ok(root_site)
    image = f"--image={root_site.images.ref('main')}"
    # The installed launcher runs Python isolated (-I ignores PYTHONPROFILEIMPORTTIME):
    # its script runs with -X importtime to show what it loads.
    result = _traced_run(root_site, image, "cat", "/proc/self/mountinfo")
    out = output_of(result)
    assert _image_filesystem(out) == "squashfs"  # the kernel's, on the loop device
    # The fast way: decided without loading the configuration model.
    assert "shifter.runtime.job.enter" in result.stderr
    assert "shifter.runtime.config_" not in result.stderr
    assert "shifter.runtime.rootfs.build" not in result.stderr
    listing = output_of(root_site.run(image, "ls", "/var"))
    assert "shifterEnter.dat" in listing.split()
    assert processes_mentioning(str(root_site.images.path)) == []


def test_the_signature_file_is_the_originals(root_site: RootSite) -> None:
    setup_ok(root_site)
    out = output_of(root_site.run(f"--image={root_site.images.ref('main')}", "cat",
                                  "/var/shifterConfig.json"))  # fmt: skip
    assert out == (
        f'{{"identifier":"{root_site.images.id("main")}","user":"{TEST_USER}",'
        '"volMap":"","modules":""}\n'
    )


def test_verbose_takes_the_full_way_and_still_enters(root_site: RootSite) -> None:
    setup_ok(root_site)
    result = root_site.run("-v", f"--image={root_site.images.ref('main')}",
                           "cat", "/proc/self/mountinfo")  # fmt: skip
    assert _image_filesystem(output_of(result)) == "squashfs"
    assert "entering the setupRoot container" in result.stderr


def test_the_environment_variables_of_a_job_enter(root_site: RootSite) -> None:
    # What `srun shifter` inherits from the batch system.
    setup_ok(root_site)
    env = {"SHIFTER_IMAGETYPE": "id", "SHIFTER_IMAGE": root_site.images.id("main")}
    out = output_of(root_site.run("cat", "/proc/self/mountinfo", env=env))
    assert _image_filesystem(out) == "squashfs"


@pytest.mark.parametrize("locale", [{}, {"LANG": "C"}])
def test_the_callers_environment_exactly_on_entering(
    root_site: RootSite, locale: dict[str, str]
) -> None:
    # Python's locale coercion (PEP 538) must not leak LC_CTYPE=C.UTF-8 in this way either.
    setup_ok(root_site)
    image = f"--image={root_site.images.ref('main')}"
    assert _image_filesystem(output_of(root_site.run(image, "cat", "/proc/self/mountinfo"))) == (
        "squashfs"
    )  # this request enters
    env = container_env_from_exactly(root_site.site.config, locale, image)
    assert "LC_CTYPE" not in env
    assert {name: env[name] for name in locale} == locale


def test_a_different_request_builds_its_own_container(root_site: RootSite, user_tmp: Path) -> None:
    root_site.configure("module_mpich_siteEnv=MPICH=1")
    setup_ok(root_site, "-v", f"{user_tmp}:/data", "-m", "mpich")
    image = f"--image={root_site.images.ref('main')}"
    same = [f"--volume={user_tmp}:/data", "--module=mpich"]
    entered = output_of(root_site.run(image, *same, "cat", "/proc/self/mountinfo"))
    assert _image_filesystem(entered) == "squashfs"
    assert "MPICH=1" in output_of(root_site.run(image, *same, "env"))
    for other in (
        [f"--volume={user_tmp}:/data"],  # the default modules: none
        [f"--volume={user_tmp}:/elsewhere", "--module=mpich"],
        ["--module=mpich"],
    ):
        out = output_of(root_site.run(image, *other, "cat", "/proc/self/mountinfo"))
        assert _image_filesystem(out) == "fuse.squashfuse", other
    plain = root_site.images.ref("plain")  # another id of the same file
    out = output_of(root_site.run(f"--image={plain}", *same, "cat", "/proc/self/mountinfo"))
    assert _image_filesystem(out) == "fuse.squashfuse"


def test_another_user_builds_their_own_container(root_site: RootSite) -> None:
    setup_ok(root_site)
    result = root_site.run(f"--image={root_site.images.ref('main')}", "cat",
                           "/proc/self/mountinfo", user="shiftertest2")  # fmt: skip
    assert _image_filesystem(output_of(result)) == "fuse.squashfuse"


def test_volumes_site_filesystems_and_etc_path_appear(root_site: RootSite, user_tmp: Path) -> None:
    site_dir = root_site.site.directory("site-fs")
    (site_dir / "site-file").write_text("from the site\n")
    etc = root_site.site.directory("etc-files")
    (etc / "site-motd").write_text("welcome\n")
    (etc / "site-motd").chmod(0o644)
    root_site.configure(f"siteFs={site_dir}:/site", etcPath=etc)
    setup_ok(root_site, "-v", f"{user_tmp}:/data:ro")
    image = f"--image={root_site.images.ref('main')}"
    out = output_of(root_site.run(image, f"--volume={user_tmp}:/data:ro", "sh", "-c",
                                  "cat /data/from-host /site/site-file /etc/site-motd; "
                                  "touch /data/new 2>&1 || echo read-only"))  # fmt: skip
    assert out.splitlines()[:3] == ["volume content", "from the site", "welcome"]
    assert "read-only" in out


def test_privileges_are_dropped_as_on_the_unprivileged_path(root_site: RootSite) -> None:
    setup_ok(root_site)
    image = f"--image={root_site.images.ref('main')}"
    out = output_of(root_site.run(image, "cat", "/proc/self/status"))
    status = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert status[name] == "0000000000000000", name
    assert status["NoNewPrivs"] == "1"
    assert status["Uid"].split() == [str(uid_of(TEST_USER))] * 4
    assert status["Groups"].split() == [str(gid_of(TEST_USER)), "65534"]
    suid = output_of(root_site.run(image, "/usr/bin/id-suid"))
    assert "euid" not in suid
    assert suid.startswith(f"uid={uid_of(TEST_USER)}")


def test_command_workdir_environment_and_exit_status(root_site: RootSite) -> None:
    setup_ok(root_site)
    image = f"--image={root_site.images.ref('main')}"
    assert output_of(root_site.run(image)) == "entry cmd\n"  # the image's ENTRY and CMD
    assert output_of(root_site.run(image, "-w", "pwd")) == "/work\n"
    env = output_of(root_site.run(image, "--env=EXTRA=1", "env")).splitlines()
    assert "IMAGE_VAR=from-image" in env
    assert "EXTRA=1" in env
    assert f"SHIFTER_IMAGE={root_site.images.id('main')}" in env
    assert root_site.run(image, "sh", "-c", "exit 7").returncode == 7
    missing = root_site.run(image, "no-such-command")
    assert missing.returncode == 127
    assert "no-such-command: No such file or directory" in missing.stderr


def test_sixteen_shifters_enter_at_once(root_site: RootSite) -> None:
    setup_ok(root_site)
    image = f"--image={root_site.images.ref('main')}"

    def one(index: int) -> subprocess.CompletedProcess[str]:
        return root_site.run(image, "sh", "-c", f"echo {index}; grep -c . /etc/os-release")

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(16)))
    for index, result in enumerate(results):
        assert output_of(result) == f"{index}\n2\n"
    assert processes_mentioning(str(root_site.images.path)) == []


def test_ext4_images_work_on_this_path(root_site: RootSite, ext4_image: str) -> None:
    setup_ok(root_site, image=ext4_image)
    image = f"--image={root_site.images.ref(ext4_image)}"
    out = output_of(root_site.run(image, "sh", "-c",
                                  "cat /etc/os-release; cat /proc/self/mountinfo"))  # fmt: skip
    assert 'NAME="Shifter Test Image"' in out
    assert _image_filesystem(out) == "ext4"
    # Without setupRoot the user's own launch cannot mount ext4: it says so.
    assert root_site.unsetup().returncode == 0
    refused = root_site.run(image, "true")
    assert refused.returncode == 1
    assert "only squashfs" in refused.stderr


def test_per_node_cache_is_an_xfs_filesystem_of_the_requested_size(root_site: RootSite) -> None:
    volume = "/ignored:/cache:perNodeCache=size=320M"
    setup_ok(root_site, "-v", volume)
    assert list(root_site.per_node_cache.iterdir()) == []  # unlinked once mounted
    image = f"--image={root_site.images.ref('main')}"
    out = output_of(root_site.run(image, f"--volume={volume}", "sh", "-c",
                                  "stat -f -c '%T %b %S' /cache; echo data > /cache/f; "
                                  "cat /cache/f; stat -c '%u' /cache"))  # fmt: skip
    kind, blocks, block_size, written, owner = out.split()
    assert kind == "xfs"
    total = int(blocks) * int(block_size)
    assert 0.75 * 320 * 2**20 < total <= 320 * 2**20  # xfs keeps its (64 MiB) log inside
    assert (written, owner) == ("data", str(uid_of(TEST_USER)))
    device = next(line.split()[2] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if line.split()[4].endswith("/cache"))  # fmt: skip
    sizes = {
        path: int((path / "size").read_text()) * 512
        for path in Path("/sys/block").glob("loop*")
        if (path / "dev").read_text().strip() == device
    }
    assert list(sizes.values()) == [320 * 2**20]


def test_module_copy_path_and_userhook_in_the_entered_container(root_site: RootSite) -> None:
    module_files = root_site.site.directory("hookmod")
    out = root_site.site.directory("out", 0o777)
    (module_files / "check.sh").write_text(f"id -u > {out}/ran; pwd >> {out}/ran\n")
    root_site.configure(
        f"module_check_copyPath={module_files}",
        "module_check_userhook=/opt/udiImage/modules/check/check.sh",
        "module_check_siteEnvPrepend=PATH=/opt/udiImage/modules/check",
    )
    setup_ok(root_site, "-m", "check")
    image = f"--image={root_site.images.ref('main')}"
    env = output_of(root_site.run(image, "--module=check", "--workdir=/opt", "env"))
    assert "PATH=/opt/udiImage/modules/check:/usr/bin:/bin" in env.splitlines()
    assert (out / "ran").read_text() == f"{uid_of(TEST_USER)}\n/opt\n"
    mounts = output_of(root_site.run(image, "--module=check", "cat", "/proc/self/mountinfo"))
    assert _image_filesystem(mounts) == "squashfs"  # entered, not built


def _traced_run(root_site: RootSite, *args: str) -> subprocess.CompletedProcess[str]:
    """`shifter ARGS` as the test user with Python's import trace on stderr."""
    traced = [sys.executable, "-X", "importtime", str(SHIFTER), *args]
    return subprocess.run(
        ["/usr/sbin/runuser", "-u", TEST_USER, "--", *traced],
        env=shifter_env(root_site.site.config), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_changed_config_is_read_again_before_entering(root_site: RootSite) -> None:
    setup_ok(root_site)
    image = f"--image={root_site.images.ref('main')}"
    config = root_site.site.config
    config.write_text(config.read_text())  # same content, new version (mtime, ctime)
    result = _traced_run(root_site, image, "cat", "/proc/self/mountinfo")
    assert _image_filesystem(output_of(result)) == "squashfs"  # still the job's container
    assert "shifter.runtime.config.parse" in result.stderr  # but decided the full way


def test_an_unsafe_config_is_refused_even_with_a_container_to_enter(root_site: RootSite) -> None:
    setup_ok(root_site)
    root_site.site.config.chmod(0o666)
    try:
        result = root_site.run(f"--image={root_site.images.ref('main')}", "true")
    finally:
        root_site.site.config.chmod(0o644)  # unsetupRoot checks it too
    assert result.returncode == 1
    assert "must not be writable by group or others" in result.stderr


def test_the_hostsfile_lists_each_host_tasks_per_node_times(root_site: RootSite) -> None:
    # Spec item 189: 'host1/24 host2/24 host3/24' gives 72 lines, in order.
    setup_ok(root_site, "-N", "host1/24 host2/24 host3/24")
    image = f"--image={root_site.images.ref('main')}"
    lines = output_of(root_site.run(image, "cat", "/var/hostsfile")).splitlines()
    assert lines == ["host1"] * 24 + ["host2"] * 24 + ["host3"] * 24
