"""Jobs leave nothing behind on any node (no mount, no loop device, no process, no record),
whether they end, are cancelled mid-run, or their container could not be built; no node is
ever drained (real cluster: slurm_fixtures.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shifter.devtools.slurm import in_node
from tests.services.gateway_fixtures import wait_for
from tests.services.runtime_fixtures import OTHER_USER, TEST_USER
from tests.services.slurm_fixtures import IMAGE_FS, STATE_DIR, Slurm, own_image

JOBS_IN_A_ROW = 50
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def nothing_left(slurm: Slurm) -> Iterator[None]:
    yield
    slurm.wait_idle()
    assert set(slurm.cluster.node_states().values()) == {"idle"}  # none drained
    wait_for(lambda: not slurm.leftovers(), timeout=30, what="the nodes to be clean")


def _sleepers(tag: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == tag.encode():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_jobs_in_a_row_leave_nothing_mounted_or_attached(slurm: Slurm) -> None:
    image = f"--image={slurm.site.images.ref('main')}"
    jobs = [
        slurm.submit(image, "-N", "3", "--exclusive", script="#!/bin/sh\nsrun shifter true\n")[0]
        for _ in range(JOBS_IN_A_ROW)
    ]
    states = {job: slurm.wait_job(job, timeout=600) for job in jobs}
    assert set(states.values()) == {"COMPLETED"}, states
    log = slurm.slurmd_log()
    assert all(f"unsetupRoot on {slurm.cluster.nodes[2]} for job {job}" in log for job in jobs)


def test_a_job_cancelled_mid_run_is_cleaned_up(slurm: Slurm) -> None:
    image = f"--image={slurm.site.images.ref('main')}"
    out = slurm.site.outputs
    task = f"touch {out}/started-$SLURM_JOB_ID-$(hostname); sleep 3171"
    script = f"#!/bin/sh\nsrun shifter sh -c '{task}'\n"
    job_id, _ = slurm.submit(image, "-N", "3", "--exclusive", script=script)
    started = [out / f"started-{job_id}-{node}" for node in slurm.cluster.nodes]
    wait_for(lambda: all(path.exists() for path in started), timeout=120, what="the tasks")
    assert all(slurm.node_mounts(node) for node in slurm.cluster.nodes)
    assert len(_sleepers("sleep\x003171\x00")) == 3
    slurm.run("scancel", job_id)
    assert slurm.wait_job(job_id) == "CANCELLED"
    wait_for(lambda: not _sleepers("sleep\x003171\x00"), timeout=60, what="the tasks to end")


def test_the_epilog_ends_what_escaped_slurm_in_the_container(slurm: Slurm) -> None:
    image = f"--image={slurm.site.images.ref('main')}"
    # Slurm (proctrack/cgroup) tracks everything a step starts; what the job's sshd starts
    # is outside its steps (extern_cgroup is off here): a sleeper started through ssh.
    escape = "setsid sleep 3172 </dev/null >/dev/null 2>&1 &"
    node = slurm.cluster.nodes[0]
    script = f"#!/bin/sh\nsrun shifter /opt/udiImage/bin/ssh {node} '{escape}'\nsleep 1\n"
    job_id, _ = slurm.batch(image, "-N", "1", "--exclusive", script=script)
    # Two: the escaped sleeper and the job's sshd (the cluster runs with enable_sshd=1).
    wait_for(lambda: f"for job {job_id} (2 processes ended)" in slurm.slurmd_log(),
             timeout=60, what="the epilog")  # fmt: skip
    assert not _sleepers("sleep\x003172\x00")


@pytest.fixture
def vanishing_image(slurm: Slurm) -> Iterator[str]:
    """An image of its own, whose file the test removes."""
    yield from own_image(slurm.site, "slurm-vanishing", 0o644)


def test_a_failed_setuproot_fails_the_job_with_the_reason_and_drains_no_node(
    slurm: Slurm, vanishing_image: str
) -> None:
    script = "#!/bin/sh\necho batch started\nsrun shifter true\n"
    job_id, _ = slurm.submit("-H", f"--image=id:{vanishing_image}", "-N", "2", "--exclusive",
                             script=script)  # fmt: skip
    # Between submit and start the site removed the image file: setupRoot fails as root.
    (slurm.site.images.path / f"{vanishing_image}.squashfs").unlink()
    slurm.run("scontrol", "release", job_id)
    assert slurm.wait_job(job_id) == "FAILED"
    output = slurm.output(job_id)
    first = slurm.cluster.nodes[0]
    assert f"the container could not be prepared on {first}: setupRoot failed" in output
    assert "batch started" not in output


def test_a_container_left_by_an_earlier_job_is_replaced(slurm: Slurm) -> None:
    # As if an earlier job's epilog never ran (a crashed slurmd): another user's container.
    setup = ["env", f"SHIFTER_CONFIG={slurm.site.config}", str(BIN / "setupRoot"),
             "-u", OTHER_USER, "id", slurm.site.images.id("plain")]  # fmt: skip
    first = slurm.cluster.nodes[0]
    stale = subprocess.run(in_node(slurm.cluster, first, setup), capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert stale.returncode == 0, stale.stderr
    image = slurm.site.images.ref("main")
    script = f"#!/bin/sh\nsrun shifter sh -c 'echo $({IMAGE_FS}); cat /var/shifterConfig.json'\n"
    job_id, out = slurm.batch(f"--image={image}", "-w", first, "--exclusive", script=script)
    # The job's own container, entered (the kernel's squashfs), not a private one.
    assert out.startswith("squashfs\n"), out
    assert f'"identifier":"{slurm.site.images.id("main")}","user":"{TEST_USER}"' in out
    assert f"setupRoot on {first} for job {job_id}" in slurm.slurmd_log()


def test_a_failed_epilog_still_clears_the_jobs_records_and_says_why(slurm: Slurm) -> None:
    image = f"--image={slurm.site.images.ref('main')}"
    node = slurm.cluster.nodes[0]
    go = slurm.site.outputs / "epilog-copy-held"
    script = f"#!/bin/sh\nwhile [ ! -e {go} ]; do sleep 0.1; done\n"
    job_id, _ = slurm.submit(image, "-w", node, "--exclusive", script=script)
    wait_for(lambda: slurm.node_mounts(node), timeout=120, what="the job's container")
    # A process that made a mount namespace while the container was up: unsetupRoot in
    # the epilog fails, naming it.
    holder = subprocess.Popen(in_node(slurm.cluster, node, ["unshare", "-m", "sleep", "3174"]))
    try:
        wait_for(lambda: _sleepers("sleep\x003174\x00"), timeout=30, what="the copy's holder")
        slurm.failing_epilogs.add(job_id)
        go.touch()
        assert slurm.wait_job(job_id) == "COMPLETED"
        failures = slurm.failed_epilogs()
        assert not failures, failures  # this job's are expected, and the only ones
        log = slurm.slurmd_log()
        assert f"shifter: epilog of job {job_id} failed" in log
        assert f"held by processes {holder.pid} (sleep)" in log, log[-3000:]
        assert not list((STATE_DIR / node).glob(f"job_{job_id}.*"))
    finally:
        holder.kill()
        holder.wait()
        go.unlink(missing_ok=True)
