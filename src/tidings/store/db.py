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
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Connection, Engine, Insert, Integer, Text, create_engine, event, exc

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

    def write_busy(self) -> bool:
        """Whether another thread of this process holds SQLite's write turn right now."""
        return self._write_lock is not None and self._write_lock.locked()

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


# -- many rows at once ---------------------------------------------------------------------


def execute_many(
    conn: Connection,
    statement: Any,
    rows: list[dict[str, Any]],
    shared: dict[str, Any] | None = None,
    pg_sql: str | None = None,
) -> Any:
    """`statement` (an INSERT, or an UPDATE with its `pg_sql` form) for every row, each with
    the `shared` values besides its own, and without SQLAlchemy's per-row work: on SQLite the
    driver's executemany of the statement compiled once; on PostgreSQL one statement whose
    rows come as arrays (`unnest`). Measured: SQLAlchemy's per-row parameter processing was a
    fifth of a worker's record on SQLite, and on PostgreSQL each row's UPDATE was planned
    again (32 took 14.9 ms, against 2.0 ms as one statement)."""
    if not rows:
        return None
    shared = shared or {}
    keys = tuple(rows[0])
    json_keys = _json_columns(statement, keys)
    if json_keys:
        rows = [row | {k: compact_json(row[k]) for k in json_keys} for row in rows]
    if conn.dialect.name == "postgresql":
        sql = pg_sql or _pg_bulk_insert(statement, keys)
        columns = {name: [row[name] for row in rows] for name in keys}
        return conn.exec_driver_sql(sql, columns | shared)
    cache_key = (conn.dialect.name, id(statement), keys)
    compiled = _COMPILED.get(cache_key)
    if compiled is None:
        column_keys = list(keys) if isinstance(statement, Insert) else None  # these, not all
        done = statement.compile(dialect=conn.dialect, column_keys=column_keys)
        # The statement's own values (`attempt_count + 1`), besides the rows' parameters.
        binds = done.binds.items()
        fixed = {name: bind.effective_value for name, bind in binds if not bind.required}
        order = None if done.positiontup is None else itemgetter(*done.positiontup)
        compiled = _COMPILED[cache_key] = (done.string, order, fixed)
    sql, positional, fixed = compiled
    fixed = fixed | shared
    if positional is None:
        params: list[Any] = [fixed | row for row in rows]
    else:
        params = [positional(fixed | row) for row in rows]
    return conn.exec_driver_sql(sql, params)


_COMPILED: dict[tuple[str, int, tuple[str, ...]], tuple[str, Any, dict[str, Any]]] = {}


def _json_columns(statement: Any, keys: tuple[str, ...]) -> list[str]:
    table = statement.table
    return [k for k in keys if k in table.c and isinstance(table.c[k].type, JSON)]


def _pg_bulk_insert(statement: Any, keys: tuple[str, ...]) -> str:
    """`INSERT … SELECT … FROM unnest(arrays)` for an INSERT of these columns."""
    if not isinstance(statement, Insert):
        raise TypeError("PostgreSQL needs the bulk form of this statement (pg_sql)")
    table = statement.table
    arrays = ", ".join(f"%({k})s::{_pg_array_type(table.c[k].type)}[]" for k in keys)
    values = ", ".join(f"{k}::json" if isinstance(table.c[k].type, JSON) else k for k in keys)
    names = ", ".join(keys)
    # Names from our schema only: each key was looked up in the table's columns above.
    return f"INSERT INTO {table.name} ({names}) SELECT {values} FROM unnest({arrays}) AS v({names})"  # noqa: S608


def _pg_array_type(column_type: Any) -> str:
    if isinstance(column_type, JSON | Text):
        return "text"  # JSON comes as its text, cast in the SELECT
    if isinstance(column_type, Integer):
        return "int"
    python_type = column_type.python_type
    return {str: "varchar", float: "float8", bool: "bool"}[python_type]
