"""plugstack.conf `memory_cgroup=PATH` (cgroup v1, as the original): the prolog puts itself
into `PATH/shifter/uid_<uid>/job_<jobid>` before it runs setupRoot, so setupRoot, the job's
sshd and everything its sessions start are there; the epilog kills every process left in
it and removes the directory. When PATH does not exist the step is skipped, as in the
original. The path is the site's (plugstack.conf), never the job's."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Callable

from shifter.errors import ShifterError

KILL_ROUNDS = 50  # 0.1 s apart


class CgroupError(ShifterError):
    """The job's memory cgroup cannot be made or emptied."""


def job_cgroup(base: str, uid: int, job_id: str) -> str:
    if not job_id.isdigit():
        raise CgroupError(f"job id {job_id!r} is not a number")
    return os.path.join(base, "shifter", f"uid_{uid}", f"job_{job_id}")


def enter(base: str, uid: int, job_id: str) -> str | None:
    """Make the job's cgroup (0755) and move this process into it; its path, or None when
    `base` does not exist."""
    if not os.path.isdir(base):
        return None
    path = job_cgroup(base, uid, job_id)
    for directory in (os.path.dirname(os.path.dirname(path)), os.path.dirname(path), path):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o755)
    try:
        with open(os.path.join(path, "cgroup.procs"), "w") as file:
            file.write(f"{os.getpid()}\n")
    except OSError as error:
        raise CgroupError(f"cannot join {path}: {error.strerror}",
                          hint="memory_cgroup must name a cgroup v1 memory hierarchy") from None
    return path


def _members(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as file:
            return [int(line) for line in file if line.strip()]
    except OSError as error:
        # Gone, or going (ENODEV: removed while read): several slurmd on one machine share
        # the job's cgroup (the path names no node), and another node's epilog was first.
        if error.errno in (errno.ENOENT, errno.ENODEV):
            return []
        raise


def end(base: str, uid: int, job_id: str) -> int:
    """Kill every process in the job's cgroup and remove it; how many were killed."""
    path = job_cgroup(base, uid, job_id)
    # Dead processes leave cgroup.procs once reaped: asked again until it is empty.
    killed = kill_until_gone(lambda: [pid for pid in _members(path) if pid != os.getpid()])
    try:
        os.rmdir(path)
    except OSError as error:
        if error.errno != errno.ENOENT:
            raise CgroupError(f"cannot remove {path}: {error.strerror}") from None
    return killed


def kill_until_gone(find: Callable[[], list[int]]) -> int:
    """SIGKILL what `find` names until it names nothing (at most KILL_ROUNDS rounds, 0.1 s
    apart); how many processes were killed."""
    import time

    killed: set[int] = set()
    for _ in range(KILL_ROUNDS):
        left = find()
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    return len(killed)
