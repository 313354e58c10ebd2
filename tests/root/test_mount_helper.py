"""The node's image mount helper (`shifter-mountd`, runtime/image/mountd.py) with the
launches that use it (runtime/image/helper.py): a real daemon as root, real loop devices,
real user and mount namespaces.

What a user gets from it is the kernel's squashfs of an image they may read, read-only,
nosuid and nodev with those flags locked; what they send it is one line, checked."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.leftovers import process_running, processes_mentioning, run_as_group
from tests.services.runtime_fixtures import OTHER_USER, TEST_USER, Site, output_of, uid_of
from tests.services.setuproot_fixtures import loops_backed_by, wait_for_no_loops

MOUNTD = Path(sys.executable).parent / "shifter-mountd"


class Helper:
    def __init__(self, site: Site, directory: Path, process: subprocess.Popen[str]) -> None:
        self.site, self.directory, self.process = site, directory, process

    @property
    def socket(self) -> Path:
        return self.directory / "mountd.sock"

    @property
    def mounts(self) -> Path:
        return self.directory / "mounts"

    def requests_mounted(self) -> list[str]:
        """The directories of requests still mounted (the helper's `kept` aside)."""
        return [name for name in os.listdir(self.mounts) if name != "kept"]

    def log(self) -> str:
        return Path(self.directory / "log").read_text()

    def ask(self, line: bytes, user: str = TEST_USER) -> str:
        """One request as `user`, over the socket: the helper's answer line."""
        code = (
            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
            "s.sendall(sys.argv[2].encode().decode('unicode_escape').encode('latin-1')); "
            "print(s.recv(4096).decode(), end='')"
        )
        argv = ["/usr/sbin/runuser", "-u", user, "--", "/usr/bin/python3", "-c", code,
                str(self.socket), line.decode("latin-1")]  # fmt: skip
        result = run_as_group(argv, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout


HOLD = ("import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
        "s.sendall(sys.argv[2].encode()); print(s.recv(4096).decode(), flush=True); "
        "time.sleep(30)")  # fmt: skip


@contextlib.contextmanager
def held_mount(helper: Helper, user: str = TEST_USER) -> Iterator[str]:
    """The path of a mount `user` asked for and holds (no `done`) while the block runs."""
    request = f"mount {helper.site.images.id('main')}\n"
    argv = ["/usr/sbin/runuser", "-u", user, "--", "/usr/bin/python3", "-c", HOLD,
            str(helper.socket), request]  # fmt: skip
    holder = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout is not None
        answer = holder.stdout.readline()
        assert answer.startswith("ok /"), answer
        yield answer.split()[1]
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()


def _start(site: Site, directory: Path, *options: str) -> subprocess.Popen[str]:
    log = open(directory / "log", "w")  # noqa: SIM115 (the daemon writes it until stopped)
    env = {"PATH": "/usr/bin:/bin", "SHIFTER_CONFIG": str(site.config)}
    process = subprocess.Popen([str(MOUNTD), *options], env=env, stdout=log, stderr=log,
                               text=True)  # fmt: skip
    log.close()
    deadline = time.monotonic() + 30
    while not (directory / "mountd.sock").exists():
        assert process.poll() is None, (directory / "log").read_text()
        assert time.monotonic() < deadline, "shifter-mountd did not start"
        time.sleep(0.05)
    return process


def _stop(helper: Helper) -> None:
    helper.process.send_signal(signal.SIGTERM)
    assert helper.process.wait(timeout=30) == 0, helper.log()
    assert not os.path.ismount(helper.mounts)


@pytest.fixture
def helper_dir(runtime_site: Site) -> Iterator[Path]:
    """The directory of the helper's socket (root's, 0755), named by udiRoot.conf; removed
    with what the helpers left in it."""
    directory = Path(tempfile.mkdtemp(prefix="shifter-mountd-"))
    directory.chmod(0o755)
    runtime_site.configure(mountHelperSocket=directory / "mountd.sock")
    try:
        yield directory
    finally:
        for entry in sorted(directory.glob("**/*"), reverse=True):
            entry.rmdir() if entry.is_dir() else entry.unlink()
        directory.rmdir()


@pytest.fixture
def helper(runtime_site: Site, helper_dir: Path) -> Iterator[Helper]:
    running = Helper(runtime_site, helper_dir, _start(runtime_site, helper_dir, "--keep", "0"))
    try:
        yield running
    finally:
        if running.process.poll() is None:
            _stop(running)


def _image_filesystem(mountinfo: str) -> str:
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if fields[4] == "/bin":
            return fields[fields.index("-", 6) + 1]
    raise AssertionError(f"no /bin mount in {mountinfo}")


def test_a_launch_gets_the_kernels_squashfs_and_no_squashfuse(helper: Helper) -> None:
    site = helper.site
    image = f"--image={site.images.ref('main')}"
    out = output_of(site.run("--verbose", image, "sh", "-c",
                             "cat /proc/self/mountinfo; busybox md5sum /bin/busybox"))  # fmt: skip
    assert _image_filesystem(out) == "squashfs"
    busybox = site.images.tree / "bin" / "busybox"
    expected = hashlib.md5(busybox.read_bytes()).hexdigest()
    assert f"{expected}  /bin/busybox" in out
    assert not processes_mentioning("squashfuse")
    assert f"uid {uid_of(TEST_USER)}: image {site.images.id('main')} at" in helper.log()
    # Done with it: the helper's own mount is gone (only the launch had a copy).
    assert helper.requests_mounted() == []
    assert os.listdir(helper.mounts / "kept") == []  # --keep 0


def test_the_image_flags_are_locked_in_the_users_namespace(helper: Helper) -> None:
    # The user's own namespaces (as `unshare -rm` makes them): a copy of the host's with the
    # helper's mount, which they may use but never loosen nor unmount.
    with held_mount(helper) as target:
        check = f"""
ls {target}/bin/busybox
mount -o remount,bind,dev,suid {target} && echo LOOSENED
mount -o remount,bind,rw {target} && echo WRITABLE
umount {target} && echo UNMOUNTED
grep ' {target} ' /proc/self/mountinfo
"""
        result = run_as_group(["/usr/sbin/runuser", "-u", TEST_USER, "--", "unshare",
                               "--user", "--map-root-user", "--mount", "sh", "-c", check],
                              timeout=30)  # fmt: skip
        assert f"{target}/bin/busybox" in result.stdout, result.stdout + result.stderr
        for word in ("LOOSENED", "WRITABLE", "UNMOUNTED"):
            assert word not in result.stdout, result.stdout
        assert " ro,nosuid,nodev," in result.stdout, result.stdout + result.stderr


def test_a_private_image_is_refused_to_whom_its_lists_do_not_name(helper: Helper) -> None:
    site = helper.site
    private = site.images.id("private_user")  # its USERACL names OTHER_USER
    assert helper.ask(f"mount {private}\n".encode(), user=OTHER_USER).startswith("ok /")
    answer = helper.ask(f"mount {private}\n".encode(), user=TEST_USER)
    assert answer.startswith("error ") and "private" in answer, answer
    assert "refused" in helper.log()


@pytest.mark.parametrize(
    "line",
    [
        b"mount ../../etc/shadow\n",
        b"mount " + b"a" * 64 + b"/../x\n",
        b"mount " + b"A" * 64 + b"\n",
        b"umount " + b"a" * 64 + b"\n",
        b"mount " + b"a" * 64,  # no end of line: the helper's read times out
        b"x" * 5000 + b"\n",
        b"\n",
    ],
    ids=["traversal", "suffix", "upper-case", "verb", "unfinished", "long", "empty"],
)
def test_a_bad_request_is_an_error_and_the_helper_goes_on(helper: Helper, line: bytes) -> None:
    answer = helper.ask(line)
    assert answer.startswith("error "), answer
    assert helper.ask(f"mount {helper.site.images.id('main')}\n".encode()).startswith("ok /")


def test_unknown_and_non_squashfs_images_are_errors(helper: Helper) -> None:
    assert "not found" in helper.ask(b"mount " + b"0" * 64 + b"\n")
    assert "not squashfs" in helper.ask(f"mount {helper.site.images.id('ext4')}\n".encode())


def test_a_requester_that_vanishes_leaves_nothing(helper: Helper) -> None:
    held = socket.socket(socket.AF_UNIX)
    held.connect(str(helper.socket))
    held.sendall(f"mount {helper.site.images.id('main')}\n".encode())
    assert held.recv(4096).startswith(b"ok /")
    assert helper.requests_mounted()
    held.close()  # no `done`
    deadline = time.monotonic() + 10
    while helper.requests_mounted() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert helper.requests_mounted() == []
    assert loops_backed_by(helper.site.images.path) == {}


def test_without_the_helper_the_launch_uses_squashfuse(helper: Helper) -> None:
    _stop(helper)
    site = helper.site
    out = output_of(site.run("--verbose", f"--image={site.images.ref('main')}", "cat",
                             "/proc/self/mountinfo"))  # fmt: skip
    assert _image_filesystem(out) == "fuse.squashfuse"


def test_a_socket_not_served_by_root_is_not_asked(helper: Helper) -> None:
    # Someone else's socket at the configured path (a site that let the directory be
    # writable): the launch does not take an image from it.
    _stop(helper)
    helper.directory.chmod(0o1777)  # the site's mistake
    ready = os.pipe()
    pid = os.fork()
    if pid == 0:  # the impostor, another user from the start
        try:
            os.setgroups([])
            os.setuid(uid_of(OTHER_USER))
            fake = socket.socket(socket.AF_UNIX)
            fake.bind(str(helper.socket))
            os.chmod(helper.socket, 0o666)
            fake.listen(1)
            os.write(ready[1], b"1")
            connection, _ = fake.accept()
            connection.recv(4096)
            connection.sendall(f"ok {helper.site.images.tree}\n".encode())
            time.sleep(5)
        finally:
            os._exit(0)
    os.close(ready[1])
    try:
        assert os.read(ready[0], 1) == b"1"
        result = helper.site.run("--verbose", f"--image={helper.site.images.ref('main')}",
                                 "cat", "/proc/self/mountinfo")  # fmt: skip
        assert _image_filesystem(output_of(result)) == "fuse.squashfuse"
        assert "not root" in result.stderr, result.stderr
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready[0])
        helper.socket.unlink(missing_ok=True)
        helper.directory.chmod(0o755)


def test_the_kept_image_outlives_its_launches_then_goes(
    runtime_site: Site, helper_dir: Path
) -> None:
    running = Helper(runtime_site, helper_dir, _start(runtime_site, helper_dir, "--keep", "2"))
    try:
        image = f"--image={runtime_site.images.ref('main')}"
        assert output_of(runtime_site.run(image, "true")) == ""
        kept = running.mounts / "kept" / runtime_site.images.id("main")
        assert os.path.ismount(kept)
        assert loops_backed_by(runtime_site.images.path)  # the image's loop device stays
        deadline = time.monotonic() + 30
        while os.path.ismount(kept) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not os.path.ismount(kept)
        assert wait_for_no_loops(runtime_site.images.path, timeout=10) == {}
    finally:
        _stop(running)
        assert not process_running(running.process.pid)


def test_the_helper_refuses_a_socket_directory_others_may_change(
    runtime_site: Site, helper_dir: Path
) -> None:
    helper_dir.chmod(0o777)
    env = {"PATH": "/usr/bin:/bin", "SHIFTER_CONFIG": str(runtime_site.config)}
    result = run_as_group([str(MOUNTD)], env=env, timeout=30)
    assert result.returncode != 0 and "writable by root only" in result.stderr
    runtime_site.configure()  # no mountHelperSocket
    result = run_as_group([str(MOUNTD)], env=env, timeout=30)
    assert result.returncode != 0 and "mountHelperSocket is not set" in result.stderr


def test_a_helper_killed_with_images_mounted_is_replaced_cleanly(
    runtime_site: Site, helper_dir: Path
) -> None:
    first = Helper(runtime_site, helper_dir, _start(runtime_site, helper_dir))
    try:
        output_of(runtime_site.run(f"--image={runtime_site.images.ref('main')}", "true"))
        first.process.kill()  # SIGKILL: its kept image stays mounted
        first.process.wait(timeout=30)
        assert os.path.ismount(first.mounts / "kept" / runtime_site.images.id("main"))
        (helper_dir / "mountd.sock").unlink()
        second = Helper(runtime_site, helper_dir, _start(runtime_site, helper_dir, "--keep", "0"))
        assert os.listdir(second.mounts) == ["kept"] and not os.listdir(second.mounts / "kept")
        _stop(second)
        assert wait_for_no_loops(runtime_site.images.path, timeout=10) == {}
    finally:
        if first.process.poll() is None:
            first.process.kill()


def test_only_the_requester_can_reach_the_helpers_mount(helper: Helper) -> None:
    # The path is in the host's mount table for all to read; another user still cannot go
    # through it while the requester holds it.
    with held_mount(helper) as path:
        assert path in Path("/proc/self/mountinfo").read_text()  # visible, by name
        mine = run_as_group(["/usr/sbin/runuser", "-u", TEST_USER, "--", "ls", f"{path}/bin"],
                            timeout=30)  # fmt: skip
        assert "busybox" in mine.stdout, mine.stderr
        theirs = run_as_group(["/usr/sbin/runuser", "-u", OTHER_USER, "--", "ls", path],
                              timeout=30)  # fmt: skip
        assert theirs.returncode != 0 and "Permission denied" in theirs.stderr, theirs
