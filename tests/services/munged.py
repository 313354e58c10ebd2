"""A private `munged` for tests, with CLI helpers to mint and check credentials.

The daemon is `shifter.devtools.munged.MungeServer`, in a temp directory directly under
/tmp: munged and its clients need every directory on the socket's path searchable by all
users, and pytest's own temp dirs (/tmp/pytest-of-root, 0700) are not. `encode`/`decode`
call the `munge`/`unmunge` CLIs with `-S SOCKET`; the product talks to libmunge itself.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from shifter.devtools.munged import MungeServer
from shifter.proc import run

# unmunge exits with the libmunge error code; the ones tests check.
EMUNGE_CRED_INVALID = 14
EMUNGE_CRED_EXPIRED = 15
EMUNGE_CRED_REPLAYED = 17


class Decoded(NamedTuple):
    """What `unmunge` says about a valid credential: the payload and who minted it."""

    payload: bytes
    uid: int
    gid: int


class MungeDaemon(MungeServer):
    """The project's private munged plus CLI helpers to mint and check credentials."""

    def encode(
        self, payload: bytes = b"", uid: int | None = None, *, ttl: int | None = None
    ) -> str:
        """A credential carrying `payload`, minted as `uid` (default: this process's user).

        munged takes the uid from the socket peer, so minting for another user means running
        `munge` as that user (setpriv, which needs root); the gid is that user's primary
        group, or the uid itself for a uid with no passwd entry.
        """
        argv = ["munge", "-S", str(self.socket)]
        if ttl is not None:
            argv += ["-t", str(ttl)]
        if uid is not None and uid != os.getuid():
            argv = [*_as_user(uid), *argv]
        return run(argv, input=payload, timeout=30).stdout.decode().strip()

    def decode(self, credential: str) -> Decoded:
        """Payload, uid and gid of a credential; `ToolError` (exit status = munge error) if bad."""
        result = run(
            ["unmunge", "-S", str(self.socket), "-N", "-k", "UID,GID"],
            input=credential.encode(),
            timeout=30,
        )
        # Output: the selected metadata lines, a blank line, then the payload verbatim.
        header, _, payload = result.stdout.partition(b"\n\n")
        fields = dict(
            line.split(b":", 1) for line in header.splitlines() if b":" in line
        )
        return Decoded(payload, int(fields[b"UID"]), int(fields[b"GID"]))


def _as_user(uid: int) -> list[str]:
    try:
        gid = pwd.getpwuid(uid).pw_gid
    except KeyError:
        gid = uid
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]


def make_socket_dir() -> Path:
    """A fresh directory directly under /tmp that every user can search (mkdtemp is 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="shifter-munged-", dir="/tmp"))
    directory.chmod(0o755)
    return directory


@contextlib.contextmanager
def running_munged(key: bytes | None = None) -> Iterator[MungeDaemon]:
    """Start a private munged; stop it by PID and remove its directory on the way out."""
    directory = make_socket_dir()
    daemon = MungeDaemon(directory)
    try:
        daemon.start(key)
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)
