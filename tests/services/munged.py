"""A private `munged` for tests, with CLI helpers to mint and check credentials.

The daemon runs in the foreground (`-F`, so the PID we start is the daemon) with its own
key, socket, PID, log and seed files in a temp directory directly under /tmp: munged and its
clients need every directory on the socket's path searchable by all users, and pytest's own
temp dirs (/tmp/pytest-of-root, 0700) are not. `encode`/`decode` call the `munge`/`unmunge`
CLIs with `-S SOCKET`; the product talks to libmunge itself.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from shifter.errors import ToolError
from shifter.proc import find_tool, run

KEY_BYTES = 1024
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
# unmunge exits with the libmunge error code; the ones tests check.
EMUNGE_CRED_INVALID = 14
EMUNGE_CRED_EXPIRED = 15
EMUNGE_CRED_REPLAYED = 17


class Decoded(NamedTuple):
    """What `unmunge` says about a valid credential: the payload and who minted it."""

    payload: bytes
    uid: int
    gid: int


class MungeDaemon:
    """One `munged -F` process; `socket` is what clients pass as `-S`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.key_file = directory / "munge.key"
        self.socket = directory / "run" / "munge.socket"
        self.pid_file = directory / "run" / "munged.pid"
        self.log_file = directory / "munged.log"
        self.seed_file = directory / "munged.seed"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("munged is not running")
        return self._process.pid

    def start(self, key: bytes | None = None) -> MungeDaemon:
        binary = find_tool("munged")
        self.directory.chmod(0o755)
        self.socket.parent.mkdir(mode=0o755, exist_ok=True)
        self.socket.parent.chmod(0o755)  # mkdir's mode is filtered by the umask
        self.key_file.touch(mode=0o600)
        self.key_file.write_bytes(key if key is not None else os.urandom(KEY_BYTES))
        # In the foreground munged logs to stderr, not --log-file; keep both in the directory.
        with open(self.directory / "munged.stderr", "wb") as stderr:
            self._process = subprocess.Popen(
                [
                    binary, "-F", "-f",
                    f"--socket={self.socket}",
                    f"--key-file={self.key_file}",
                    f"--pid-file={self.pid_file}",
                    f"--log-file={self.log_file}",
                    f"--seed-file={self.seed_file}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_for_socket()
        return self

    def _wait_for_socket(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.socket.is_socket():
                return
            if self._process.poll() is not None:
                break
            time.sleep(0.02)
        output = (self.directory / "munged.stderr").read_text(errors="replace")
        self.stop()
        raise ToolError(
            "munged did not create its socket",
            stderr_tail="\n".join(output.splitlines()[-10:]),
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

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

    def __enter__(self) -> MungeDaemon:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


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
