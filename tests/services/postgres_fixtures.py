"""A private PostgreSQL server for the gateway's store tests (registered in conftest).

`postgres_server` (session): `shifter.devtools.postgres.PostgresServer` without fsync, in a
fresh directory under /tmp, stopped by its PID at the end of the session.

`postgres_database` (module): a fresh database per test module, dropped afterwards; its
value is the SQLAlchemy URL (`postgresql+psycopg://postgres@127.0.0.1:PORT/NAME`).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shifter.devtools.postgres import INSTALL_HINT, PostgresServer, missing_postgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL 15 server on a free loopback port for the whole session."""
    missing = missing_postgres()
    if missing is not None:
        pytest.fail(f"{missing}: {INSTALL_HINT}", pytrace=False)
    directory = Path(tempfile.mkdtemp(prefix="shifter-postgres-", dir="/tmp"))
    try:
        with PostgresServer(directory, durable=False) as server:
            yield server
    finally:
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
