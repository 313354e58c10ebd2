"""unsetupRoot takes everything down (mounts, loop devices, perNodeCache files), also with
processes still inside, and setupRoot/unsetupRoot cycles leak nothing; one loop device per
image, however many containers use it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.runtime_fixtures import (
    TEST_USER,
    RuntimeImages,
    Site,
    gid_of,
    output_of,
    uid_of,
)
from tests.services.setuproot_fixtures import (
    RootSite,
    loops_backed_by,
    make_root_site,
    make_second_root_site,
    setup_ok,
    wait_for_no_loops,
)

CYCLES = 200


@pytest.fixture
def root_site(runtime_site: Site) -> Iterator[RootSite]:
    yield from make_root_site(runtime_site)


@pytest.fixture
def second_root_site(runtime_images: RuntimeImages) -> Iterator[RootSite]:
    yield from make_second_root_site(runtime_images)


def _start_inside(root: RootSite, script: str) -> subprocess.Popen[str]:
    argv = [
        "setpriv", f"--reuid={uid_of(TEST_USER)}", f"--regid={gid_of(TEST_USER)}",
        "--init-groups", str(Path(sys.executable).parent / "shifter"),
        f"--image={root.images.ref('main')}", "sh", "-c", script,
    ]  # fmt: skip
    pipe = subprocess.PIPE
    return subprocess.Popen(argv, env=root.env(), stdin=pipe, stdout=pipe, stderr=pipe, text=True)


def _wait_for_line(process: subprocess.Popen[str], expected: str) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line == f"{expected}\n", process.stderr.read() if process.stderr else line


def test_unsetuproot_leaves_nothing_behind(root_site: RootSite) -> None:
    setup_ok(root_site, "-v", "/x:/cache:perNodeCache=size=320M")
    assert len(root_site.mounts()) > 10
    assert len(root_site.loops()) == 2  # the image and the perNodeCache
    result = root_site.unsetup()
    assert result.returncode == 0, result.stderr
    assert root_site.mounts() == []
    assert wait_for_no_loops(root_site.images.path, root_site.site.root) == {}
    assert list(root_site.per_node_cache.iterdir()) == []
    again = root_site.unsetup()  # idempotent
    assert (again.returncode, again.stderr) == (0, "")


def test_lazy_detach_with_a_process_still_inside(root_site: RootSite) -> None:
    setup_ok(root_site)
    script = "echo started; read line; cat /etc/os-release; ls /opt/app"
    inside = _start_inside(root_site, script)
    try:
        _wait_for_line(inside, "started")
        result = root_site.unsetup("-v")
        assert result.returncode == 0, result.stderr
        assert root_site.mounts() == []  # gone from the host at once
        assert "stays attached until its last user is gone" in result.stdout
        assert len(root_site.loops()) == 1  # the process still holds the image
        # The process goes on in its own copy of the tree, image included.
        out, _ = inside.communicate("go\n", timeout=30)
        assert out.split("\n", 2)[2] == "hello\n"
        assert 'NAME="Shifter Test Image"' in out
    finally:
        inside.kill()
        inside.wait()
    assert wait_for_no_loops(root_site.images.path) == {}


def _sleep_in_own_mount_namespace(seconds: int) -> subprocess.Popen[bytes]:
    """`sleep` in a mount namespace of its own with private propagation, once it runs."""
    own = os.readlink("/proc/self/ns/mnt")
    holder = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sleep", str(seconds)]
    )
    deadline = time.monotonic() + 30
    while os.readlink(f"/proc/{holder.pid}/ns/mnt") == own or Path(
        f"/proc/{holder.pid}/comm"
    ).read_text() != "sleep\n":
        assert time.monotonic() < deadline, "unshare did not start sleep"
        time.sleep(0.02)
    return holder


def test_copies_in_another_mount_namespace_are_named(root_site: RootSite) -> None:
    setup_ok(root_site)
    # A process that makes its own mount namespace while the container is up (private
    # propagation: the host's detach does not reach its copy).
    holder = _sleep_in_own_mount_namespace(600)
    try:
        result = root_site.unsetup()
        assert result.returncode == 1, result.stderr
        assert "copies of the container's mounts live on in other mount namespaces" in (
            result.stderr
        )
        assert f"held by processes {holder.pid} (sleep)" in result.stderr
        assert root_site.mounts() == []  # this namespace's are gone all the same
        assert len(root_site.loops()) == 1  # the copy holds the image
    finally:
        holder.kill()
        holder.wait()
    again = root_site.unsetup()
    assert (again.returncode, again.stderr) == (0, "")
    assert wait_for_no_loops(root_site.images.path) == {}


def test_copies_that_go_within_the_grace_are_no_error(root_site: RootSite) -> None:
    setup_ok(root_site)
    # A job's process still exiting when the epilog runs: its copy goes a moment later.
    holder = _sleep_in_own_mount_namespace(1)
    try:
        result = root_site.unsetup()
        assert holder.poll() is not None  # unsetupRoot waited for it
        assert (result.returncode, result.stderr) == (0, "")
    finally:
        holder.kill()
        holder.wait()
    assert wait_for_no_loops(root_site.images.path) == {}


def test_one_loop_device_per_image(root_site: RootSite, second_root_site: RootSite) -> None:
    setup_ok(root_site)
    setup_ok(second_root_site)
    devices = loops_backed_by(root_site.images.path)
    assert len(devices) == 1, devices
    for site in (root_site, second_root_site):
        out = output_of(site.run(f"--image={site.images.ref('main')}", "cat", "/etc/os-release"))
        assert "Shifter Test Image" in out
    # Another id of the same file (a hard link) shares the device too.
    assert second_root_site.unsetup().returncode == 0
    setup_ok(second_root_site, image="plain")
    assert loops_backed_by(root_site.images.path).keys() == devices.keys()


def test_a_lingering_container_lends_its_loop_device_to_the_next(root_site: RootSite) -> None:
    setup_ok(root_site)
    inside = _start_inside(root_site, "echo started; read line")
    try:
        _wait_for_line(inside, "started")
        before = loops_backed_by(root_site.images.path)
        assert root_site.unsetup().returncode == 0
        setup_ok(root_site)  # the next job, same image, while the old process lingers
        assert loops_backed_by(root_site.images.path) == before
        inside.communicate("go\n", timeout=30)
    finally:
        inside.kill()
        inside.wait()


def test_setuproot_refuses_to_build_over_a_container(root_site: RootSite) -> None:
    setup_ok(root_site)
    second = root_site.setup()
    assert second.returncode == 1
    assert "already holds a container" in second.stderr
    assert "run unsetupRoot first" in second.stderr


def test_setup_and_teardown_cycles_leak_nothing(root_site: RootSite) -> None:
    """CYCLES builds and teardowns in one process (the library calls the commands make),
    then the host's mount table and loop devices are as before."""
    volume = root_site.site.directory("vol", 0o755)
    mounts_before = Path("/proc/self/mountinfo").read_text().count("\n")
    code = textwrap.dedent(f"""
        import os, time
        from shifter.runtime.config.load import load_udiroot_config
        from shifter.runtime.job.setup import SetupRequest, setup_root
        from shifter.runtime.rootfs.signature import file_stamp
        from shifter.runtime.job.teardown import teardown
        path = {str(root_site.site.config)!r}
        stamp = file_stamp(os.stat(path))
        config = load_udiroot_config(path)
        request = SetupRequest("id", {root_site.images.id("main")!r}, user={TEST_USER!r},
                               volumes=({f"{volume}:/data:ro"!r},))
        start = time.monotonic()
        for _ in range({CYCLES}):
            setup_root(config, request, config_stamp=stamp)
            teardown(config)
        print(f"{{(time.monotonic() - start) / {CYCLES} * 1000:.1f}}")
    """)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert root_site.mounts() == []
    assert wait_for_no_loops(root_site.images.path, root_site.site.root) == {}
    mounts_after = Path("/proc/self/mountinfo").read_text().count("\n")
    # Other work on the machine may mount meanwhile; ours would show as CYCLES x 20+.
    assert abs(mounts_after - mounts_before) < 5, (mounts_before, mounts_after)
    print(f"{CYCLES} cycles, {result.stdout.strip()} ms per setup+teardown")


def test_setuproot_and_unsetuproot_commands_cycle(root_site: RootSite) -> None:
    for _ in range(5):
        setup_ok(root_site)
        assert root_site.unsetup().returncode == 0
    assert root_site.mounts() == []
    assert wait_for_no_loops(root_site.images.path) == {}


def test_on_a_shared_mount_udimount_becomes_a_private_mount_point(root_site: RootSite) -> None:
    """Where the host's mounts are shared (systemd's default), setupRoot first binds
    udiMount and loopMount onto themselves, private, so that nothing it mounts there
    propagates to other namespaces; unsetupRoot keeps those two and removes the rest."""
    site = root_site.site
    flag, seen = site.root / "built", site.root / "slave-count"
    image = root_site.images.id("main")
    setup = (
        "import sys; from shifter.cli.setuproot import main; "
        f"sys.exit(main(['-u', '{TEST_USER}', 'id', '{image}']))"
    )
    unsetup = "import sys; from shifter.cli.unsetuproot import main; sys.exit(main([]))"
    script = textwrap.dedent(f"""
        set -e
        mount --make-rshared /
        unshare -m --propagation slave sh -c 'while [ ! -e {flag} ]; do sleep 0.02; done; \
            grep -c {site.root} /proc/self/mountinfo > {seen}' &
        {sys.executable} -c "{setup}"
        grep {site.root} /proc/self/mountinfo | wc -l > {site.root}/during
        touch {flag}
        wait
        {sys.executable} -c "{unsetup}"
        grep {site.root} /proc/self/mountinfo | awk '{{print $5}}' > {site.root}/after
    """)
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "unchanged", "sh", "-c", script],
        env=root_site.env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert int((site.root / "during").read_text()) > 10
    assert (site.root / "after").read_text().split() == [str(site.udi_mount), str(site.loop_mount)]
    # The slave namespace (made before setupRoot) saw the two binds, nothing mounted in them.
    assert int(seen.read_text()) == 2
    assert root_site.mounts() == []  # all of it was in the unshare's namespace
