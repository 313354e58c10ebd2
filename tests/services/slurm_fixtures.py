"""A real Slurm cluster for the integration tests: munged, slurmctld and three slurmd on
this machine (shifter.devtools.slurm: each node in its own UTS + mount namespace, own port
and loopback address; proctrack/cgroup and task/cgroup on cgroup v1), loaded with this
installation's SPANK plugin as `shifter-slurm-conf` prints it, and an image gateway on the
same munged.

- `slurm_site` (session): a site directory (udiMount, loopMount shared by the nodes as
  paths; mounts are per node), its udiRoot.conf naming the gateway, the runtime images'
  imagePath (the gateway pulls into it too).
- `slurm` (session): the running cluster and helpers to submit as the test users. On
  teardown: every daemon stopped by PID, /etc/hosts restored, and a check that nothing of
  the site is mounted on any node and no loop device of the images is left.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shifter.devtools.slurm import SlurmCluster, in_node, remove_cgroup_tree
from tests.services.gateway_fixtures import GatewayServer, make_env
from tests.services.leftovers import run_as_group
from tests.services.runtime_fixtures import OTHER_USER, TEST_USER, RuntimeImages, Site
from tests.services.setuproot_fixtures import loops_backed_by

BIN = Path(sys.executable).parent
STATE_DIR = Path("/run/shifter-slurm")
JOB_TIMEOUT_S = 180
MEMORY_HIERARCHY = Path("/sys/fs/cgroup/memory")
# The filesystem type of /bin in the caller's mount table (no single quotes: it goes
# inside `sh -c '...'`).
IMAGE_FS = r'sed -n "s/^[^ ]* [^ ]* [^ ]* [^ ]* \/bin .* - \([^ ]*\) .*/\1/p" /proc/self/mountinfo'


@dataclass
class SlurmSite(Site):
    """The runtime tests' site (its paths, udiRoot.conf) plus the cluster's gateway."""

    gateway: GatewayServer
    munge_socket: Path
    gateway_registry: str  # the registry the gateway pulls from (push here)

    @property
    def outputs(self) -> Path:
        return self.root / "out"

    def shifterimg(self, *args: str) -> str:
        env = {"PATH": "/usr/bin:/bin", "SHIFTER_CONFIG": str(self.config),
               "SHIFTER_MUNGE_SOCKET": str(self.munge_socket), "TZ": "UTC"}  # fmt: skip
        result = subprocess.run([str(BIN / "shifterimg"), *args], env=env, capture_output=True,
                                text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout


def own_image(site: SlurmSite, name: str, mode: int) -> Iterator[str]:
    """A copy of the main image under an id of its own (`image_id(name)`), its file with
    `mode`, for a test that changes or removes it; removed afterwards."""
    from shifter.image.meta import format_meta
    from tests.services.runtime_fixtures import image_id

    path, own = site.images.path, image_id(name)
    shutil.copy(site.images.squashfs, path / f"{own}.squashfs")
    (path / f"{own}.squashfs").chmod(mode)
    (path / f"{own}.meta").write_text(format_meta("squashfs")[0])
    yield own
    for suffix in ("squashfs", "meta"):
        (path / f"{own}.{suffix}").unlink(missing_ok=True)


def _conf(*args: str) -> list[str]:
    result = subprocess.run([str(BIN / "shifter-slurm-conf"), *args], capture_output=True,
                            text=True, check=True)  # fmt: skip
    return result.stdout.splitlines()


@pytest.fixture(scope="session")
def slurm_site(
    runtime_images: RuntimeImages, munged: Any, registry_anon: Any
) -> Iterator[SlurmSite]:
    root = Path(tempfile.mkdtemp(prefix="shifter-slurm-site-"))
    root.chmod(0o755)
    gateway_dir = root / "gateway"
    gateway_dir.mkdir()
    env = make_env(gateway_dir, munged, registry_anon, f"sqlite:///{gateway_dir}/gw.sqlite")
    env.data["Platforms"]["testsys"]["local"]["imageDir"] = str(runtime_images.path)
    env.data["PullUpdateTimeout"] = 1  # a finished pull is fresh this long: re-pulls pull
    # Re-pulls of a tag must see new content at once (the pinned-id test).
    server = GatewayServer(env.write(), gateway_dir / "gateway.log",
                           SHIFTER_IMAGEGW_RECENT_PULL_S="0.01",
                           SHIFTER_IMAGEGW_LOOKUP_CACHE_S="0")  # fmt: skip
    try:
        server.start()
        for name in ("udiMount", "loopMount", "out"):
            (root / name).mkdir(mode=0o755)
        (root / "out").chmod(0o1777)
        site = SlurmSite(root, runtime_images, server, Path(munged.socket), registry_anon.url)
        site.config.write_text(
            f"udiMount={site.udi_mount}\nloopMount={site.loop_mount}\n"
            f"imagePath={runtime_images.path}\nrootfsType=tmpfs\npopulateEtcDynamically=1\n"
            f"mountUdiRootWritable=0\nsystem=testsys\nimageGateway={server.url}\n"
            "gatewayTimeout=30\n"
            # Home directories in the container, as sites do: the job's ssh key is there.
            "siteFs=/home:/home\n"
        )
        site.config.chmod(0o644)
        yield site
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Slurm:
    cluster: SlurmCluster
    site: SlurmSite
    memory_cgroup: Path  # plugstack memory_cgroup: a cgroup of this session's own
    # Jobs whose epilog a test made fail on purpose (not a leftover).
    failing_epilogs: set[str] = field(default_factory=set)

    def env(self, **extra: str) -> dict[str, str]:
        path = f"{BIN}:/usr/bin:/usr/sbin:/bin:/sbin"
        return {**self.cluster.env(), "PATH": path, "TZ": "UTC",
                "SHIFTER_MUNGE_SOCKET": str(self.site.munge_socket),
                "SHIFTER_CONFIG": str(self.site.config), **extra}  # fmt: skip

    def run(self, *argv: str, user: str = TEST_USER, timeout: float = JOB_TIMEOUT_S,
            input: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """A Slurm client (or any command) as `user`, in the site's output directory."""
        full = ["/usr/sbin/runuser", "-u", user, "--", *argv] if user != "root" else list(argv)
        return run_as_group(full, env=self.env(), cwd=self.site.outputs, input=input,
                            timeout=timeout)  # fmt: skip

    def script(self, text: str) -> Path:
        """A batch script file in the output directory (readable by the test users)."""
        fd, name = tempfile.mkstemp(dir=self.site.outputs, suffix=".sh")
        os.close(fd)
        path = Path(name)
        path.write_text(text)
        path.chmod(0o755)
        return path

    def output_path(self, job_id: str) -> Path:
        return self.site.outputs / f"job-{job_id}.out"

    def submit(self, *args: str, script: str, user: str = TEST_USER, wait: bool = False
               ) -> tuple[str, subprocess.CompletedProcess[str]]:  # fmt: skip
        """`sbatch [--wait] ARGS SCRIPT`: the job id and sbatch's result."""
        out = self.site.outputs / "job-%j.out"
        waiting = ("--wait",) if wait else ()
        result = self.run("sbatch", *waiting, "--parsable", "-o", str(out), *args,
                          str(self.script(script)), user=user)  # fmt: skip
        job_id = result.stdout.strip().split(";")[0]
        assert job_id.isdigit(), f"sbatch failed: {result.stderr}"
        return job_id, result

    def batch(self, *args: str, script: str, user: str = TEST_USER) -> tuple[str, str]:
        """`sbatch --wait ARGS` of `script`, which must succeed: its id and output."""
        job_id, result = self.submit(*args, script=script, user=user, wait=True)
        text = self.output(job_id)
        assert result.returncode == 0, f"job {job_id} failed: {result.stderr}\n{text}"
        return job_id, text

    def output(self, job_id: str) -> str:
        path = self.output_path(job_id)
        return path.read_text() if path.exists() else ""

    def job_state(self, job_id: str) -> str:
        text = self.cluster.scontrol("show", "job", "-o", job_id)
        return text.split("JobState=", 1)[1].split()[0] if "JobState=" in text else ""

    def wait_job(self, job_id: str, timeout: float = JOB_TIMEOUT_S) -> str:
        """Wait for the job to end (its epilog too); its final state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state and state not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
                return state
            time.sleep(0.2)
        pytest.fail(f"job {job_id} did not end: {self.job_state(job_id)}")

    def queue(self) -> list[str]:
        result = self.run("squeue", "-h", "-o", "%i %T", user="root")
        return result.stdout.split()[::2]

    def slurmd_log(self) -> str:
        logs = sorted((self.cluster.directory / "log").glob("slurmd-*.log"))
        return "".join(path.read_text(errors="replace") for path in logs)

    def in_node(self, node: str, *argv: str) -> str:
        result = subprocess.run(in_node(self.cluster, node, list(argv)), capture_output=True,
                                text=True, timeout=60)  # fmt: skip
        return result.stdout

    def node_mounts(self, node: str) -> list[str]:
        """Mount points of the site in `node`'s mount table."""
        table = self.in_node(node, "cat", "/proc/self/mountinfo")
        root = str(self.site.root)
        return [f.split(" ")[4] for f in table.splitlines() if f.split(" ")[4].startswith(root)]

    def wait_idle(self) -> None:
        """Every node back in service (no job COMPLETING, none drained)."""
        self.cluster.wait_until_idle(timeout=120)

    def leftovers(self) -> dict[str, object]:
        """What jobs left: mounts per node, loop devices, failure records, memory cgroups."""
        found: dict[str, object] = {}
        for node in self.cluster.nodes:
            mounts = self.node_mounts(node)
            if mounts:
                found[node] = mounts
        loops = loops_backed_by(self.site.images.path)
        if loops:
            found["loops"] = loops
        records = sorted(str(p) for p in STATE_DIR.glob("*/job_*")) if STATE_DIR.exists() else []
        if records:
            found["records"] = records
        memory = sorted(str(p) for p in self.memory_cgroup.glob("shifter/uid_*/job_*"))
        if memory:
            found["memory cgroups"] = memory
        failed = self.failed_epilogs()
        if failed:
            found["failed epilogs"] = failed
        return found

    def failed_epilogs(self) -> list[str]:
        """slurmd's log lines of every epilog hook that failed (the epilog clears the job's
        records even then): what it printed, and the failure itself."""
        text = self.slurmd_log()
        jobs = set(re.findall(r"shifter: epilog of job (\d+) failed", text)) - self.failing_epilogs
        return [line for line in text.splitlines()
                if any(f"epilog job {job}:" in line or f"epilog of job {job} " in line
                       for job in jobs)]  # fmt: skip


@pytest.fixture(scope="session")
def slurm(slurm_site: SlurmSite, munged: Any) -> Iterator[Slurm]:
    for tool in ("slurmctld", "slurmd", "sbatch"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: run sudo scripts/install.sh", pytrace=False)
    # The job's sshd in every exclusive job (test_slurm_sshd.py): on each node's address,
    # in the job's memory cgroup (cgroup v1 here), below a cgroup of this session's own:
    # `shifter/uid_U/job_J` names no cluster, and another engineer's cluster has job J too.
    memory = MEMORY_HIERARCHY / f"shifter-test-{os.getpid()}"
    plugin = [f"{line} enable_sshd=1 memory_cgroup={memory}"
              for line in _conf("plugstack", "--shifter-config", str(slurm_site.config))]
    # Submitting with enable_sshd makes the users' ~/.udiRoot key pairs: removed at the end
    # when the session made them.
    homes = [Path(pwd.getpwnam(user).pw_dir) / ".udiRoot" for user in (TEST_USER, OTHER_USER)]
    made = [home for home in homes if not home.exists()]
    directory = Path(tempfile.mkdtemp(prefix="shifter-slurm-"))
    # proctrack/cgroup + task/cgroup, as sites run it: the extern step has cgroups of its
    # own (extern_cgroup, test_slurm_sshd.py) and Slurm tracks every step's processes.
    cluster = SlurmCluster(directory, plugstack=plugin, slurm_lines=_conf("slurm"),
                           munge_socket=Path(munged.socket), cgroups=True)  # fmt: skip
    session = Slurm(cluster, slurm_site, memory)
    try:
        memory.mkdir(mode=0o755)
        cluster.start()
        yield session
        deadline = time.monotonic() + 30
        while session.leftovers() and time.monotonic() < deadline:
            time.sleep(0.2)
        left = session.leftovers()
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
        for node in cluster.nodes:  # the plugin's per-node record directories (state.py)
            with contextlib.suppress(OSError):
                (STATE_DIR / node).rmdir()
        with contextlib.suppress(OSError):
            STATE_DIR.rmdir()
        for home in made:
            shutil.rmtree(home, ignore_errors=True)
        remove_cgroup_tree(memory)
    assert left == {}, f"jobs left this behind: {left}"
