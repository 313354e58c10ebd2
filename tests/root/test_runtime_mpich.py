"""The mpich module end to end on one node, as a site configures it (docs/mpi.md): the
host's MPICH prepared with shifter-prep-libs replaces the image's own libmpich, ranks
started by Debian's mpiexec (hydra) run in separate containers and talk through the
host's /dev/shm, the userhook refuses an image whose MPI is not MPICH-ABI, and
`--module=none` gives the image's own library back; ranks also enter a setupRoot container
built with the module."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shifter.runtime.identity.userdir import user_dir_path
from tests.services.mpich_fixtures import MpiFiles, make_mpi_files, shared_temp_dir
from tests.services.runtime_fixtures import (
    SHIFTER,
    TEST_USER,
    Site,
    assert_refused,
    output_of,
    remove_user_dirs,
    uid_of,
)
from tests.services.setuproot_fixtures import SETUP_ROOT, RootSite, make_root_site

pytestmark = pytest.mark.root

INJECTED = "/opt/udiImage/modules/mpich/lib64/libmpich.so.12.2.2"
IMAGES_OWN = "/lib/x86_64-linux-gnu/libmpich.so.12"
RANK_LINE = re.compile(r"rank (\d+) of (\d+) sum (\d+) lib (\S+)")


@pytest.fixture(scope="module")
def mpi_files() -> Iterator[MpiFiles]:
    with shared_temp_dir("shifter-mpi-") as base:
        yield make_mpi_files(base)


@pytest.fixture
def mpi_site(runtime_site: Site, mpi_files: MpiFiles) -> Site:
    runtime_site.configure(*mpi_files.module_lines(), imagePath=mpi_files.image_path)
    return runtime_site


def ranks(output: str) -> list[tuple[int, int, int, str]]:
    found = [RANK_LINE.fullmatch(line) for line in output.splitlines()]
    assert all(found), output
    return sorted((int(m[1]), int(m[2]), int(m[3]), m[4]) for m in found if m)


def mpiexec(site: Site, count: int, *shifter_args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`mpiexec -n COUNT shifter ARGS` as the test user: hydra forks one shifter per rank."""
    argv = ["/usr/sbin/runuser", "-u", TEST_USER, "--", "mpiexec", "-n", str(count),
            str(SHIFTER), *shifter_args]  # fmt: skip
    environ = {"PATH": "/usr/bin:/bin", "SHIFTER_CONFIG": str(site.config), **(env or {})}
    return subprocess.run(argv, env=environ, cwd="/", capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_one_rank_loads_the_injected_library(mpi_site: Site, mpi_files: MpiFiles) -> None:
    out = output_of(mpi_site.run(f"--image={mpi_files.ref('hello')}", "hello", cwd=Path("/")))
    assert ranks(out) == [(0, 1, 0, INJECTED)]


def test_module_environment(mpi_site: Site, mpi_files: MpiFiles) -> None:
    out = output_of(mpi_site.run(f"--image={mpi_files.ref('hello')}", "env", cwd=Path("/")))
    variables = dict(line.split("=", 1) for line in out.splitlines())
    assert variables["LD_LIBRARY_PATH"] == "/opt/udiImage/modules/mpich/lib64"
    assert variables["SHIFTER_MODULE_MPICH"] == "1"


def test_module_none_loads_the_images_own(mpi_site: Site, mpi_files: MpiFiles) -> None:
    args = ("--module=none", f"--image={mpi_files.ref('hello')}")
    assert ranks(output_of(mpi_site.run(*args, "hello", cwd=Path("/")))) == [
        (0, 1, 0, IMAGES_OWN)
    ]
    env = output_of(mpi_site.run(*args, "env", cwd=Path("/")))
    assert "SHIFTER_MODULE_MPICH" not in env and "LD_LIBRARY_PATH" not in env
    assert output_of(mpi_site.run(*args, "ls", "/opt/udiImage/modules", cwd=Path("/"))) == ""


def test_mpiexec_ranks_in_separate_containers(mpi_site: Site, mpi_files: MpiFiles) -> None:
    result = mpiexec(mpi_site, 3, f"--image={mpi_files.ref('hello')}", "hello")
    assert result.returncode == 0, result.stderr
    assert ranks(result.stdout) == [(rank, 3, 3, INJECTED) for rank in range(3)]


def test_mpiexec_ranks_share_a_user_namespace_and_ucxs_cma(
    mpi_site: Site, mpi_files: MpiFiles
) -> None:
    # UCX's defaults: its shared-memory segments passed through /proc/PID/fd and its CMA
    # (process_vm_readv) between ranks, both refused between separate user namespaces.
    result = mpiexec(mpi_site, 2, f"--image={mpi_files.ref('hello')}", "sh", "-c",
                     "readlink /proc/self/ns/user >&2; exec hello",
                     env={"UCX_LOG_LEVEL": "info"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    # UCX logs to stdout.
    rank_lines = "\n".join(line for line in result.stdout.splitlines() if "UCX" not in line)
    assert ranks(rank_lines) == [(rank, 2, 1, INJECTED) for rank in range(2)]
    spaces = {line for line in result.stderr.splitlines() if line.startswith("user:[")}
    assert len(spaces) == 1, result.stderr
    transports = [line for line in result.stdout.splitlines() if "ep_cfg" in line]
    assert transports and all("cma/memory" in line for line in transports), result.stdout
    assert "Permission denied" not in result.stdout + result.stderr


def test_mpiexec_with_the_images_own_mpich(mpi_site: Site, mpi_files: MpiFiles) -> None:
    # Without the module, UCX's defaults with the image's own library.
    result = mpiexec(mpi_site, 2, "--module=none", f"--image={mpi_files.ref('hello')}", "hello")
    assert result.returncode == 0, result.stderr
    assert ranks(result.stdout) == [(rank, 2, 1, IMAGES_OWN) for rank in range(2)]


def test_containers_share_the_hosts_dev_shm(mpi_site: Site, mpi_files: MpiFiles) -> None:
    host = os.stat("/dev/shm")
    image = f"--image={mpi_files.ref('nompi')}"
    out = output_of(mpi_site.run(image, "busybox", "stat", "-c", "%d %i", "/dev/shm",
                                 cwd=Path("/")))  # fmt: skip
    assert out.split() == [str(host.st_dev), str(host.st_ino)]
    # What one rank's container writes there, another's reads (UCX's segments).
    name = f"/dev/shm/shifter-test-{os.getpid()}"
    try:
        assert mpi_site.run(image, "sh", "-c", f"echo seen > {name}", cwd=Path("/")).returncode == 0
        assert output_of(mpi_site.run(image, "cat", name, cwd=Path("/"))) == "seen\n"
    finally:
        Path(name).unlink(missing_ok=True)


def test_the_userhook_refuses_an_image_without_the_mpich_abi(
    mpi_site: Site, mpi_files: MpiFiles
) -> None:
    image = f"--image={mpi_files.ref('openmpi')}"
    for _ in range(2):  # every time: a refusal is never remembered (hooks.py)
        assert_refused(
            mpi_site.run(image, "true", cwd=Path("/")),
            "userhook /opt/udiImage/modules/mpich/bin/init.sh failed",
            "libmpi.so.40 does not follow the MPICH ABI",
            "--module=none",
        )
    assert mpi_site.run("--module=none", image, "true", cwd=Path("/")).returncode == 0


def test_the_userhook_lets_an_image_without_mpi_through(
    mpi_site: Site, mpi_files: MpiFiles
) -> None:
    assert output_of(mpi_site.run(f"--image={mpi_files.ref('nompi')}", "echo", "ok",
                                  cwd=Path("/"))) == "ok\n"  # fmt: skip


def test_the_userhooks_verdict_is_remembered_only_for_a_pass(
    mpi_site: Site, mpi_files: MpiFiles
) -> None:
    # shifter-prep-libs' hook allows it (`# shifter: remember-success`): a pass is kept
    # in the user's directory, a refusal is not.
    remove_user_dirs(TEST_USER)
    for name in ("nompi", "openmpi"):
        mpi_site.run(f"--image={mpi_files.ref(name)}", "true", cwd=Path("/"))
    found = Path(user_dir_path(uid_of(TEST_USER))).glob("userhook-*")
    assert sorted(path.name for path in found) == [
        f"userhook-{mpi_files.ids['nompi']}-module_mpich_userhook"
    ]


@pytest.fixture
def root_site(runtime_site: Site) -> Iterator[RootSite]:
    yield from make_root_site(runtime_site)


def test_mpiexec_ranks_enter_the_setuproot_container(root_site: RootSite,
                                                     mpi_files: MpiFiles) -> None:  # fmt: skip
    root_site.configure(*mpi_files.module_lines(), imagePath=mpi_files.image_path)
    argv = [str(SETUP_ROOT), "-u", TEST_USER, "id", mpi_files.ids["hello"]]
    built = subprocess.run(argv, env=root_site.env(), capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    result = mpiexec(root_site.site, 2, f"--image={mpi_files.ref('hello')}", "hello")
    assert result.returncode == 0, result.stderr
    assert ranks(result.stdout) == [(rank, 2, 1, INJECTED) for rank in range(2)]
    mounts = output_of(root_site.run(f"--image={mpi_files.ref('hello')}", "cat",
                                     "/proc/self/mountinfo", cwd=Path("/")))  # fmt: skip
    assert " squashfs " in mounts  # setupRoot's loop mount: entered, not built
