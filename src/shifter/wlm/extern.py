"""The job's extern step on each node: plugstack.conf `extern_cgroup=1` and `extern_setup`.

`extern_cgroup=1`: the job's sshd and everything its sessions start join the job's extern
step, so Slurm itself (proctrack/cgroup) ends them with the job. `extern_setup=FILE`: the
site's program runs as root, with no arguments, once the container is built (its
environment names it: `SHIFTER_UDIMOUNT`), for quick changes to it; if it fails, the
job's tasks on this node fail with its reason, as after a failed prolog. Either way the
step's record (state.py) then lets the job's tasks start: the plugin holds them until
then (at most 10 s), since only the batch node orders prolog, extern step and job.

The prolog starts the sshd before the extern step exists (Slurm 22.05 runs the
allocation prolog first, then spawns the extern step). So the plugin runs `HOOK extern`
from the extern step's own slurmstepd (its `task_post_fork`, after the step's cgroups are
made); that process sits in the job's cgroup (`.../slurm_<node>/uid_<uid>/job_<id>` in
each cgroup v1 hierarchy Slurm uses: `freezer` for proctrack/cgroup, `cpuset`/`memory`
when task/cgroup constrains them), and the step's own is `step_extern` below it. Found
from the hook's own /proc/self/cgroup, never from a guessed layout.

Moved: the job user's processes whose root is the container, in this node's mount
namespace (several nodes may share one machine), not yet in a cgroup of the job (its steps'
tasks stay where Slurm put them) and not in another job's. The epilog still kills whatever
is left, so nothing depends on this step alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from shifter.errors import ShifterError
from shifter.proc import run
from shifter.wlm import nodes
from shifter.wlm.state import JobRecords

CGROUP_ROOT = "/sys/fs/cgroup"  # Slurm's default CgroupMountpoint
EXTERN_STEP = "step_extern"
MOVE_ROUNDS = 20  # a session may fork while it is moved: asked again until none is left
SETUP_TIMEOUT_S = 60  # extern_setup must be quick: the job's tasks wait for it


class ExternError(ShifterError):
    """The job's extern step cannot take the job's sshd."""


def job_paths(proc_cgroup: str, job_id: str) -> dict[str, str]:
    """Per cgroup v1 hierarchy (its controllers, e.g. `freezer`, `cpu,cpuacct`) the path of
    the job's cgroup (up to `job_<id>`), from a /proc/PID/cgroup text."""
    found = {}
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        parts = path.split("/")
        if controllers and f"job_{job_id}" in parts:
            found[controllers] = "/".join(parts[: parts.index(f"job_{job_id}") + 1])
    return found


def hierarchy_dir(controllers: str, root: str = CGROUP_ROOT) -> str | None:
    """Where a hierarchy is mounted: `ROOT/<controllers>` or, for a hierarchy of several
    controllers, `ROOT/<one of them>` (Debian's cpu,cpuacct symlinks)."""
    names = [controllers, *controllers.split(",")]
    for name in names:
        candidate = os.path.join(root, name.removeprefix("name="))
        if os.path.isdir(candidate):
            return candidate
    return None


def extern_step_dirs(proc_cgroup: str, job_id: str, root: str = CGROUP_ROOT) -> dict[str, str]:
    """The extern step's cgroup directory per hierarchy (only those that exist)."""
    found = {}
    for controllers, path in job_paths(proc_cgroup, job_id).items():
        base = hierarchy_dir(controllers, root)
        step = os.path.join(base, path.lstrip("/"), EXTERN_STEP) if base else ""
        if step and os.path.isdir(step):
            found[controllers] = step
    return found


def _read(path: str) -> str:
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return ""


def in_job(proc_cgroup: str, own: dict[str, str]) -> bool:
    """The process is already in one of the job's cgroups (a step's task, or moved)."""
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        job = own.get(controllers)
        if job and (path == job or path.startswith(f"{job}/")):
            return True
    return False


def candidates(udi_mount: str, uid: int, job_id: str, own: dict[str, str]) -> list[int]:
    """The job's container processes on this node not yet in its cgroups."""
    try:
        namespace = os.readlink("/proc/self/ns/mnt")
    except OSError as error:
        raise ExternError(f"cannot read this process's mount namespace: {error}") from None
    found = []
    for pid in nodes.container_processes(udi_mount, uid, job_id):
        try:
            same_node = os.readlink(f"/proc/{pid}/ns/mnt") == namespace
        except OSError:
            continue
        text = _read(f"/proc/{pid}/cgroup")
        if same_node and text and not in_job(text, own):
            found.append(pid)
    return found


def adopt(udi_mount: str, uid: int, job_id: str) -> tuple[list[int], list[str]]:
    """Move the job's container processes into the extern step's cgroups; the processes
    moved and the step's directories. Nothing to move is fine (a job without an sshd)."""
    own = job_paths(_read("/proc/self/cgroup"), job_id)
    steps = extern_step_dirs(_read("/proc/self/cgroup"), job_id)
    if not steps:
        raise ExternError(
            f"job {job_id}: no extern step cgroup here",
            hint="extern_cgroup=1 needs ProctrackType=proctrack/cgroup (cgroup v1) and "
            "PrologFlags=Contain in slurm.conf",
        )
    moved: list[int] = []
    for _ in range(MOVE_ROUNDS):
        left = candidates(udi_mount, uid, job_id, own)
        if not left:
            break
        for pid in left:
            for directory in steps.values():
                _join(directory, pid)
            moved.append(pid)
    return sorted(set(moved)), sorted(steps.values())


def _join(directory: str, pid: int) -> None:
    try:
        with open(os.path.join(directory, "cgroup.procs"), "w") as file:
            file.write(f"{pid}\n")
    except ProcessLookupError:
        pass  # it ended meanwhile
    except OSError as error:
        raise ExternError(f"cannot move process {pid} into {directory}: {error.strerror}"
                          ) from None  # fmt: skip


def extern_step(udi_mount: str, environ: Mapping[str, str]) -> str:
    """The plugin's `extern` hook: what was done, in one line (slurmd's log)."""
    records = JobRecords.of_job(environ)
    job_id, node = records.job_id, records.node
    uid = records.setup_uid()
    if uid is None:
        return f"job {job_id}: no container of it on {node}"
    done = []
    try:
        if environ.get("SHIFTER_EXTERN_CGROUP", "1") == "1":
            moved, steps = adopt(udi_mount, uid, job_id)
            done.append(f"{len(moved)} container processes moved to {' '.join(steps)}")
        script = environ.get("SHIFTER_EXTERN_SETUP", "")
        if script:
            try:
                run_extern_setup(script, udi_mount, environ)
            except ShifterError as error:
                records.write(records.failed, f"job {job_id}: the site's extern_setup "
                                              f"failed on {node}: {error}\n")  # fmt: skip
                raise
            done.append(f"{script} ran")
    finally:
        records.write(records.extern, "done\n")
    return f"job {job_id}: {'; '.join(done) or 'nothing to do'}"


def run_extern_setup(script: str, udi_mount: str, environ: Mapping[str, str]) -> None:
    """The site's extern_setup, as root, with a fixed environment."""
    env = {name: environ[name] for name in ("SLURM_JOB_ID", "SLURM_JOB_UID", "SLURMD_NODENAME")
           if name in environ}  # fmt: skip
    env.update(PATH="/usr/bin:/usr/sbin:/bin:/sbin", SHIFTER_UDIMOUNT=udi_mount)
    run([script], env=env, timeout=SETUP_TIMEOUT_S, cwd="/")
