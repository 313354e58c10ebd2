"""The job's ssh key pair, at submit, as the user (the seed's `~/.udiRoot/id_rsa.key`):
made with ssh-keygen when missing (`~/.udiRoot` 0700, the private key 0600), refused when
an existing one is readable by others (ssh would refuse it later, on a node, mid-job).
Its public key travels to the prolog in the job's control environment
(`SHIFTER_SSH_PUBKEY`), where root checks it again (runtime/job/sshd.py). Root never writes
here: this runs as the submitting user."""

from __future__ import annotations

import os
import stat

from shifter.errors import ShifterError
from shifter.proc import run

KEY_DIR = ".udiRoot"
KEY_NAME = "id_rsa.key"


class SshKeyError(ShifterError):
    """The job's ssh key pair cannot be used."""


def _check_private(path: str) -> None:
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
        raise SshKeyError(f"{path} is not a file of yours",
                          hint="remove it: a new pair is made at the next submit")  # fmt: skip
    if info.st_mode & 0o077:
        raise SshKeyError(
            f"{path} is readable by others (mode {info.st_mode & 0o777:04o}): ssh refuses it",
            hint=f"chmod 600 {path}, or remove the pair to get a new one",
        )


def job_public_key(home: str) -> str:
    """The first line of `~/.udiRoot/id_rsa.key.pub`, the pair made first if missing."""
    directory = os.path.join(home, KEY_DIR)
    private = os.path.join(directory, KEY_NAME)
    public = private + ".pub"
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if not os.path.lexists(private):
        if os.path.lexists(public):
            os.unlink(public)  # half a pair: ssh-keygen would ask before overwriting
        run(["ssh-keygen", "-q", "-t", "rsa", "-N", "", "-C", "shifter job key", "-f", private])
    _check_private(private)
    try:
        with open(public, encoding="ascii") as file:
            line = file.readline().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise SshKeyError(f"cannot read {public}: {error}",
                          hint="remove the pair to get a new one at the next submit") from None
    if not line:
        raise SshKeyError(f"{public} is empty", hint="remove the pair to get a new one")
    return line
