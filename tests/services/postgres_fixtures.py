"""A private PostgreSQL server for the gateway's store tests (registered in conftest).

`postgres_server` (session): `initdb` in a fresh directory owned by the `postgres` system
account (the server refuses to run as root), then `postgres -D DIR -k DIR -p PORT -c
listen_addresses=127.0.0.1` run as that account, stopped by its PID (SIGINT, the fast
shutdown) at the end of the session. Trust authentication on loopback only: the cluster
lives for one test session and holds nothing.

`postgres_database` (module): a fresh database per test module, dropped afterwards; its
value is the SQLAlchemy URL (`postgresql+psycopg://postgres@127.0.0.1:PORT/NAME`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ACCOUNT = "postgres"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    """A loopback port nobody listens on now (the caller binds it soon after)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    directory: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{ACCOUNT}@127.0.0.1:{self.port}/{database}"

    def execute(self, statement: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=ACCOUNT, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _as_postgres() -> list[str]:
    return ["setpriv", f"--reuid={ACCOUNT}", f"--regid={ACCOUNT}", "--init-groups"]


def _require() -> None:
    for tool in ("initdb", "postgres"):
        if not (PG_BIN / tool).is_file():
            pytest.fail(f"{PG_BIN / tool} not found: install the Debian package postgresql-15 "
                        "(sudo scripts/install.sh)", pytrace=False)
    try:
        pwd.getpwnam(ACCOUNT)
    except KeyError:
        pytest.fail(f"no {ACCOUNT} account: install postgresql-15", pytrace=False)


def _wait_ready(server: PostgresServer, log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            with psycopg.connect(host="127.0.0.1", port=server.port, user=ACCOUNT,
                                 dbname="postgres", connect_timeout=2):
                return
        except psycopg.OperationalError:
            time.sleep(0.1)
    server.stop()
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise RuntimeError(f"postgres did not start:\n{tail}")


def start_postgres(directory: Path) -> PostgresServer:
    account = pwd.getpwnam(ACCOUNT)
    data = directory / "data"
    directory.chmod(0o755)
    os.chown(directory, account.pw_uid, account.pw_gid)
    subprocess.run(
        [*_as_postgres(), str(PG_BIN / "initdb"), "-D", str(data), "--auth=trust",
         f"--username={ACCOUNT}", "--encoding=UTF8", "--no-sync", "--no-instructions"],
        check=True, capture_output=True, cwd=directory,
    )
    port = free_port()
    log = directory / "postgres.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [*_as_postgres(), str(PG_BIN / "postgres"), "-D", str(data), "-k", str(directory),
             "-p", str(port), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "max_connections=200"],
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=directory,
        )
    server = PostgresServer(directory, port, process)
    _wait_ready(server, log)
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL 15 server on a free loopback port for the whole session."""
    _require()
    directory = Path(tempfile.mkdtemp(prefix="shifter-postgres-", dir="/tmp"))
    server = None
    try:
        server = start_postgres(directory)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database for one test module; yields its SQLAlchemy URL."""
    name = f"shifter_{uuid.uuid4().hex[:12]}"
    postgres_server.execute(f"CREATE DATABASE {name}")
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
