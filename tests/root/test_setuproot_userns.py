"""Every `shifter` entering a job's setupRoot container joins one user namespace, the job
user's, which setupRoot pinned in the tree (shifter.runtime.identity.jobns): processes of the job
on the node may then look into one another (/proc/PID/environ here; MPI's
process_vm_readv and /proc/PID/fd alike), which separate namespaces forbid. A private
container gets another (the one the user's private containers share, identity/sharedns.py, never
the job's), and unsetupRoot takes the pin down."""

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

from tests.services.runtime_fixtures import (
    TEST_USER,
    Site,
    gid_of,
    output_of,
    shifter_argv,
    shifter_env,
    uid_of,
)
from tests.services.setuproot_fixtures import RootSite, make_root_site, setup_ok

pytestmark = pytest.mark.root
NAMESPACE = ("busybox", "readlink", "/proc/self/ns/user")


@pytest.fixture
def root_site(runtime_site: Site) -> Iterator[RootSite]:
    yield from make_root_site(runtime_site)


def _namespace(root: RootSite, image: str) -> str:
    return output_of(root.run(f"--image={image}", *NAMESPACE)).strip()


def test_entering_shifters_share_the_jobs_user_namespace(root_site: RootSite) -> None:
    setup_ok(root_site)
    image = root_site.images.ref("main")
    first, second = _namespace(root_site, image), _namespace(root_site, image)
    assert first.startswith("user:[") and first == second
    host = subprocess.run(["/usr/sbin/runuser", "-u", TEST_USER, "--", *NAMESPACE[1:]],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert first != host
    # It maps the user's own ids only.
    maps = output_of(root_site.run(f"--image={image}", "cat", "/proc/self/uid_map",
                                   "/proc/self/gid_map"))  # fmt: skip
    uid, gid = uid_of(TEST_USER), gid_of(TEST_USER)
    assert maps.split() == [str(uid), str(uid), "1", str(gid), str(gid), "1"]
    # A private container (another image) makes its own, each time.
    other = root_site.images.ref("plain")
    assert len({_namespace(root_site, other), _namespace(root_site, other), first}) == 3


def test_processes_of_the_job_can_look_into_one_another(root_site: RootSite) -> None:
    setup_ok(root_site)
    image = f"--image={root_site.images.ref('main')}"
    with tempfile.TemporaryDirectory(prefix="shifter-userns-") as directory:
        pid_file = Path(directory) / "pid"
        Path(directory).chmod(0o777)
        script = f"echo $$ > {pid_file}; exec sleep 60"
        sleeper = subprocess.Popen(shifter_argv((image, "sh", "-c", script), TEST_USER),
                                   env=shifter_env(root_site.site.config))  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not (pid_file.exists() and pid_file.read_text().strip()):
                assert time.monotonic() < deadline and sleeper.poll() is None
                time.sleep(0.05)
            pid = pid_file.read_text().strip()
            # PTRACE_MODE_READ, the check process_vm_readv makes: allowed in one namespace.
            result = root_site.run(image, "sh", "-c", f"tr '\\0' '\\n' < /proc/{pid}/environ")
            assert result.returncode == 0, result.stderr
            assert "IMAGE_VAR=from-image" in result.stdout.splitlines(), result.stdout
            # From a namespace of its own (a private container) it is refused.
            other = root_site.run(f"--image={root_site.images.ref('plain')}", "sh", "-c",
                                  f"cat /proc/{pid}/environ")  # fmt: skip
            assert other.returncode != 0 and "Permission denied" in other.stderr
        finally:
            # The container's process (runuser does not pass a SIGKILL on), then runuser.
            if pid_file.exists() and pid_file.read_text().strip():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
            sleeper.kill()
            sleeper.wait()


def test_unsetuproot_takes_the_pinned_namespace_down(root_site: RootSite) -> None:
    setup_ok(root_site)
    pinned = [m for m in root_site.mounts() if m.endswith("/var/shifterUserNs")]
    assert len(pinned) == 1
    result = root_site.unsetup()
    assert result.returncode == 0, result.stderr
    assert root_site.mounts() == []
