"""Batch jobs with an image on a real 3-node Slurm (tests/services/slurm_fixtures.py), as an
ordinary user: the prolog prepares every node of an exclusive job with setupRoot and
`srun shifter` enters that container; a job sharing its nodes builds private containers;
the image is pinned at submit; the shebang; a job without --image is left alone.

Proof of entering the prepared container, from inside: the image is the kernel's squashfs
on a loop device (setupRoot), not squashfuse (a private container of an ordinary user).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image
from tests.services.gateway_fixtures import wait_for
from tests.services.runtime_fixtures import TEST_USER, gid_of, uid_of
from tests.services.slurm_fixtures import IMAGE_FS, Slurm

BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def no_drained_node(slurm: Slurm) -> Iterator[None]:
    yield
    slurm.wait_idle()  # fails on a drained node: nothing a job does may drain one
    assert set(slurm.cluster.node_states().values()) == {"idle"}


@pytest.fixture
def user_dir() -> Iterator[Path]:
    """A directory under /tmp owned by the test user, with one file."""
    path = Path(tempfile.mkdtemp(prefix="shifter-slurm-vol-"))
    (path / "from-host").write_text("volume content\n")
    os.chown(path, uid_of(TEST_USER), gid_of(TEST_USER))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def _lines(out: str, prefix: str) -> list[str]:
    return sorted(line for line in out.splitlines() if line.startswith(prefix))


def test_exclusive_job_runs_srun_shifter_in_the_prepared_container_on_every_node(
    slurm: Slurm, user_dir: Path
) -> None:
    image = slurm.site.images.ref("main")
    other = slurm.site.images.ref("plain")
    volumes_text = "$(cat /data/from-host) $(cat /data2/from-host)"
    script = f"""#!/bin/sh
srun shifter sh -c 'echo "host $(hostname) $({IMAGE_FS}) {volumes_text}"'
srun -N 1 --image={other} shifter sh -c 'echo "other $({IMAGE_FS})"'
srun -N 1 shifter sh -c 'echo "hosts $(cat /var/hostsfile | tr "\\n" " ")"'
srun -N 1 sh -c 'echo "task $SLURM_SPANK_SHIFTER_IMAGETYPE:$SLURM_SPANK_SHIFTER_IMAGE"'
unset SHIFTER_IMAGETYPE SHIFTER_IMAGE SHIFTER_VOLUME
srun -N 1 shifter sh -c 'echo "spank $({IMAGE_FS}) {volumes_text}"'
"""
    # Two --volume options (the original kept only the last one); srun replays only the
    # last one, and the steps still get both (the job's SHIFTER_VOLUME).
    volumes = (f"--volume={user_dir}:/data", f"--volume={user_dir}:/data2")
    job_id, out = slurm.batch(f"--image={image}", *volumes, "-N", "3", "--exclusive",
                              script=script)  # fmt: skip
    assert _lines(out, "host ") == [
        f"host {node} squashfs volume content volume content" for node in slurm.cluster.nodes
    ], out
    # Another image in a step: a private container of the user's (squashfuse).
    assert _lines(out, "other ") == ["other fuse.squashfuse"]
    # CPUs (2 per node) / nodes: each node twice, in order.
    assert _lines(out, "hosts ") == ["hosts " + "".join(f"{n} {n} " for n in slurm.cluster.nodes)]
    assert _lines(out, "task ") == [f"task {image}"]
    # Without SHIFTER_*, the tasks' SLURM_SPANK_SHIFTER_* name the job's container.
    assert _lines(out, "spank ") == ["spank squashfs volume content volume content"]
    for node in slurm.cluster.nodes:
        assert f"setupRoot on {node} for job {job_id}" in slurm.slurmd_log()


def test_a_job_sharing_its_nodes_gets_private_containers_and_no_setuproot(slurm: Slurm) -> None:
    image = slurm.site.images.ref("main")
    script = f"#!/bin/sh\nsrun shifter sh -c 'echo \"fs $({IMAGE_FS})\"'\n"
    job_id, out = slurm.batch(f"--image={image}", "-N", "2", script=script)
    assert _lines(out, "fs ") == ["fs fuse.squashfuse"] * 2
    assert f"job {job_id} may share its nodes: no setupRoot" in slurm.slurmd_log()


def test_the_shebang_runs_the_batch_script_inside_the_image(slurm: Slurm) -> None:
    image = slurm.site.images.ref("main")
    script = f'#!{BIN}/shifter /bin/sh\ncat /etc/os-release\necho "fs $({IMAGE_FS})"\n'
    _, out = slurm.batch(f"--image={image}", "-N", "1", "--exclusive", script=script)
    assert 'NAME="Shifter Test Image"' in out
    assert "fs squashfs" in out


def test_a_job_without_image_is_untouched(slurm: Slurm) -> None:
    script = "#!/bin/sh\nsrun -N 3 sh -c 'env | grep -c -e SHIFTER_IMAGE -e SPANK || true'\n"
    job_id, out = slurm.batch("-N", "3", "--exclusive", script=script)
    assert out.split() == ["0", "0", "0"]
    assert f"shifter prolog job {job_id}:" not in slurm.slurmd_log()
    assert f"shifter epilog job {job_id}:" not in slurm.slurmd_log()


def test_salloc_then_several_sruns_use_the_pinned_image_without_the_gateway(
    slurm: Slurm, make_repo_name: object
) -> None:
    repo = make_repo_name()  # type: ignore[operator]
    push_image(catalog.build("busybox"), slurm.site.gateway_registry, repo, "v1")
    slurm.site.shifterimg("pull", f"docker:{repo}:v1")
    # Inside the allocation no munge socket: any gateway lookup would fail.
    inner = ("unset SHIFTER_MUNGE_SOCKET; srun shifter sh -c 'echo step1 $(hostname)'; "
             "srun -N 2 shifter sh -c 'echo step2 $SHIFTER_TEST_IMAGE'")  # fmt: skip
    result = slurm.run("salloc", f"--image=docker:{repo}:v1", "-N", "3", "--exclusive",
                       "sh", "-c", inner)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert _lines(result.stdout, "step1") == [f"step1 {node}" for node in slurm.cluster.nodes]
    assert _lines(result.stdout, "step2") == ["step2 busybox"] * 2


def test_the_pinned_id_survives_a_repull_of_the_tag(slurm: Slurm, make_repo_name: object) -> None:
    repo = make_repo_name()  # type: ignore[operator]
    registry = slurm.site.gateway_registry
    push_image(catalog.build("busybox"), registry, repo, "v1")
    slurm.site.shifterimg("pull", f"docker:{repo}:v1")
    first = slurm.site.shifterimg("lookup", f"docker:{repo}:v1").strip()
    script = "#!/bin/sh\nsrun shifter sh -c 'echo id $(cat /var/shifterConfig.json)'\n"
    job_id, _ = slurm.submit("-H", f"--image=docker:{repo}:v1", "-N", "1", "--exclusive",
                             script=script)  # fmt: skip
    push_image(catalog.build("layered"), registry, repo, "v1")

    def repulled() -> str | None:
        # The gateway answers re-pulls of a READY tag from a short cache: pull until the
        # new content is READY.
        slurm.site.shifterimg("pull", f"docker:{repo}:v1")
        second = slurm.site.shifterimg("lookup", f"docker:{repo}:v1").strip()
        return second if second != first else None

    wait_for(repulled, timeout=60, what="the re-pulled tag")
    slurm.run("scontrol", "release", job_id)
    assert slurm.wait_job(job_id) == "COMPLETED", slurm.output(job_id)
    assert f'"identifier":"{first}"' in slurm.output(job_id)


def test_srun_with_its_own_allocation_gets_the_prolog_container(slurm: Slurm) -> None:
    image = slurm.site.images.ref("main")
    task = f'echo "step $(hostname) $({IMAGE_FS}) $SHIFTER_IMAGETYPE"'
    result = slurm.run("srun", f"--image={image}", "-N", "2", "--exclusive",
                       "shifter", "sh", "-c", task)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _lines(result.stdout, "step ") == [
        f"step {node} squashfs id" for node in slurm.cluster.nodes[:2]
    ]


@pytest.fixture
def extern_setup(slurm: Slurm) -> Iterator[Path]:
    """extern_setup=SCRIPT in plugstack.conf for one test (read anew by every job's
    slurmstepd); SCRIPT, root's, logs where it ran and, when `fail` exists next to it, fails."""
    directory = Path(tempfile.mkdtemp(prefix="shifter-extern-setup-"))
    directory.chmod(0o755)
    script = directory / "extern-setup"
    script.write_text(f"""#!/bin/sh
[ -e {directory}/fail ] && {{ echo "the site's check said no" >&2; exit 3; }}
sleep 1  # the job's tasks wait for it
echo "$SLURM_JOB_ID $SLURMD_NODENAME $SHIFTER_UDIMOUNT $(id -u) $#" >> {directory}/log
chmod 644 {directory}/log
""")
    script.chmod(0o755)
    plugstack = slurm.cluster.directory / "plugstack.conf"
    saved = plugstack.read_text()
    plugstack.write_text(saved.replace("shifter_config=", f"extern_setup={script} shifter_config="))
    try:
        yield directory
    finally:
        plugstack.write_text(saved)
        shutil.rmtree(directory)


def test_extern_setup_runs_on_every_node_before_the_jobs_tasks(
    slurm: Slurm, extern_setup: Path
) -> None:
    image = slurm.site.images.ref("main")
    log = extern_setup / "log"
    # Every task starts after its node's extern_setup: it finds its node's line.
    script = f"#!/bin/sh\nsrun -N 2 sh -c 'grep -c \" $SLURMD_NODENAME \" {log}'\n"
    job_id, out = slurm.batch(f"--image={image}", "-N", "2", "--exclusive", script=script)
    assert out.split() == ["1", "1"], out
    lines = sorted(log.read_text().splitlines())
    udi_mounts = [line.split()[2] for line in lines]
    assert [line.split()[:2] + line.split()[3:] for line in lines] == [
        [job_id, node, "0", "0"] for node in slurm.cluster.nodes[:2]
    ], lines
    assert set(udi_mounts) == {str(slurm.site.udi_mount)}, lines  # each node in its namespace
    slurm.wait_job(job_id)

    (extern_setup / "fail").touch()
    job_id, result = slurm.submit(f"--image={image}", "-N", "1", "--exclusive",
                                  script="#!/bin/sh\nsrun true\necho ran\n", wait=True)
    text = slurm.output(job_id)
    assert result.returncode != 0 and "ran" not in text.split(), text
    assert "the site's extern_setup failed" in text and "the site's check said no" in text, text
