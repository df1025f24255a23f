"""The database handle: engine set-up for SQLite and PostgreSQL, transactions, error translation.

A request or a worker step owns exactly one transaction: `db.read()` or `db.write()`.
Driver errors are translated here, so the layers above never import a driver:
an integrity error becomes `Conflict`, a value the database cannot hold (PostgreSQL refuses NUL
characters in text) `InvalidInput`, a locked or unreachable database `Unavailable`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import (
    JSON,
    Connection,
    Dialect,
    Engine,
    Insert,
    Integer,
    String,
    Text,
    TypeDecorator,
    bindparam,
    cast,
    create_engine,
    event,
    exc,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from tidings.domain.catalog import compact_json

if TYPE_CHECKING:
    from tidings.config import Settings
from tidings.errors import Conflict, InvalidInput, Unavailable

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5000
# A pooled PostgreSQL connection idle this long is pinged before use (see `_ping_when_idle`).
PING_AFTER_IDLE_S = 1.0
# Key in a pooled connection's `info`: its session's synchronous_commit as `write` left it.
_SYNC_COMMIT = "tidings_synchronous_commit"
# Execution option of a transaction's connection: the statements `at_commit` put off.
_AT_COMMIT = "tidings_at_commit"
# How a writer in an event loop waits for SQLite's write turn while a thread holds it (see
# `Database.write_committed_in_thread`): WRITE_TURN_QUICK_POLLS tries WRITE_TURN_POLL_S
# apart (a publish batch or a worker's transaction takes a few milliseconds), then
# WRITE_TURN_SLOW_POLL_S apart.
WRITE_TURN_POLL_S = 0.0005
WRITE_TURN_QUICK_POLLS = 20
WRITE_TURN_SLOW_POLL_S = 0.005

T = TypeVar("T")


def make_engine(url: str, *, prepared_statements: bool = True) -> Engine:
    """An engine with the settings each backend needs. `prepared_statements=False`: none on
    PostgreSQL at all (for a pooler in transaction mode)."""
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
    # Server-side prepared statements only for the statements marked `PREPARED`: after a
    # few runs PostgreSQL may switch a prepared statement to its generic plan, and the
    # generic plan of a query that looks for due deliveries scans the queue (measured: 1 ms
    # became 40 ms). Those stay unprepared; the marked ones find rows by id, whatever the plan.
    engine = create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        # Never prepared by count; None forbids `prepare=True` too.
        connect_args={"prepare_threshold": sys.maxsize if prepared_statements else None},
        **codec,
    )
    event.listen(engine, "do_execute", _execute_prepared)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's `pool_pre_ping`, but only for a connection idle PING_AFTER_IDLE_S or
    more: pinging at every checkout was one more round trip per transaction (a worker's
    claim is one). A connection the server dropped within that second fails its first
    statement instead (503, or the worker's retry) and SQLAlchemy then renews the pool."""

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["tidings_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("tidings_idle_since")
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # the pool connects again (up to 3 tries)
            raise exc.DisconnectionError() from error


# Execution options of a statement PostgreSQL may prepare once per connection and plan
# generically: parsing and planning each time was ~20 us of the server's CPU per delivery
# in a claim-and-record loop (eight statements per 32 deliveries). No effect on SQLite.
PREPARED = {"tidings_prepare": True}


def _execute_prepared(cursor: Any, statement: str, parameters: Any, context: Any) -> bool | None:
    if context.execution_options.get("tidings_prepare"):
        cursor.execute(statement, parameters, prepare=True)
        return True
    return None  # not handled: the dialect executes it as usual


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
        self._loop_writes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWrites] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_url(cls, url: str, *, prepared_statements: bool = True) -> Database:
        return cls(make_engine(url, prepared_statements=prepared_statements))

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls.from_url(
            settings.sqlalchemy_url, prepared_statements=settings.database_prepared_statements
        )

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with translate_errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Connection]:
        """A write transaction. `durable=False` (PostgreSQL) commits without waiting for the
        WAL flush: for a worker's claims and records only, whose loss in a server crash
        means a delivery sent again (at-least-once), never a lost event."""
        with self._writer(), self._transaction(durable) as conn:
            yield conn

    @contextmanager
    def _transaction(self, durable: bool) -> Iterator[Connection]:
        """`write()` once the write turn is held."""
        with translate_errors(), self.engine.connect() as conn:
            conn = conn.execution_options(tidings_write=True)
            if self.is_sqlite:
                with conn.begin():
                    yield conn
                return
            # A session setting, changed only when the wanted one differs from what this
            # connection has: a `SET LOCAL` in every transaction was one more round trip each.
            info = conn.info  # lives as long as the DBAPI connection
            try:
                with conn.begin():
                    state = info.get(_SYNC_COMMIT)
                    if durable and state is not None:
                        conn.exec_driver_sql("RESET synchronous_commit")  # the server's own
                        info.pop(_SYNC_COMMIT)
                    elif not durable and state != "off":
                        conn.exec_driver_sql("SET synchronous_commit = off")
                        info[_SYNC_COMMIT] = "off"
                    yield conn
            except BaseException:
                # A rolled-back transaction undoes its SET: the state is unknown.
                info[_SYNC_COMMIT] = "unknown"
                raise

    @asynccontextmanager
    async def write_committed_in_thread(
        self, *, durable: bool = True, defer: bool = False
    ) -> AsyncIterator[Connection]:
        """`write()` for a caller in an event loop: the statements run in the loop, and the
        end of the transaction (the COMMIT, which on SQLite writes the WAL and now and then
        checkpoints it, and the connection's return to the pool) in a thread, so that the
        loop goes on meanwhile. The driver lets go of the GIL for the whole COMMIT, which is
        ~300 us of a SQLite publish batch: on the other core rather than the loop's
        (bench/README.md, session 12).

        The loop is never stopped to wait for the write turn: a thread holding it (an API
        request, housekeeping) is waited for by trying again every WRITE_TURN_POLL_S, then
        every WRITE_TURN_SLOW_POLL_S, up to the busy timeout. The write turn is held until
        the COMMIT is done. A loop's writers (in `serve`, the publish batches and the
        worker's claims and records) come here through `write_in_loop`, whose one task per
        loop takes their turns one after another.

        `defer=True`: the statements given to `at_commit` run in that thread too, just
        before the COMMIT, on the DBAPI cursor (`_CursorStatements`); an error there rolls
        back and is raised here."""
        await self._write_turn_in_loop()
        deferred: list[Callable[[Statements], object]] = []
        try:
            manager = self._transaction(durable)
            conn = manager.__enter__()
            if defer:
                conn.execution_options(**{_AT_COMMIT: deferred})
        except BaseException:
            self._give_back_turn()
            raise

        def finish(exc: BaseException | None) -> None:
            """End the transaction (rolled back if `exc`, which is then raised, as
            translated), and give back the write turn."""
            try:
                if exc is None:
                    manager.__exit__(None, None, None)
                elif not manager.__exit__(type(exc), exc, exc.__traceback__):
                    raise exc
            finally:
                self._give_back_turn()

        try:
            yield conn
        except BaseException as exc:  # rolled back here, at once
            finish(exc)
            return

        def end() -> None:
            try:
                if deferred:
                    with self._statements_at_commit(conn) as runner:
                        for statements in deferred:
                            statements(runner)
            except BaseException as exc:
                finish(exc)
                return
            finish(None)

        # Handed to the pool at once: `to_thread`, a coroutine, reached the pool only when
        # the loop next ran its task, behind every callback already queued (in e2e the
        # thread started 1.1 ms after, median, and 8 ms at the 90th percentile, holding
        # the write turn all that time; 1.5 ms at the 90th this way).
        ending = asyncio.get_running_loop().run_in_executor(None, end)
        try:
            await asyncio.shield(ending)
        except asyncio.CancelledError:
            await ending  # the connection and the write turn are given back either way
            raise

    async def write_in_loop(
        self, body: Callable[[Connection], T], *, durable: bool = True, defer: bool = False
    ) -> T:
        """`body(conn)` in a write transaction of `write_committed_in_thread`, for a caller in
        an event loop; returns what `body` returned, once committed.

        On SQLite the loop's writers (in `serve`, the publish batches and the worker's
        claims and records) share transactions: the writes that come while one transaction
        is written are the next one, together, one after another (those that do not
        `defer` first, so that a claim is never written after rows that wait for the
        COMMIT: it reads its own transaction). Whatever it writes, a transaction holds the
        write turn through three or four hand-overs of the GIL between the loop and the
        committing thread, ~1 ms each (bench/README.md, session 13); in e2e, 433 writes
        took 321 transactions this way (session 14). If a shared
        transaction fails, it is rolled back and each write is tried again alone, so that
        one cannot fail the others; `Unavailable` (the turn not had in time) is every one's.
        """
        if self._write_lock is None:
            async with self.write_committed_in_thread(durable=durable, defer=defer) as conn:
                return body(conn)
        # `durable` is PostgreSQL's (see `write`); a SQLite transaction commits alike.
        loop = asyncio.get_running_loop()
        writes = self._loop_writes.get(loop)
        if writes is None:
            writes = self._loop_writes[loop] = _LoopWrites()
        write = _LoopWrite(body, defer, loop.create_future())
        writes.waiting.append(write)
        if writes.task is None:  # it starts after this turn of the loop
            writes.task = loop.create_task(self._write_waiting(writes))
        result: T = await write.future
        return result

    async def _write_waiting(self, writes: _LoopWrites) -> None:
        batch: list[_LoopWrite] = []
        try:
            while writes.waiting:
                batch = [w for w in writes.waiting if not w.future.done()]
                writes.waiting = []
                if len(batch) == 1:
                    await self._write_alone(batch[0])
                elif batch:
                    await self._write_together(batch)
                # The writers just answered may have more; they write it before the loop
                # comes round again.
                await asyncio.sleep(0)
        except BaseException:  # cancelled: so are the writes not answered
            for write in batch + writes.waiting:
                write.future.cancel()
            raise
        finally:
            writes.task = None

    async def _write_together(self, batch: list[_LoopWrite]) -> None:
        batch.sort(key=lambda write: write.defer)
        results: list[Any] = []
        try:
            async with self.write_committed_in_thread(defer=True) as conn:
                deferred = conn.get_execution_options()[_AT_COMMIT]
                for write in batch:
                    conn.execution_options(**{_AT_COMMIT: deferred if write.defer else None})
                    results.append(write.body(conn))
        except Unavailable as exc:
            for write in batch:
                write.fail(exc)
        except Exception:
            log.info("%d writes sharing a transaction failed; writing each alone", len(batch))
            for write in batch:
                await self._write_alone(write)
        else:
            for write, result in zip(batch, results, strict=True):
                write.answer(result)

    async def _write_alone(self, write: _LoopWrite) -> None:
        try:
            async with self.write_committed_in_thread(defer=write.defer) as conn:
                result = write.body(conn)
        except Exception as exc:
            write.fail(exc)
        else:
            write.answer(result)

    @contextmanager
    def _statements_at_commit(self, conn: Connection) -> Iterator[Statements]:
        """What the statements put off to the commit (`at_commit`) run on, in the thread
        that commits: on SQLite the DBAPI cursor (`_CursorStatements`), else `conn`."""
        if not self.is_sqlite:
            yield conn
            return
        runner = _CursorStatements(conn)
        try:
            yield runner
        finally:
            runner.close()

    async def _write_turn_in_loop(self) -> None:
        lock = self._write_lock
        if lock is None:
            return
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        polls = 0
        while not lock.acquire(blocking=False):
            if time.monotonic() >= deadline:
                raise Unavailable("the database is busy; try again shortly", retry_after=1)
            polls += 1
            await asyncio.sleep(
                WRITE_TURN_POLL_S if polls <= WRITE_TURN_QUICK_POLLS else WRITE_TURN_SLOW_POLL_S
            )

    def _give_back_turn(self) -> None:
        if self._write_lock is not None:
            self._write_lock.release()

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


@dataclass
class _LoopWrite:
    """A write waiting in `Database.write_in_loop`."""

    body: Callable[[Connection], Any]
    defer: bool
    future: asyncio.Future[Any]

    def answer(self, result: Any) -> None:
        if not self.future.done():  # else its caller went away
            self.future.set_result(result)

    def fail(self, error: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(error)


@dataclass
class _LoopWrites:
    """One event loop's writes waiting for `Database.write_in_loop`, and the task writing
    them (None when none is left)."""

    waiting: list[_LoopWrite] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class Statements(Protocol):
    """What `execute_many` (and so `at_commit`'s statements) needs of a connection: a
    `Connection`, or in the thread that commits, on SQLite, a `_CursorStatements`."""

    @property
    def dialect(self) -> Dialect: ...

    def exec_driver_sql(
        self, statement: str, parameters: Any = ..., execution_options: Any = ...
    ) -> Any: ...


class _CursorStatements:
    """`exec_driver_sql` straight on the DBAPI cursor of a transaction's connection, its
    errors raised as SQLAlchemy raises them (so `translate_errors` reads them alike). For the
    statements put off to the commit: SQLAlchemy's work around each (its execution context,
    events and result) was Python that the committing thread ran holding the GIL while the
    loop waited for it, and each wait for the GIL is up to the switch interval there
    (bench/README.md, session 14)."""

    def __init__(self, conn: Connection) -> None:
        self.dialect = conn.dialect
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None, "a connection in a transaction has one"
        self._cursor = dbapi_connection.cursor()
        self._error: type[Exception] = conn.dialect.loaded_dbapi.Error

    def exec_driver_sql(
        self, statement: str, parameters: Any = (), execution_options: Any = None
    ) -> Any:
        """(`execution_options` are PostgreSQL's; this runs on SQLite.)"""
        try:
            return self._cursor.execute(statement, parameters)
        except self._error as error:
            raise exc.DBAPIError.instance(statement, parameters, error, self._error) from error

    def close(self) -> None:
        self._cursor.close()


def at_commit(conn: Connection, statements: Callable[[Statements], object]) -> None:
    """Run `statements` in `conn`'s transaction, for writes whose results nobody reads: in
    the thread that commits it, just before the COMMIT, when it was opened by
    `write_committed_in_thread(defer=True)`; at once otherwise. A loop so spends no time in
    SQLite's own work on the rows (the driver lets go of the GIL for it; in e2e, 8% of
    `serve`'s samples were inserts and updates run in the loop). `statements` is given a
    `Statements`: `conn` itself, or at the commit on SQLite the DBAPI cursor
    (`_CursorStatements`), so it may use `exec_driver_sql` and `execute_many` only."""
    deferred = conn.get_execution_options().get(_AT_COMMIT)
    if deferred is None:
        statements(conn)
    else:
        deferred.append(statements)


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
    conn: Statements,
    statement: Any,
    rows: list[dict[str, Any]],
    shared: dict[str, Any] | None = None,
    pg_sql: str | None = None,
    sqlite_sql: str | None = None,
) -> int:
    """`statement` (an INSERT; for an UPDATE, the table it writes, its text given as
    `pg_sql` and `sqlite_sql`) for every row, each with the `shared` values besides its own,
    as few statements as possible; returns how many rows it changed. An INSERT writes the
    shared values into every row; an UPDATE's texts name them (`%(name)s` on PostgreSQL,
    columns of `{rows}` on SQLite).

    PostgreSQL: one statement whose rows come as one JSON document, `%(rows)s`, read with
    `json_to_recordset` (the `pg_sql` of an UPDATE names its columns and their types there).
    SQLite: the rows as one multi-row VALUES list per statement (`{rows}` in `sqlite_sql`
    stands for it, as a subquery whose columns are the rows' keys and the shared ones; see
    SQLITE_ROWS_PER_STATEMENT). The first key of every row must not be None.

    Why not the driver's executemany on SQLite: it runs the statement once per row, and the
    driver lets go of the GIL around every run. With another thread running Python meanwhile
    (in `tidings serve`, the event loop beside the publish writer), getting it back took up
    to the switch interval each time: 143 rows that took 0.5 ms alone took 200 ms against a
    busy thread, and 4 ms as one statement (bench/README.md, session 7). Before that,
    SQLAlchemy's per-row parameter processing was a fifth of a worker's record; on
    PostgreSQL each row's UPDATE was planned again (32 took 14.9 ms, against 2.0 ms as one
    statement), and passing the rows as arrays instead of JSON cost the driver ~270 us per
    32-row record to dump."""
    if not rows:
        return 0
    shared = shared or {}
    if shared and isinstance(statement, Insert):  # columns of every row, JSON ones included
        rows = [row | shared for row in rows]
        shared = {}
    keys = tuple(rows[0])
    if conn.dialect.name == "postgresql":
        # JSON columns go in as nested values: `json_to_recordset` reproduces a json-typed
        # field's text exactly, which is the compact text SQLite stores too.
        sql = pg_sql or _bulk_insert(statement, keys, "postgresql")
        rows_json = {"rows": compact_json(rows)}
        result = conn.exec_driver_sql(sql, rows_json | shared, execution_options=PREPARED)
        return int(result.rowcount)
    json_keys = _json_columns(statement, keys)
    if json_keys:
        rows = [row | {k: compact_json(row[k]) for k in json_keys} for row in rows]
    extra = tuple(k for k in shared if k not in keys)
    columns = keys + extra
    template = sqlite_sql or _bulk_insert(statement, columns, "sqlite")
    tail = [shared[k] for k in extra]
    changed = 0
    for start in range(0, len(rows), SQLITE_ROWS_PER_STATEMENT):
        chunk = rows[start : start + SQLITE_ROWS_PER_STATEMENT]
        params: list[Any] = []
        for row in chunk:
            if row[keys[0]] is None:
                raise ValueError(f"{keys[0]} may not be None here: it tells rows from padding")
            params += [row[k] for k in keys]
            params += tail
        size = 1 << (len(chunk) - 1).bit_length()  # the power of two at or above
        params += [None] * (len(columns) * (size - len(chunk)))
        changed += conn.exec_driver_sql(
            _sqlite_many(template, columns, size), tuple(params)
        ).rowcount
    return changed


# Rows per statement at most on SQLite (16 columns x 128 rows: 2,048 of the 32,766
# parameters SQLite allows). A shorter list is padded with rows of NULLs up to a power of
# two, which the statement leaves out (its first column is never NULL): any batch is one
# statement per 128 rows, with one of eight texts, kept prepared by the driver.
SQLITE_ROWS_PER_STATEMENT = 128


@functools.cache
def _sqlite_many(template: str, columns: tuple[str, ...], size: int) -> str:
    """`template` with `{rows}` as `size` rows of these columns, padding left out:
    `(SELECT column1 AS a, … FROM (VALUES (?, …), …) WHERE column1 IS NOT NULL)`."""
    row = "(" + ", ".join("?" * len(columns)) + ")"
    values = ", ".join([row] * size)
    named = ", ".join(f"column{i} AS {name}" for i, name in enumerate(columns, 1))
    # The names are our rows' keys (written in our code, never from a request); values bound.
    rows = f"(SELECT {named} FROM (VALUES {values}) WHERE column1 IS NOT NULL)"  # noqa: S608
    return template.format(rows=rows)


def _json_columns(statement: Any, keys: tuple[str, ...]) -> list[str]:
    table = getattr(statement, "table", statement)  # an INSERT's table, or the table
    return [k for k in keys if k in table.c and isinstance(table.c[k].type, JSON)]


@functools.cache
def _bulk_insert(statement: Any, columns: tuple[str, ...], dialect: str) -> str:
    """`INSERT … SELECT …` for an INSERT of these columns, from the rows as `execute_many`
    sends them: `json_to_recordset(%(rows)s)` on PostgreSQL, `{rows}` on SQLite."""
    if not isinstance(statement, Insert):
        raise TypeError("an UPDATE needs its bulk forms here (pg_sql and sqlite_sql)")
    table = statement.table
    unknown = [name for name in columns if name not in table.c]
    if unknown:
        raise KeyError(f"not columns of {table.name}: {unknown}")
    source = "{rows}"
    if dialect == "postgresql":
        fields = ", ".join(f"{k} {_pg_type(table.c[k].type)}" for k in columns)
        source = f"json_to_recordset(%(rows)s::json) AS v({fields})"
    names = ", ".join(columns)
    # Names from our schema only: each was looked up in the table's columns above.
    return f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {source}"  # noqa: S608


def _pg_type(column_type: Any) -> str:
    if isinstance(column_type, JSON):
        return "json"
    if isinstance(column_type, Text):
        return "text"
    if isinstance(column_type, Integer):
        return "int"
    python_type = column_type.python_type
    return {str: "varchar", float: "float8", bool: "bool"}[python_type]


class InList(ColumnElement[bool]):
    """`column IN` (or `NOT IN`) the list of strings bound as `name` at execution.

    On SQLite an expanding IN. On PostgreSQL `column = ANY(CAST(:name AS VARCHAR[]))`
    (`<> ALL` for NOT IN) with the list sent as one array literal: the statement's text is
    the same for every length, so neither SQLAlchemy (which renders an expanding IN's list
    at each execution, with a cast per element) nor the driver (which parses a new text
    again) works per call, and the driver's array dumper (~34 us for 32 strings) is skipped.
    """

    inherit_cache = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("name", InternalTraversal.dp_string),
        ("negate", InternalTraversal.dp_boolean),
    ]

    def __init__(self, column: Any, name: str, *, negate: bool = False) -> None:
        self.column = column
        self.name = name
        self.negate = negate


def in_list(column: Any, name: str) -> InList:
    """`column IN` the list bound as `name` (see `InList`)."""
    return InList(column, name)


def not_in_list(column: Any, name: str) -> InList:
    """`column NOT IN` the list bound as `name`; an empty list leaves nothing out."""
    return InList(column, name, negate=True)


class _PgTextArray(TypeDecorator[list[str]]):
    """A list of strings bound as a PostgreSQL array literal: `{"a","b"}`."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str:
        quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value)
        return "{" + ",".join(quoted) + "}"


@compiles(InList)
def _in_list(element: InList, compiler: SQLCompiler, **kw: Any) -> str:
    values: Any = bindparam(element.name, expanding=True)
    column = element.column
    clause = column.not_in(values) if element.negate else column.in_(values)
    return compiler.process(clause, **kw)


@compiles(InList, "postgresql")
def _in_list_pg(element: InList, compiler: SQLCompiler, **kw: Any) -> str:
    array = cast(bindparam(element.name, type_=_PgTextArray()), ARRAY(String))
    column = element.column
    op = "<> ALL" if element.negate else "= ANY"
    return f"{compiler.process(column, **kw)} {op} ({compiler.process(array, **kw)})"
