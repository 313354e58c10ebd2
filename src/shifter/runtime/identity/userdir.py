"""A directory of the user's own on this node, for what their launches share: the record of
the user namespace their private containers share (sharedns.py) and the module userhooks'
remembered verdicts (site/hooks.py).

`/dev/shm/.shifter-UID`: node-local, in memory, present on every Linux node, and where MPI
keeps its per-node state already. The user's `shifter` makes it (mode 0700) on first use.
It is used only when it is a real directory (not a symlink) owned by the user with no
access for group or others: anyone can create names in the sticky /dev/shm, so one made by
someone else is ignored and the launch goes on without sharing or remembering (slower, not
wrong). Only the user (and root) can write in it, so what is read from it is the user's own
word, trusted for the user's own launches and nothing else.

Nothing in it outlives more than a file: the records name live processes, checked on use.
"""

from __future__ import annotations

import os

BASE = "/dev/shm"
MODE = 0o700


def user_dir_path(uid: int, base: str = BASE) -> str:
    return os.path.join(base, f".shifter-{uid}")


def open_user_dir(uid: int, base: str = BASE) -> int | None:
    """A descriptor (O_CLOEXEC) of the user's directory, made if missing; None when it
    cannot be made or is not the user's alone."""
    path = user_dir_path(uid, base)
    try:
        os.mkdir(path, MODE)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None  # a symlink (ELOOP / ENOTDIR) or gone
    try:
        info = os.fstat(fd)
    except OSError:
        info = None
    if info is None or info.st_uid != uid or info.st_mode & 0o077:
        os.close(fd)
        return None
    return fd
