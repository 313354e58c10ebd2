"""One user namespace for a user's private containers on a node, while any of them runs.

Why: MPI ranks of one node reach into one another's memory (`process_vm_readv`, UCX's CMA)
and open one another's `/proc/PID/fd/N` (UCX's shared-memory segments). The kernel's ptrace
check allows that between two processes of one user only within one user namespace:
`__ptrace_may_access` passes them (same uid and gid, dumpable), but commoncap's
`cap_ptrace_access_check` then wants the same namespace or CAP_SYS_PTRACE in the target's,
which a process in a sibling namespace never has (measured: EPERM for `process_vm_readv`
and EACCES for `/proc/PID/fd/1` between two `unshare -U --map-current-user` processes of
one uid, both dumpable; allowed once one joins the other's namespace, each keeping a mount
namespace of its own). So each `shifter` making its own namespace cost MPI its
single-copy paths (docs/performance.md: 1.2-1.7x the host's time).

So a private launch joins the namespace of a running container of the same user and
group instead of making one, and makes (and records) one only when none runs. Each keeps
its own mount namespace, container and squashfuse: only the user namespace is shared, and
with it nothing the user lacked (see below). No process is kept for it: the containers'
own processes hold the namespace, and it goes when the last one exits.

The record: `userns-GID` in the user's directory (userdir.py), lines `PID INODE`, newest
last, of launches that made or joined it; read and rewritten under a lock (POSIX
`lockf`), so ranks starting at once make one namespace, not several. A launch joins the
newest listed process whose `/proc/PID/ns/user` is still that namespace (same inode: a
reused PID or a process that moved on does not count), and only when

- the namespace is owned by the caller's uid (NS_GET_OWNER_UID), maps exactly the
  caller's uid and gid and nothing else, and has setgroups denied: what the caller's own
  `enter_user_namespace` makes, so joining gives it nothing it could not make itself
  (the kernel, too, lets only the owner in);
- setns(2) succeeds (the namespace is a child of the caller's).

Otherwise, and whenever the directory or the lock cannot be had (in time), the launch
makes a namespace of its own as before.

Security: a namespace of another uid is never joined (owner check, and the kernel's), and
the record is only read from the user's own 0700 directory. Sharing the namespace among
the user's containers gives them what the user's processes on the host have among
themselves: the right to look into one another (ptrace, /proc/PID/mem), no more. Each
container's mounts stay its own (its mount namespace).
"""

from __future__ import annotations

import os

RECORD = "userns-{gid}"
RECORD_LIMIT = 4096
MEMBERS_KEPT = 16  # enough that one of them is alive while any member is
LOCK_WAIT = 2.0  # seconds: a launch never waits longer for others (then goes alone)
LOCK_POLL = 0.0005


def enter_shared(uid: int, gid: int, user_dir: int | None) -> bool:
    """Enter the user's shared namespace on this node: join it (True) or make it (False).
    Like `enter_user_namespace(uid, gid)` afterwards: same ids, every capability in it."""
    from shifter.sys.namespace import enter_user_namespace

    record = _open_record(user_dir, gid)
    if record is None:
        enter_user_namespace(uid, gid)
        return False
    try:
        if not _lock(record):
            enter_user_namespace(uid, gid)
            return False
        members = _read_members(record)
        joined = None
        for pid, inode in reversed(members):
            if _join(pid, inode, uid, gid):
                joined = inode
                break
        if joined is None:
            enter_user_namespace(uid, gid)
            kept = []
            inode = os.stat("/proc/self/ns/user").st_ino
        else:
            kept = [member for member in members if member[1] == joined]
            inode = joined
        kept = [*kept[-(MEMBERS_KEPT - 1) :], (os.getpid(), inode)]
        _write_members(record, kept)
    finally:
        os.close(record)  # and with it the lock
    return joined is not None


def _open_record(user_dir: int | None, gid: int) -> int | None:
    if user_dir is None:
        return None
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(RECORD.format(gid=gid), flags, 0o600, dir_fd=user_dir)
    except OSError:
        return None


def _lock(fd: int) -> bool:
    import time

    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            os.lockf(fd, os.F_TLOCK, 0)
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(LOCK_POLL)


def _read_members(fd: int) -> list[tuple[int, int]]:
    members = []
    for line in os.pread(fd, RECORD_LIMIT, 0).split(b"\n"):
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            members.append((int(fields[0]), int(fields[1])))
    return members


def _write_members(fd: int, members: list[tuple[int, int]]) -> None:
    data = "".join(f"{pid} {inode}\n" for pid, inode in members).encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError:
        pass  # the record only helps later launches


def _read_small(name: str, dir_fd: int) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        return os.read(fd, 256)
    except OSError:
        return None
    finally:
        os.close(fd)


def _maps_only(proc: int, name: str, own: int) -> bool:
    """The map `name` of the process `proc` maps `own` to itself and nothing else."""
    found = _read_small(name, proc)
    return found is not None and found.split() == [b"%d" % own, b"%d" % own, b"1"]


def _join(pid: int, inode: int, uid: int, gid: int) -> bool:
    """Join the user namespace of process `pid` if it is still `inode` and fit to join."""
    from shifter.errors import ShifterError
    from shifter.sys.namespace import Namespace, owner_uid, setns

    try:
        # The /proc/PID directory pins that process: a PID reused later is another
        # directory, and opens through this one fail once the process is gone.
        proc = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        try:
            fd = os.open("ns/user", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)
        except OSError:
            return False
        try:
            if os.fstat(fd).st_ino != inode or owner_uid(fd) != uid:
                return False
            # The maps are written once, by the namespace's maker: the inode identifies
            # the namespace, these files (read through the same process) what it maps.
            if not (
                _maps_only(proc, "uid_map", uid)
                and _maps_only(proc, "gid_map", gid)
                and (_read_small("setgroups", proc) or b"").strip() == b"deny"
            ):
                return False
            setns(fd, Namespace.NEWUSER)
        except ShifterError:
            return False  # not a namespace (EINVAL), or not a child of ours (EPERM)
        finally:
            os.close(fd)
    finally:
        os.close(proc)
    if os.getuid() != uid or os.getgid() != gid:
        # Checked before joining (the maps): this would be a kernel surprise, and a
        # joined namespace cannot be left.
        raise ShifterError(f"joined a user namespace that does not map uid {uid} gid {gid}")
    return True
