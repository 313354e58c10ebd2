"""Each node of a job with an image, as root: the prolog builds the job's container with
setupRoot, the epilog ends what is left in it and runs unsetupRoot.

The prolog re-checks what came from the job's environment (its user could have written
it): the image must be the `id:` (or `local:`) the submit check pinned, the volumes and
modules must parse; the user is the batch system's, never the environment's. A job that
may share its nodes gets no setupRoot (one udiMount per node; its `srun shifter` builds
private containers). Whatever fails is recorded for the job's tasks (state.py) and the
prolog still succeeds: in Slurm 22.05 a failing prolog drains the node.
"""

from __future__ import annotations

import logging
import os
import pwd
import sys
import time
from collections.abc import Mapping

from shifter.errors import ShifterError
from shifter.image.descriptor import ImageType, parse_descriptor
from shifter.proc import run
from shifter.runtime.config.load import UdiRootConfig
from shifter.runtime.job.sshd import check_pubkey
from shifter.runtime.rootfs.signature import SIGNATURE_FILE
from shifter.runtime.site.modules import select_modules
from shifter.runtime.volumes.policy import check_user_volume
from shifter.runtime.volumes.spec import parse_volume_specs
from shifter.wlm import cgroup
from shifter.wlm.interface import BatchSystem
from shifter.wlm.state import JobRecords

log = logging.getLogger(__name__)
SETUP_TIMEOUT_S = 300


class NodeError(ShifterError):
    """The job's container cannot be built on this node."""


def _command(name: str) -> str:
    """setupRoot or unsetupRoot next to this Python (the same installation)."""
    return os.path.join(os.path.dirname(sys.executable), name)


def setup_argv(
    config: UdiRootConfig, environ: Mapping[str, str], uid: int, nodespec: str
) -> list[str]:
    """setupRoot's command line from the job's (re-checked) environment."""
    image_type = environ.get("SPANK_SHIFTER_IMAGETYPE", "")
    image = environ.get("SPANK_SHIFTER_IMAGE", "")
    descriptor = parse_descriptor(f"{image_type}:{image}", None)
    if descriptor.type not in (ImageType.ID, ImageType.LOCAL):
        raise NodeError(
            f"the job's image {descriptor} was not pinned to an id at submit",
            hint="submit with the shifter plugin loaded (plugstack.conf)",
        )
    volume = environ.get("SPANK_SHIFTER_VOLUME", "")
    volumes = [v for v in volume.split(";") if v]
    for spec in parse_volume_specs(volume, source="the job's --volume"):
        check_user_volume(spec, "the job's --volume")  # setupRoot checks again, as root
    module = environ.get("SPANK_SHIFTER_MODULE", "")
    if module:
        select_modules(config, module, "the job's --module")
    try:
        user = pwd.getpwuid(uid)
    except KeyError:
        raise NodeError(f"the job's uid {uid} has no account on this node") from None
    argv = [_command("setupRoot"), "-U", str(uid), "-G", str(user.pw_gid), "-u", user.pw_name]
    argv += ["-N", nodespec]
    if environ.get("SHIFTER_ENABLE_SSHD") == "1":
        pubkey = environ.get("SPANK_SHIFTER_SSH_PUBKEY", "")
        if not pubkey:
            raise NodeError(
                "the job carries no ssh public key, and the site starts the job's sshd",
                hint="submit with the shifter plugin loaded (plugstack.conf)",
            )
        argv += ["-s", check_pubkey(pubkey)]  # user input: setupRoot checks it again
    for item in volumes:
        argv += ["-v", item]
    if module:
        argv += ["-m", module]
    return [*argv, "--", str(descriptor.type), descriptor.spec]


def _ccm(environ: Mapping[str, str]) -> bool:
    """A --ccm job (the site allows it, and the job's image is the site's own `local:/`,
    as the submit check pinned it): its tasks are to run inside the container."""
    return (
        environ.get("SHIFTER_ENABLE_CCM") == "1"
        and environ.get("SPANK_SHIFTER_CCM") == "1"
        and environ.get("SPANK_SHIFTER_IMAGETYPE") == "local"
        and environ.get("SPANK_SHIFTER_IMAGE") == "/"
    )


def _root_env(config: UdiRootConfig) -> dict[str, str]:
    return {"PATH": "/usr/bin:/usr/sbin:/bin:/sbin", "SHIFTER_CONFIG": config.source}


def _holds_container(config: UdiRootConfig) -> bool:
    return os.path.exists(os.path.join(config.udi_mount, SIGNATURE_FILE))


def _tool_reason(error: ShifterError) -> str:
    tail = getattr(error, "stderr_tail", "") or ""
    lines = [line for line in tail.splitlines() if line.strip() and not line.startswith("hint")]
    return lines[-1] if lines else str(error)


def prolog(config: UdiRootConfig, environ: Mapping[str, str], system: BatchSystem) -> str:
    """Build the job's container on this node; what was done, in one line."""
    records = JobRecords.of_job(environ)
    job_id, node = records.job_id, records.node
    records.clear()
    began = time.monotonic()
    try:
        allocation = system.allocation(job_id)
        if str(allocation.uid) != environ.get("SLURM_JOB_UID", str(allocation.uid)):
            raise NodeError(f"job {job_id}: the batch system and the prolog disagree on its uid")
        if allocation.shared:
            sshd = environ.get("SHIFTER_ENABLE_SSHD") == "1"
            return (f"job {job_id} may share its nodes: no setupRoot (srun shifter builds its "
                    f"own){', so no sshd: it needs --exclusive' if sshd else ''}")  # fmt: skip
        argv = setup_argv(config, environ, allocation.uid, allocation.nodespec())
        memory = environ.get("SHIFTER_MEMORY_CGROUP", "")
        if memory:  # setupRoot, the sshd and its sessions inherit it
            cgroup.enter(memory, allocation.uid, job_id)
        if _holds_container(config):
            run([_command("unsetupRoot")], env=_root_env(config), timeout=SETUP_TIMEOUT_S)
        started = time.monotonic()
        try:
            run(argv, env=_root_env(config), timeout=SETUP_TIMEOUT_S)
        except ShifterError as error:
            raise NodeError(f"setupRoot failed: {_tool_reason(error)}") from error
        records.write(records.setup, f"{allocation.uid}\n")
        if _ccm(environ):
            records.write(records.ccm, f"{config.udi_mount}\n")
        done = time.monotonic()
        return (f"setupRoot on {node} for job {job_id} in {done - started:.3f} s "
                f"(prolog {done - began:.3f} s)")  # fmt: skip
    except Exception as error:
        # Whatever it was (a bug too), the job's tasks must fail with it rather than run
        # without the container they were promised.
        reason = f"job {job_id}: the container could not be prepared on {node}: {error}\n"
        records.write(records.failed, reason)
        raise


def _job_cgroup_elsewhere(pid: str, job_id: str) -> bool:
    """The process belongs to another Slurm job (several nodes may share one machine)."""
    try:
        with open(f"/proc/{pid}/cgroup") as file:
            text = file.read()
    except OSError:
        return False
    jobs = jobs_in_cgroups(text)
    return bool(jobs) and f"job_{job_id}" not in jobs


def jobs_in_cgroups(text: str) -> set[str]:
    """The `job_<id>` components of a /proc/PID/cgroup text: a whole component, as in
    `.../job_12/step_0` under Slurm's hierarchies and `.../job_12` at the end of a path
    under memory_cgroup's."""
    return {part for line in text.splitlines()
            for part in line.rsplit(":", 1)[-1].split("/") if part.startswith("job_")}


def container_processes(udi_mount: str, uid: int, job_id: str) -> list[int]:
    """The job user's processes whose root is the container."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            owner = os.stat(f"/proc/{pid}").st_uid
            root = os.readlink(f"/proc/{pid}/root")
        except OSError:
            continue
        if owner == uid and root == udi_mount and not _job_cgroup_elsewhere(pid, job_id):
            found.append(int(pid))
    return found


def end_processes(udi_mount: str, uid: int, job_id: str) -> int:
    """SIGKILL the job's processes left in the container; how many there were."""
    return cgroup.kill_until_gone(lambda: container_processes(udi_mount, uid, job_id))


def epilog(config: UdiRootConfig, environ: Mapping[str, str]) -> str:
    """End the job's processes in the container and take it down; what was done."""
    records = JobRecords.of_job(environ)
    job_id, node = records.job_id, records.node
    memory = environ.get("SHIFTER_MEMORY_CGROUP", "")
    uid = records.setup_uid()
    if uid is None:
        records.clear()
        # A prolog whose setupRoot failed had already made the job's memory cgroup.
        job_uid = environ.get("SLURM_JOB_UID", "")
        if memory and os.path.isdir(memory) and job_uid.isdigit():
            cgroup.end(memory, int(job_uid), job_id)
        return f"job {job_id}: no container of it on {node}"
    try:
        killed = end_processes(config.udi_mount, uid, job_id)
        if memory and os.path.isdir(memory):
            killed += cgroup.end(memory, uid, job_id)
        run([_command("unsetupRoot")], env=_root_env(config), timeout=SETUP_TIMEOUT_S)
    finally:
        # The job has ended: its records mean nothing more, whatever failed (the failure
        # goes to slurmd's log; the next prolog takes down a container left behind).
        records.clear()
    return f"unsetupRoot on {node} for job {job_id} ({killed} processes ended)"
