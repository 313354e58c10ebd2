"""A user's private containers on a node share one user namespace while any of them runs
(shifter.runtime.identity.sharedns): a second container joins the first one's, so their processes
may look into one another (/proc/PID/environ here: the ptrace check MPI's process_vm_readv
and /proc/PID/fd make), each keeping a mount namespace of its own. Launches started at
once end up in one namespace; another group, another user, or a record directory that is
not the user's alone gets a namespace of its own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shifter.runtime.identity.userdir import user_dir_path
from tests.services.runtime_fixtures import (
    OTHER_USER,
    SHIFTER,
    TEST_GROUP,
    TEST_USER,
    Site,
    gid_of,
    output_of,
    remove_user_dirs,
    shifter_env,
    uid_of,
)

pytestmark = pytest.mark.root
NAMESPACES = "readlink /proc/self/ns/user; readlink /proc/self/ns/mnt"


@pytest.fixture
def clean_user_dirs() -> Iterator[None]:
    """No record from elsewhere before the test, none left after it."""
    remove_user_dirs(TEST_USER, OTHER_USER)
    yield
    remove_user_dirs(TEST_USER, OTHER_USER)


class Running:
    """A container process left running: its PID (on the host) and namespaces."""

    def __init__(self, pid: int, user_ns: str, mount_ns: str) -> None:
        self.pid = pid
        self.user_ns = user_ns
        self.mount_ns = mount_ns


def _user_argv(user: str, group: str | None) -> list[str]:
    return ["/usr/sbin/runuser", "-u", user, *(["-g", group] if group else []), "--"]


@contextlib.contextmanager
def running(site: Site, user: str = TEST_USER, group: str | None = None) -> Iterator[Running]:
    """`shifter ... sh` that reports its PID and namespaces, then sleeps until killed."""
    with tempfile.TemporaryDirectory(prefix="shifter-sharedns-") as directory:
        report = Path(directory) / "report"
        Path(directory).chmod(0o777)
        script = f"{{ echo $$; {NAMESPACES}; }} > {report}.new; mv {report}.new {report}; "
        script += "exec sleep 60"
        argv = [*_user_argv(user, group), str(SHIFTER), f"--image={site.images.ref('main')}",
                "sh", "-c", script]  # fmt: skip
        process = subprocess.Popen(argv, env=shifter_env(site.config), cwd="/")
        pid = None
        try:
            deadline = time.monotonic() + 30
            while not report.exists():
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.02)
            pid_text, user_ns, mount_ns = report.read_text().split()
            pid = int(pid_text)
            yield Running(pid, user_ns, mount_ns)
        finally:
            # The container's process (runuser does not pass a SIGKILL on), then runuser.
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.kill()
            process.wait()


def _namespaces(site: Site, user: str = TEST_USER, group: str | None = None) -> list[str]:
    argv = [*_user_argv(user, group), str(SHIFTER), f"--image={site.images.ref('main')}",
            "sh", "-c", NAMESPACES]  # fmt: skip
    result = subprocess.run(argv, env=shifter_env(site.config), capture_output=True, text=True,
                            timeout=60, cwd="/")  # fmt: skip
    return output_of(result).split()


def test_a_second_container_joins_the_first_ones_user_namespace(
    runtime_site: Site, clean_user_dirs: None
) -> None:
    with running(runtime_site) as first:
        user_ns, mount_ns = _namespaces(runtime_site)
        assert user_ns == first.user_ns
        assert mount_ns != first.mount_ns  # its own container
        # The ptrace check (PTRACE_MODE_READ) passes between them now.
        image = f"--image={runtime_site.images.ref('main')}"
        seen = runtime_site.run(image, "sh", "-c", f"tr '\\0' '\\n' < /proc/{first.pid}/environ",
                                cwd=Path("/"))  # fmt: skip
        assert seen.returncode == 0, seen.stderr
        assert f"SHIFTER_CONFIG={runtime_site.config}" in seen.stdout.splitlines()
        # It maps the user's own ids only, as one made for it would.
        maps = output_of(runtime_site.run(image, "cat", "/proc/self/uid_map", "/proc/self/gid_map",
                                          cwd=Path("/")))  # fmt: skip
        uid, gid = uid_of(TEST_USER), gid_of(TEST_USER)
        assert maps.split() == [str(uid), str(uid), "1", str(gid), str(gid), "1"]


def test_a_record_of_processes_gone_makes_a_new_namespace(
    runtime_site: Site, clean_user_dirs: None
) -> None:
    _namespaces(runtime_site)  # makes the directory and a record
    finished = subprocess.Popen(["true"])
    finished.wait()  # reaped: its PID names no process
    record = Path(user_dir_path(uid_of(TEST_USER))) / f"userns-{gid_of(TEST_USER)}"
    record.write_text(f"{finished.pid} {os.stat('/proc/self/ns/user').st_ino}\n")
    user_ns, _ = _namespaces(runtime_site)
    members = record.read_text().split()
    assert members[1:] == [user_ns.removeprefix("user:[").removesuffix("]")]  # its own only
    assert len(members) == 2 and int(members[0]) != finished.pid


def test_containers_started_at_once_share_one_namespace(
    runtime_site: Site, clean_user_dirs: None
) -> None:
    script = "readlink /proc/self/ns/user; sleep 3"
    argv = [*_user_argv(TEST_USER, None), str(SHIFTER),
            f"--image={runtime_site.images.ref('main')}", "sh", "-c", script]  # fmt: skip
    env = shifter_env(runtime_site.config)
    pipe = subprocess.PIPE
    processes = [
        subprocess.Popen(argv, env=env, stdout=pipe, stderr=pipe, text=True, cwd="/")
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=60) for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs
    spaces = {out.strip() for out, _ in outputs}
    assert len(spaces) == 1 and spaces.pop().startswith("user:["), outputs


def test_another_primary_group_gets_a_namespace_of_its_own(
    runtime_site: Site, clean_user_dirs: None
) -> None:
    with running(runtime_site) as first:
        user_ns, _ = _namespaces(runtime_site, group=TEST_GROUP)
        assert user_ns != first.user_ns
        gid = output_of(runtime_site.run(f"--image={runtime_site.images.ref('main')}", "id", "-g",
                                         cwd=Path("/")))  # fmt: skip
        assert gid.strip() == str(gid_of(TEST_USER))


def test_another_users_container_is_never_joined(
    runtime_site: Site, clean_user_dirs: None
) -> None:
    with running(runtime_site, user=OTHER_USER) as other:
        # Root forges a record in the test user's directory naming the other user's
        # container (its PID and namespace): the test user's launch must not join it.
        _namespaces(runtime_site)  # makes the directory and a record
        inode = os.stat(f"/proc/{other.pid}/ns/user").st_ino
        record = Path(user_dir_path(uid_of(TEST_USER))) / f"userns-{gid_of(TEST_USER)}"
        record.write_text(f"{other.pid} {inode}\n")
        user_ns, _ = _namespaces(runtime_site)
        assert user_ns != other.user_ns
        seen = runtime_site.run(f"--image={runtime_site.images.ref('main')}", "cat",
                                f"/proc/{other.pid}/environ", cwd=Path("/"))  # fmt: skip
        assert seen.returncode != 0 and "Permission denied" in seen.stderr


@pytest.mark.parametrize("owner", ["root", "user, group-writable"])
def test_a_directory_not_the_users_alone_is_not_used(
    runtime_site: Site, clean_user_dirs: None, owner: str
) -> None:
    path = Path(user_dir_path(uid_of(TEST_USER)))
    path.mkdir(mode=0o700)
    if owner == "root":
        path.chmod(0o777)  # anyone may write records in it
    else:
        os.chown(path, uid_of(TEST_USER), gid_of(TEST_USER))
        path.chmod(0o770)
    with running(runtime_site) as first:
        user_ns, _ = _namespaces(runtime_site)
        assert user_ns != first.user_ns  # launches work, each alone
    assert list(path.iterdir()) == []
