"""The gateway's metadata store: image records, jobs and leases in SQLite or PostgreSQL.

`MetadataStore.open(url)` connects and creates or upgrades the schema (`store_schema`).
Every change runs in `write(action)`: one transaction, retried when it lost a race with
another gateway (a unique key taken meanwhile, a busy SQLite file, a PostgreSQL
serialisation failure), so `action` must only touch the database. Queries live in
`store_images` and `store_jobs` as functions of a connection, so the manager can combine
several in one transaction. `generation` changes whenever this process commits a change to
the image records, so what it read before can be known out of date (`readycache`).

SQLite is the default: one file shared by every gateway process on the host, in WAL mode
(readers never wait for the writer) with a busy timeout. Write transactions start with
`BEGIN IMMEDIATE`, which takes the write lock up front: two processes that both read and
then write can otherwise deadlock on the lock upgrade, and SQLite answers that with an
error rather than a wait.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from shifter.errors import ShifterError
from shifter.gateway.store_schema import migrate

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_S = 30.0
WRITE_ATTEMPTS = 6
POOL_SIZE = 16
_READ_ONLY = "shifter_read_only"
# PostgreSQL SQLSTATEs worth a retry: serialization_failure, deadlock_detected.
_RETRY_SQLSTATES = frozenset({"40001", "40P01"})


class StoreError(ShifterError):
    """The metadata store cannot be reached or used."""


def _retryable(error: DBAPIError) -> bool:
    if isinstance(error, IntegrityError):
        return True  # a unique key another gateway took meanwhile: re-read and decide again
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate in _RETRY_SQLSTATES:
        return True
    return isinstance(error, OperationalError) and "locked" in str(error.orig).lower()


class MetadataStore:
    """One database; safe to share between threads (a connection pool underneath)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writes = itertools.count(1)
        # Changes when this process commits a change to the records: what it read before
        # (the lookup cache) is then out of date.
        self.generation = 0

    @classmethod
    def open(cls, url: str) -> MetadataStore:
        """Connect to `url` (sqlite:////abs/file or postgresql+psycopg://...) and bring its
        schema up to date."""
        store = cls(_make_engine(url))
        try:
            found = store.write(migrate)
        except StoreError as error:
            store.close()
            raise StoreError(
                f"cannot open the metadata store: {error.message}",
                hint="check MetadataStore in imagemanager.json and that the database is up",
            ) from error
        except BaseException:
            store.close()
            raise
        if found == 0:
            log.info("created the metadata store schema")
        return store

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only transaction (on SQLite a plain BEGIN: it does not block writers)."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{_READ_ONLY: True})
                with conn.begin():
                    yield conn
        except DBAPIError as error:
            raise StoreError(f"metadata store query failed: {_reason(error)}") from error

    def write(
        self, action: Callable[[Connection], T], *, attempts: int = WRITE_ATTEMPTS,
        changes_records: bool = True,
    ) -> T:
        """Run `action(conn)` in one write transaction, retrying lost races. Say
        `changes_records=False` for one that writes only usage rows."""
        for attempt in range(1, attempts + 1):
            try:
                with self.engine.begin() as conn:
                    result = action(conn)
                if changes_records:
                    self.generation = next(self._writes)  # atomic, unlike `+= 1`
                return result
            except DBAPIError as error:
                if attempt == attempts or not _retryable(error):
                    raise StoreError(f"metadata store update failed: {_reason(error)}") from error
                log.debug("store transaction retried (%s): %s", attempt, _reason(error))
                time.sleep(random.uniform(0.005, 0.02) * attempt)
        raise AssertionError("unreachable")


def _reason(error: DBAPIError) -> str:
    # Only the driver's first line: SQLAlchemy's full text repeats the statement and could
    # carry parameters.
    return str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database)
    if parsed.get_backend_name() == "postgresql":
        # pre_ping: a PostgreSQL restart must not fail the first request after it.
        return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE,
                             max_overflow=POOL_SIZE)
    raise StoreError(f"unsupported metadata store {parsed.get_backend_name()!r}")


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if not database or not os.path.isabs(database):
        raise StoreError(
            "the SQLite metadata store must be an absolute file path",
            hint='write "sqlite:////var/lib/shifter/imagegw.sqlite"',
        )
    directory = Path(database).parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The store says who may use which private image: the gateway's account only.
        # SQLite gives its -wal and -shm files the database file's mode.
        os.close(os.open(database, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        for path in (database, f"{database}-wal", f"{database}-shm"):
            if os.path.exists(path) and os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)
    except OSError as error:
        raise StoreError(
            f"cannot create the metadata store {database}: {error.strerror}",
            hint="the gateway's account must own the store's directory",
        ) from error
    # A pool as large as the threads that use it (requests, workers, the usage log): with
    # fewer, every request beyond the pool opened and set up a connection of its own.
    engine = create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
        pool_size=POOL_SIZE, max_overflow=POOL_SIZE,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver must not open transactions itself: `_on_begin` does, with the right mode.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode up to a power cut
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine
