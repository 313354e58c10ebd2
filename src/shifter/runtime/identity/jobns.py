"""One user namespace for every `shifter` that enters a job's setupRoot container on a node.

Why: the kernel lets a process read another's memory (`process_vm_readv`, MPI's CMA
single-copy path) or open its `/proc/PID/fd/N` only within one user namespace (commoncap's
ptrace check). With a namespace per `shifter`, ranks of one node fall back to copies
through /dev/shm (docs/performance.md: 1.2-2.4x the host's time for large messages).

setupRoot (root) makes the namespace: a child drops to the job's uid and gid and unshares
CLONE_NEWUSER, so the namespace is **owned by the user**; root writes its maps (the user's
own uid and gid, nothing else, `setgroups` denied: exactly what an unprivileged
`unshare --user --map-current-user` gets) and pins it by bind-mounting the child's
`/proc/PID/ns/user` on `var/shifterUserNs` in the tree (reserved by vfs.py, taken down
with the tree by unsetupRoot). The user gains nothing they could not make themselves.

`shifter` entering the tree opens that file through the tree's descriptor, joins the
namespace with setns(2) only when it is a user namespace owned by its own uid (the kernel
lets the owner in) that maps its uid and gid, and otherwise makes its own as before.
"""

from __future__ import annotations

import os

USERNS_FILE = "var/shifterUserNs"


def pin_job_namespace(root: str, uid: int, gid: int) -> None:
    """Make the job user's namespace and pin it at `root/USERNS_FILE` (as root)."""
    from shifter.sys.mount import MountFlag, mount
    from shifter.sys.namespace import Namespace, unshare

    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only what the namespace's owner must do itself
        status = 1
        try:
            os.close(ready_r)
            os.close(done_w)
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            unshare(Namespace.NEWUSER)
            os.write(ready_w, b"1")
            os.read(done_r, 1)  # alive until root has pinned the namespace
            status = 0
        finally:
            os._exit(status)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError(f"the namespace child {pid} exited early")
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                           ("gid_map", f"{gid} {gid} 1")):  # fmt: skip
            with open(f"/proc/{pid}/{name}", "w") as file:
                file.write(text)
        mount(f"/proc/{pid}/ns/user", os.path.join(root, USERNS_FILE), None, MountFlag.BIND)
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(pid, 0)


def join_pinned(root_fd: int, uid: int, gid: int) -> bool:
    """Join the tree's pinned namespace when it is this user's; False: there is none (or
    not theirs), make one's own. `ShifterError` when joined but the ids are not mapped."""
    from shifter.errors import ShifterError
    from shifter.sys.namespace import Namespace, owner_uid, setns

    try:
        fd = os.open(USERNS_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root_fd)
    except OSError:
        return False
    try:
        try:
            owner = owner_uid(fd)
        except ShifterError:
            return False  # not a namespace file (a tree built before this existed)
        if owner != uid:
            return False
        setns(fd, Namespace.NEWUSER)  # EINVAL if it is another kind of namespace
    finally:
        os.close(fd)
    if os.getuid() != uid or os.getgid() != gid:
        # Joined, but the job's namespace does not map this process's ids (another
        # primary group than the job's): nothing can be undone, so refuse.
        raise ShifterError(
            f"the job's container on this node was built for another group than gid {gid}",
            hint="run shifter with the job's primary group (newgrp/sg changes it)",
        )
    return True
