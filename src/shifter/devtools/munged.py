"""A private `munged` with its own key and socket, for the demo and the tests.

The daemon runs in the foreground (`-F`, so the PID we start is the daemon; `-f` forces it
past ownership checks meant for the system install). munged and its clients need every
directory on the socket's path searchable by all users, so the directory is made 0755.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from shifter import proc
from shifter.devtools.service import ServiceProcess
from shifter.errors import ToolError

KEY_BYTES = 1024
START_TIMEOUT_S = 10.0


class MungeServer(ServiceProcess):
    """One `munged -F` process; `socket` is what clients pass as `-S` (or MUNGE_OPT_SOCKET)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.key_file = self.directory / "munge.key"
        self.socket = self.directory / "run" / "munge.socket"
        self.pid_file = self.directory / "run" / "munged.pid"
        self.log_file = self.directory / "munged.log"
        self.seed_file = self.directory / "munged.seed"
        self.output_file = self.directory / "munged.stderr"
        super().__init__()

    def start(self, key: bytes | None = None) -> MungeServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        self.socket.parent.mkdir(exist_ok=True)
        self.socket.parent.chmod(0o755)  # mkdir's mode is filtered by the umask
        self.key_file.touch(mode=0o600)
        self.key_file.write_bytes(key if key is not None else os.urandom(KEY_BYTES))
        # In the foreground munged logs to stderr, not --log-file; keep both in the directory.
        self._process = proc.spawn(
            [
                "munged", "-F", "-f",
                f"--socket={self.socket}",
                f"--key-file={self.key_file}",
                f"--pid-file={self.pid_file}",
                f"--log-file={self.log_file}",
                f"--seed-file={self.seed_file}",
            ],
            output_path=self.output_file,
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
        output = self.output_file.read_text(errors="replace")
        self.stop()
        raise ToolError(
            "munged did not create its socket",
            stderr_tail="\n".join(output.splitlines()[-10:]),
            hint="is Debian's munge package installed? (scripts/install.sh)",
        )

