"""MPI across the nodes of the real 3-node Slurm (tests/services/slurm_fixtures.py), as an
ordinary user: Debian's MPICH started by `srun --mpi=pmi2`, the application in an image
linked against the image's own libmpich, the host's MPICH (prepared with
shifter-prep-libs) injected as the site's `mpich` module (docs/mpi.md).

- `srun -N 3 -n 6 --mpi=pmi2 shifter --image=...` in an allocation that may share its
  nodes: no setupRoot, each rank builds its own unprivileged container, the ranks of a
  node in the user's shared namespace (runtime/identity/sharedns.py), UCX's defaults;
- `sbatch --image=... -N 3 --exclusive`: the prolog's setupRoot container, built with the
  module the job asked for (the default here), entered by every rank; the ranks of a node
  share the job's user namespace and UCX's CMA (the module carries its plugin);
- `--module=none`: the image's own libmpich, in both.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest

from tests.services.mpich_fixtures import (
    UCX_CMA,
    build_squashfs_image,
    compile_hello,
    image_entries,
    prepare_module,
    shared_temp_dir,
)
from tests.services.runtime_fixtures import TEST_USER, remove_user_dirs
from tests.services.slurm_fixtures import IMAGE_FS, Slurm

INJECTED = "/opt/udiImage/modules/mpich/lib64/libmpich.so.12.2.2"
IMAGES_OWN = "/lib/x86_64-linux-gnu/libmpich.so.12"
RANK_LINE = re.compile(r"rank (\d+) of (\d+) sum (\d+) lib (\S+)")
RANKS = 6
SUM = sum(range(RANKS))
# Ranks in separate user namespaces must use neither /proc/PID/fd nor CMA between them
# (docs/mpi.md): here, ranks of the job's setupRoot containers on two of these nodes, which
# are one machine (UCX takes them for one host). Ranks of one node share a namespace.
NO_PROC_LINK = "UCX_POSIX_USE_PROC_LINK=n UCX_TLS=^cma"
MODULE_LINES = (
    "module_mpich_siteEnvPrepend=LD_LIBRARY_PATH=/opt/udiImage/modules/mpich/lib64",
    "module_mpich_siteEnv=SHIFTER_MODULE_MPICH=1 UCX_MODULE_DIR=/opt/udiImage/modules/mpich/lib64",
    "module_mpich_userhook=/opt/udiImage/modules/mpich/bin/init.sh",
    "defaultModules=mpich",
)


@pytest.fixture(autouse=True)
def no_drained_node(slurm: Slurm) -> Iterator[None]:
    yield
    slurm.wait_idle()
    assert set(slurm.cluster.node_states().values()) == {"idle"}


@pytest.fixture(scope="module")
def mpi_slurm(slurm: Slurm) -> Iterator[tuple[Slurm, str]]:
    """The cluster's site with the MPI image in its imagePath and the mpich module (the
    default, with UCX's CMA plugin, as docs/mpi.md has it) in its udiRoot.conf; both taken
    out again afterwards. Yields the image."""
    site = slurm.site
    original = site.config.read_text()
    with shared_temp_dir("shifter-slurm-mpi-") as base:
        work = base / "work"
        work.mkdir()
        entries = image_entries(compile_hello(work))
        image_id = build_squashfs_image(entries, base, work, "slurm-hello")
        module = prepare_module(base / "module", UCX_CMA)
        copied = [site.images.path / f"{image_id}.{suffix}" for suffix in ("squashfs", "meta")]
        for path in copied:
            shutil.copy(base / path.name, path)
            path.chmod(0o644)
        try:
            lines = (f"module_mpich_copyPath={module}", *MODULE_LINES)
            site.config.write_text(original + "".join(f"{line}\n" for line in lines))
            yield slurm, f"id:{image_id}"
        finally:
            site.config.write_text(original)
            for path in copied:
                path.unlink(missing_ok=True)
            remove_user_dirs(TEST_USER)  # the ranks' namespace record, the hook's verdicts


def ranks(output: str) -> list[tuple[int, int, int, str]]:
    found = [RANK_LINE.fullmatch(line) for line in output.splitlines()]
    return sorted((int(m[1]), int(m[2]), int(m[3]), m[4]) for m in found if m)


def expected(library: str) -> list[tuple[int, int, int, str]]:
    return [(rank, RANKS, SUM, library) for rank in range(RANKS)]


def test_srun_ranks_in_private_containers_on_three_nodes(mpi_slurm: tuple[Slurm, str]) -> None:
    slurm, image = mpi_slurm
    hosts = f"srun -N 3 -n {RANKS} --mpi=pmi2 shifter --image={image} busybox hostname"
    result = slurm.run("sh", "-c", hosts)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == sorted(slurm.cluster.nodes * 2)
    # UCX's defaults: CMA and /proc/PID/fd between the ranks of a node.
    command = f"srun -N 3 -n {RANKS} --mpi=pmi2 shifter --image={image} hello"
    result = slurm.run("sh", "-c", command)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ranks(result.stdout) == expected(INJECTED), result.stdout + result.stderr
    # The ranks of a node, running together, in one user namespace (the user's).
    spaces = slurm.run("srun", "-N", "1", "-n", "2", "shifter", f"--image={image}", "sh", "-c",
                       "busybox readlink /proc/self/ns/user; sleep 1")  # fmt: skip
    found = spaces.stdout.split()
    assert len(found) == 2 and len(set(found)) == 1, spaces.stdout + spaces.stderr


def test_srun_with_module_none_uses_the_images_own_mpich(mpi_slurm: tuple[Slurm, str]) -> None:
    slurm, image = mpi_slurm
    command = f"srun -N 3 -n {RANKS} --mpi=pmi2 shifter --module=none --image={image} hello"
    result = slurm.run("sh", "-c", command)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ranks(result.stdout) == expected(IMAGES_OWN), result.stdout + result.stderr


def test_exclusive_batch_job_ranks_enter_the_prolog_container(
    mpi_slurm: tuple[Slurm, str],
) -> None:
    slurm, image = mpi_slurm
    # Two ranks of one node with UCX's defaults: the job's shared user namespace lets
    # them use /proc/PID/fd and CMA. Across these nodes (one machine: UCX takes them for
    # one host and would use shared memory between two nodes' namespaces) CMA is off.
    script = f"""#!/bin/sh
UCX_LOG_LEVEL=info srun -N 1 -n 2 --mpi=pmi2 shifter hello 2>&1 | sed 's/^/one /'
srun -N 3 shifter sh -c 'echo "fs $(hostname) $({IMAGE_FS})"'
srun -N 1 -n 2 shifter sh -c 'echo "ns $(busybox readlink /proc/self/ns/user)"'
export {NO_PROC_LINK}
srun -n {RANKS} --mpi=pmi2 shifter hello
srun -n {RANKS} --mpi=pmi2 shifter --module=none hello | sed 's/^/none /'
"""
    job_id, out = slurm.batch(f"--image={image}", "-N", "3", "--exclusive", script=script)
    assert ranks(out) == expected(INJECTED), out
    one = [line.removeprefix("one ") for line in out.splitlines() if line.startswith("one ")]
    assert ranks("\n".join(one)) == [(0, 2, 1, INJECTED), (1, 2, 1, INJECTED)], out
    assert any("cma/memory" in line for line in one), out  # UCX's CMA, from the module
    # The prolog's container (the kernel's squashfs on setupRoot's loop device) on each node.
    assert sorted(line for line in out.splitlines() if line.startswith("fs ")) == [
        f"fs {node} squashfs" for node in slurm.cluster.nodes
    ], out
    # The ranks of a node share the job's user namespace (runtime/identity/jobns.py).
    spaces = [line for line in out.splitlines() if line.startswith("ns user:[")]
    assert len(spaces) == 2 and len(set(spaces)) == 1, out
    own = [line.removeprefix("none ") for line in out.splitlines() if line.startswith("none ")]
    assert ranks("\n".join(own)) == expected(IMAGES_OWN), out
    for node in slurm.cluster.nodes:
        assert f"setupRoot on {node} for job {job_id}" in slurm.slurmd_log()


def test_a_job_submitted_with_module_none_gets_a_container_without_it(
    mpi_slurm: tuple[Slurm, str],
) -> None:
    slurm, image = mpi_slurm
    script = f"""#!/bin/sh
export {NO_PROC_LINK}
srun -n {RANKS} --mpi=pmi2 shifter hello
srun -N 3 shifter sh -c 'echo "fs $(hostname) $({IMAGE_FS}) $(ls /opt/udiImage/modules | wc -l)"'
"""
    _, out = slurm.batch(f"--image={image}", "--module=none", "-N", "3", "--exclusive",
                         script=script)  # fmt: skip
    assert ranks(out) == expected(IMAGES_OWN), out
    # setupRoot built it without the module, and the ranks entered it.
    assert sorted(line for line in out.splitlines() if line.startswith("fs ")) == [
        f"fs {node} squashfs 0" for node in slurm.cluster.nodes
    ], out
