"""The database handle: engine set-up for SQLite and PostgreSQL, transactions, error translation.

A request or a worker step owns exactly one transaction: `db.read()` or `db.write()`.
Driver errors are translated here, so the layers above never import a driver:
an integrity error becomes `Conflict`, a value the database cannot hold (PostgreSQL refuses NUL
characters in text) `InvalidInput`, a locked or unreachable database `Unavailable`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc

from tidings.domain.catalog import compact_json
from tidings.errors import Conflict, InvalidInput, Unavailable

SQLITE_BUSY_TIMEOUT_MS = 5000


def make_engine(url: str) -> Engine:
    """An engine with the settings each backend needs."""
    # Read with `json`: orjson reads an integer beyond 64 bits as a float, losing digits.
    codec = {"json_serializer": compact_json, "json_deserializer": json.loads}
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **codec,
        )
        _tune_sqlite(engine)
        return engine
    # No server-side prepared statements: after a few runs PostgreSQL would switch the claim
    # query to a generic plan that scans the queue (measured: 1 ms became 40 ms).
    return create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        connect_args={"prepare_threshold": None},
        **codec,
    )


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below), so pysqlite must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes the write lock up front: two deferred transactions that both
        # read then write would otherwise fail with "database is locked" at the upgrade.
        immediate = conn.get_execution_options().get("tidings_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """Owns the engine; hands out one transaction at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time. Queueing this process's writers on a lock hands the
        # file over at once; left to SQLite's busy handler they poll and sleep (measured: most
        # of a publish's time under load was spent there).
        self._write_lock = threading.Lock() if self.is_sqlite else None

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(make_engine(url))

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with translate_errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Connection]:
        """A write transaction. `durable=False` (PostgreSQL) commits without waiting for the
        WAL flush: for a worker's claims and records only, whose loss in a server crash
        means a delivery sent again (at-least-once), never a lost event."""
        with self._writer(), translate_errors(), self.engine.connect() as conn:
            conn = conn.execution_options(tidings_write=True)
            with conn.begin():
                if not durable and not self.is_sqlite:
                    conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                yield conn

    @contextmanager
    def _writer(self) -> Iterator[None]:
        if self._write_lock is None:
            yield
            return
        if not self._write_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise Unavailable("the database is busy; try again shortly", retry_after=1)
        try:
            yield
        finally:
            self._write_lock.release()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except exc.SQLAlchemyError:
            return False

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except exc.IntegrityError as error:
        raise Conflict("this conflicts with an existing object") from error
    except exc.DataError as error:
        if "NUL" in str(error.orig):
            raise InvalidInput("text in this request contains a NUL (\\u0000) character") from error
        raise InvalidInput("a value in this request is out of the database's range") from error
    except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError) as error:
        raise Unavailable(
            "the database is busy or unreachable; try again shortly", retry_after=1
        ) from error
