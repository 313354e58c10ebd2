"""A private PostgreSQL 15 server, for the gateway's store tests and its benchmark.

`initdb` in a fresh directory owned by the `postgres` system account (the server refuses to
run as root), then `postgres -D DIR/data -k DIR -p PORT -c listen_addresses=127.0.0.1` as
that account (through `setpriv`), stopped by its PID with SIGINT (PostgreSQL's fast
shutdown). Trust authentication on loopback only: the cluster lives for one test session or
one benchmark and holds nothing. The tests ask for `durable=False` (no fsync at all); the
benchmark keeps fsync on, as a gateway's store would.
"""

from __future__ import annotations

import os
import pwd
import signal
import time
from pathlib import Path

from shifter import proc
from shifter.devtools.service import ServiceProcess, free_port
from shifter.errors import ShifterError, ToolError

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ACCOUNT = "postgres"
INSTALL_HINT = "install Debian's postgresql-15 (sudo scripts/install.sh)"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
_AS_POSTGRES = ("setpriv", f"--reuid={ACCOUNT}", f"--regid={ACCOUNT}", "--init-groups")


def missing_postgres() -> str | None:
    """What this machine lacks to run the server (one phrase), or None."""
    for tool in ("initdb", "postgres"):
        if not (PG_BIN / tool).is_file():
            return f"{PG_BIN / tool} not found"
    try:
        pwd.getpwnam(ACCOUNT)
    except KeyError:
        return f"no {ACCOUNT} account"
    return None


class PostgresServer(ServiceProcess):
    """One `postgres` process with its cluster in `directory`; a context manager."""

    stop_signal = signal.SIGINT
    stop_timeout_s = STOP_TIMEOUT_S

    def __init__(self, directory: Path, *, durable: bool = True) -> None:
        self.directory = Path(directory)
        self.durable = durable
        self.port = free_port()
        self.log_path = self.directory / "postgres.log"
        super().__init__()

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of `database` on this server."""
        return f"postgresql+psycopg://{ACCOUNT}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        missing = missing_postgres()
        if missing is not None:
            raise ShifterError(f"cannot start PostgreSQL: {missing}", hint=INSTALL_HINT)
        account = pwd.getpwnam(ACCOUNT)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        os.chown(self.directory, account.pw_uid, account.pw_gid)
        data = str(self.directory / "data")
        no_sync = () if self.durable else ("--no-sync",)
        proc.run(
            [*_AS_POSTGRES, str(PG_BIN / "initdb"), "-D", data, "--auth=trust",
             f"--username={ACCOUNT}", "--encoding=UTF8", *no_sync, "--no-instructions"],
            cwd=str(self.directory),
        )
        no_fsync = () if self.durable else ("-c", "fsync=off")
        self._process = proc.spawn(
            [*_AS_POSTGRES, str(PG_BIN / "postgres"), "-D", data, "-k", str(self.directory),
             "-p", str(self.port), "-c", "listen_addresses=127.0.0.1", *no_fsync,
             "-c", "max_connections=200"],
            output_path=self.log_path, cwd=self.directory,
        )
        self._wait_ready()
        return self

    def execute(self, statement: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=ACCOUNT,
                             dbname="postgres", autocommit=True) as connection:
            connection.execute(statement)  # type: ignore[arg-type]

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
