"""A private PostgreSQL 15 server for the gateway benchmark.

`initdb` in a fresh directory owned by the `postgres` system account (the server refuses to
run as root), then `postgres -D DIR -k DIR -p PORT` as that account on 127.0.0.1 with trust
authentication: the cluster lives for one benchmark and holds nothing. Unlike the test
fixture's, this server keeps `fsync` on (a gateway's store would), and it is stopped by its
PID (SIGINT, the fast shutdown). `tests/services/postgres_fixtures.py` does the same for the
tests; it is not imported here because it is a pytest plugin.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path

from shifter.devtools.service import ServiceProcess
from shifter.errors import ShifterError, ToolError

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ACCOUNT = "postgres"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    """A loopback port nobody listens on now (the caller binds it soon after)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer(ServiceProcess):
    """One `postgres` process in `directory`; a context manager."""

    stop_signal = signal.SIGINT  # PostgreSQL's "fast shutdown"
    stop_timeout_s = STOP_TIMEOUT_S

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.port = free_port()
        self.log_path = self.directory / "postgres.log"
        super().__init__()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{ACCOUNT}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        for tool in ("initdb", "postgres"):
            if not (PG_BIN / tool).is_file():
                raise ShifterError(f"{PG_BIN / tool} not found",
                                   hint="install Debian's postgresql-15 (scripts/install.sh)")
        account = pwd.getpwnam(ACCOUNT)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        os.chown(self.directory, account.pw_uid, account.pw_gid)
        as_postgres = ["setpriv", f"--reuid={ACCOUNT}", f"--regid={ACCOUNT}", "--init-groups"]
        subprocess.run(
            [*as_postgres, str(PG_BIN / "initdb"), "-D", str(self.directory / "data"),
             "--auth=trust", f"--username={ACCOUNT}", "--encoding=UTF8", "--no-instructions"],
            check=True, capture_output=True, cwd=self.directory,
        )
        with open(self.log_path, "wb") as output:
            self._process = subprocess.Popen(
                [*as_postgres, str(PG_BIN / "postgres"), "-D", str(self.directory / "data"),
                 "-k", str(self.directory), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.directory,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import psycopg

        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self._process.poll() is None:
            try:
                with psycopg.connect(host="127.0.0.1", port=self.port, user=ACCOUNT,
                                     dbname="postgres", connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
        self.stop()
        raise ToolError("postgres did not start", stderr_tail=tail)

