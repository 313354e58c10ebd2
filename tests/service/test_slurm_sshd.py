"""The job's sshd on a real 3-node Slurm (slurm_fixtures.py, plugstack `enable_sshd=1`,
`slurm.cluster.nodes` on their own loopback addresses in /etc/hosts, homes in the container):
from inside the container on one node, `ssh <node>` lands inside the container on that
node, as the job's user, with the key made at submit; another user is refused; nothing is
left afterwards.

The image is the static busybox one (no C library): the ssh client and sshd are the
udiImage's (libprep/sshbundle.py), at /opt/udiImage/bin/ssh.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.runtime_fixtures import OTHER_USER, TEST_USER
from tests.services.slurm_fixtures import MEMORY_HIERARCHY, Slurm

pytestmark = pytest.mark.service

SSH = "/opt/udiImage/bin/ssh"
SSHD = "/opt/udiImage/sbin/sshd"
HOSTNAME = "cat /proc/sys/kernel/hostname"


@pytest.fixture(autouse=True)
def no_drained_node(slurm: Slurm) -> Iterator[None]:
    yield
    slurm.wait_idle()
    assert set(slurm.cluster.node_states().values()) == {"idle"}


def _sshd_processes() -> list[int]:
    """Every process on the machine running the udiImage's sshd (any node, any namespace)."""
    found = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.readlink(f"/proc/{name}/exe").endswith(SSHD):
                found.append(int(name))
        except OSError:
            continue
    return found


def test_ssh_between_nodes_lands_in_the_container(slurm: Slurm) -> None:
    image = slurm.site.images.ref("main")
    first, second = slurm.cluster.nodes[:2]
    script = f"""#!/bin/sh
srun -N 1 -w {first} shifter {SSH} {second} 'cat /etc/image-only.conf; {HOSTNAME}; id -un'
srun -N 1 -w {first} shifter sh -c \
    'for h in $(sort -u /var/hostsfile); do {SSH} $h {HOSTNAME}; done'
"""
    job_id, out = slurm.batch("-N", "3", "--exclusive", f"--image={image}", script=script)
    lines = out.splitlines()
    assert lines[:3] == ["from the image", second, TEST_USER], out
    assert sorted(lines[3:6]) == sorted(slurm.cluster.nodes), out
    assert slurm.wait_job(job_id) == "COMPLETED"
    home = pwd.getpwnam(TEST_USER).pw_dir
    key = os.stat(f"{home}/.udiRoot/id_rsa.key")
    assert (key.st_uid, stat.S_IMODE(key.st_mode)) == (pwd.getpwnam(TEST_USER).pw_uid, 0o600)
    slurm.wait_idle()
    assert _sshd_processes() == []
    for node in slurm.cluster.nodes:
        assert slurm.node_mounts(node) == []


def test_the_sshd_lives_in_the_jobs_memory_cgroup_until_the_epilog(slurm: Slurm) -> None:
    image = slurm.site.images.ref("main")
    script = f"""#!/bin/sh
for pid in $(pgrep -u "$(id -u)" -f '{SSHD} -D'); do grep :memory: /proc/$pid/cgroup; done
"""
    job_id, out = slurm.batch("-N", "1", "--exclusive", f"--image={image}", script=script)
    uid = pwd.getpwnam(TEST_USER).pw_uid
    job = slurm.memory_cgroup / "shifter" / f"uid_{uid}" / f"job_{job_id}"
    assert out.splitlines() == [_memory_line(job)], out
    assert slurm.wait_job(job_id) == "COMPLETED"
    slurm.wait_idle()
    assert not job.exists()
    assert _sshd_processes() == []


def _memory_line(job: Path) -> str:
    """`job`'s line in /proc/PID/cgroup (the memory hierarchy's number on this machine)."""
    number = next(line.split(":")[0] for line in Path("/proc/self/cgroup").read_text().splitlines()
                  if ":memory:" in line)  # fmt: skip
    return f"{number}:memory:/{job.relative_to(MEMORY_HIERARCHY)}"


@pytest.fixture
def extern_cgroup(slurm: Slurm) -> Iterator[None]:
    """extern_cgroup=1 in plugstack.conf for one test (read anew by every job's prolog and
    slurmstepd); restored afterwards."""
    plugstack = slurm.cluster.directory / "plugstack.conf"
    saved = plugstack.read_text()
    plugstack.write_text(saved.replace("enable_sshd=1", "enable_sshd=1 extern_cgroup=1"))
    try:
        yield
    finally:
        plugstack.write_text(saved)


def test_with_extern_cgroup_slurm_itself_ends_the_sshd_and_its_sessions(
    slurm: Slurm, extern_cgroup: None
) -> None:
    image = slurm.site.images.ref("main")
    uid = pwd.getpwnam(TEST_USER).pw_uid
    first, second = slurm.cluster.nodes[:2]
    steps = "/sys/fs/cgroup/freezer/slurm_$n/uid_$(id -u)/job_$SLURM_JOB_ID/step_extern"
    # Each node's sshd (listener) with its freezer cgroup, each node's extern step members,
    # then a session the sshd on the second node started. The batch step starts together
    # with the extern step, whose hook moves the sshd: the script waits (at most 10 s).
    script = f"""#!/bin/sh
for i in $(seq 100); do
    [ "$(pgrep -u "$(id -u)" -f '{SSHD} -D' | xargs -I@ grep -c step_extern /proc/@/cgroup \
        | grep -c 1)" = 2 ] && break
    sleep 0.1
done
for pid in $(pgrep -u "$(id -u)" -f '{SSHD} -D'); do echo "sshd $pid $(grep :freezer: /proc/$pid/cgroup)"; done
for n in {first} {second}; do echo "procs $n $(cat {steps}/cgroup.procs | tr '\n' ' ')"; done
srun -N 1 -w {first} shifter {SSH} {second} 'grep :freezer: /proc/self/cgroup' | sed 's/^/session /'
"""  # noqa: E501
    job_id, out = slurm.batch("-N", "2", "--exclusive", f"--image={image}", script=script)
    sshds = [line.split() for line in out.splitlines() if line.startswith("sshd ")]
    procs = {line.split()[1]: line.split()[2:] for line in out.splitlines()
             if line.startswith("procs ")}  # fmt: skip
    extern = {node: f"/slurm_{node}/uid_{uid}/job_{job_id}/step_extern" for node in (first, second)}
    assert len(sshds) == 2, out
    assert sorted(line[2].split(":", 2)[2] for line in sshds) == sorted(extern.values()), out
    for node in (first, second):  # each node's extern step holds its node's sshd
        assert any(pid in procs[node] and cgroup.endswith(extern[node])
                   for _, pid, cgroup in sshds), out  # fmt: skip
    session = [line for line in out.splitlines() if line.startswith("session ")]
    assert [line.split(":", 2)[2] for line in session] == [extern[second]], out
    assert slurm.wait_job(job_id) == "COMPLETED"
    slurm.wait_idle()
    log = slurm.slurmd_log()
    for node in (first, second):
        assert f"shifter extern job {job_id}: job {job_id}: 1 container processes moved" in log
        # Slurm ended them with the extern step, before the epilog looked.
        assert f"unsetupRoot on {node} for job {job_id} (0 processes ended)" in log, log
    assert _sshd_processes() == []
    assert not Path(f"/sys/fs/cgroup/freezer/slurm_{first}/uid_{uid}/job_{job_id}").exists()


def test_another_user_cannot_log_in_to_the_jobs_sshd(slurm: Slurm) -> None:
    image = slurm.site.images.ref("main")
    # The job waits for the other user's attempt (a file appears), then ends.
    flag = slurm.site.outputs / "sshd-other-tried"
    flag.unlink(missing_ok=True)
    script = f"""#!/bin/sh
echo ready
while [ ! -e {flag} ]; do sleep 0.2; done
"""
    job_id, _ = slurm.submit("-N", "2", "--exclusive", f"--image={image}", script=script)
    try:
        _wait_running(slurm, job_id)
        keys = Path(tempfile.mkdtemp(prefix="shifter-sshd-other-"))
        os.chown(keys, pwd.getpwnam(OTHER_USER).pw_uid, -1)
        slurm.run("ssh-keygen", "-q", "-t", "rsa", "-N", "", "-f", f"{keys}/id",
                  user=OTHER_USER)  # fmt: skip
        result = slurm.run(
            "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-p", "1204",
            "-i", f"{keys}/id", f"{TEST_USER}@{slurm.cluster.nodes[0]}", "true",
            user=OTHER_USER, timeout=60,
        )  # fmt: skip
        shutil.rmtree(keys)
        assert result.returncode == 255, result.stderr
        assert "Permission denied" in result.stderr
    finally:
        flag.touch()
    assert slurm.wait_job(job_id) == "COMPLETED"


def _wait_running(slurm: Slurm, job_id: str) -> None:
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if slurm.output(job_id).strip() == "ready":
            return
        time.sleep(0.2)
    pytest.fail(f"job {job_id} did not start: {slurm.job_state(job_id)}")


def test_a_shared_job_gets_no_sshd_and_says_why(slurm: Slurm) -> None:
    image = slurm.site.images.ref("main")
    job_id, _ = slurm.batch("-N", "1", "--oversubscribe", f"--image={image}",
                            script="#!/bin/sh\ntrue\n")  # fmt: skip
    assert slurm.wait_job(job_id) == "COMPLETED"
    assert f"job {job_id} may share its nodes" in slurm.slurmd_log()
    assert "so no sshd: it needs --exclusive" in slurm.slurmd_log()


def test_a_job_key_readable_by_others_fails_the_submission(slurm: Slurm) -> None:
    image = slurm.site.images.ref("main")
    slurm.batch("-N", "1", "--exclusive", f"--image={image}", script="#!/bin/sh\ntrue\n")
    key = Path(pwd.getpwnam(TEST_USER).pw_dir) / ".udiRoot" / "id_rsa.key"
    key.chmod(0o644)
    try:
        result = slurm.run("sbatch", "-N", "1", "--exclusive", f"--image={image}",
                           str(slurm.script("#!/bin/sh\ntrue\n")))  # fmt: skip
    finally:
        key.chmod(0o600)
    assert result.returncode != 0
    assert f"{key} is readable by others (mode 0644)" in result.stderr
    assert "chmod 600" in result.stderr


def test_ccm_is_unknown_without_enable_ccm(slurm: Slurm) -> None:
    image = slurm.site.images.ref("main")
    result = slurm.run("sbatch", "--ccm", f"--image={image}",
                       str(slurm.script("#!/bin/sh\ntrue\n")))  # fmt: skip
    assert result.returncode != 0
    assert "unrecognized option '--ccm'" in result.stderr, result.stderr


@pytest.fixture
def ccm_enabled(slurm: Slurm) -> Iterator[None]:
    """enable_ccm=1 in plugstack.conf and allowLocalChroot=1 in udiRoot.conf for one test
    (both are read anew by every Slurm command and every prolog); restored afterwards."""
    plugstack = slurm.cluster.directory / "plugstack.conf"
    saved = plugstack.read_text(), slurm.site.config.read_text()
    plugstack.write_text(saved[0].replace("enable_sshd=1", "enable_sshd=1 enable_ccm=1"))
    slurm.site.config.write_text(saved[1] + "allowLocalChroot=1\n")
    try:
        yield
    finally:
        plugstack.write_text(saved[0])
        slurm.site.config.write_text(saved[1])


def test_a_ccm_job_sshes_between_its_nodes_in_the_host_environment(
    slurm: Slurm, ccm_enabled: None
) -> None:
    marker = slurm.site.config  # a host file: only the host environment has it
    # The batch script itself runs in the CCM container (only it has /opt/udiImage); ssh
    # from there lands in the other node's.
    script = f"""#!/bin/sh
ls /opt/udiImage/sbin
ssh -p 1204 -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \\
    -o LogLevel=ERROR -i "$HOME/.udiRoot/id_rsa.key" {slurm.cluster.nodes[1]} \\
    '{HOSTNAME}; ls {marker}; ls /opt/udiImage/sbin'
"""
    assert not os.path.exists("/opt/udiImage")
    job_id, out = slurm.batch("-N", "2", "--exclusive", "--ccm", script=script)
    assert out.splitlines() == ["sshd", slurm.cluster.nodes[1], str(marker), "sshd"], out
    assert slurm.wait_job(job_id) == "COMPLETED"
    # A step's tasks run in it too, on every node (salloc's own shell stays on the host).
    steps = slurm.run("salloc", "--ccm", "-N", "2", "--exclusive",
                      "srun", "-N", "2", "ls", "/opt/udiImage/sbin")  # fmt: skip
    assert (steps.returncode, steps.stdout) == (0, "sshd\nsshd\n"), steps.stderr
    slurm.wait_idle()
    assert _sshd_processes() == []
