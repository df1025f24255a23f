"""Statements the store no longer sends every time, and what must still hold without them:
a worker's commits (asynchronous on PostgreSQL unless a 410 disabled a webhook), the ping
of a pooled connection (only after it sat idle), and the end of a webhook's failing streak
(at most once a second per worker), a worker claiming in a thread takes twice the rows
per claim, and deliveries waiting in a worker start past a webhook at its cap."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, select, text, update

from tidings.clock import SystemClock
from tidings.delivery.worker import (
    LEASE_MARGIN_S,
    MAX_WEBHOOK_TIMEOUT_S,
    SLOW_IN_LOOP_S,
    Worker,
    _durable,
)
from tidings.errors import Conflict, Unavailable
from tidings.store import db as db_module
from tidings.store import queue
from tidings.store.db import Database
from tidings.store.tables import deliveries, webhooks

from .conftest import Api, FirstCommitHeld, make_settings

ON_POSTGRESQL = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


def _outcome(code: int | None, webhook_id: str = "wh", at: float = 0.0) -> queue.Outcome:
    ok = code is not None and 200 <= code < 300
    return queue.Outcome("d", webhook_id, at, code, 1, None, None, {}, ok, None)


def test_only_a_record_with_a_410_waits_for_the_disk() -> None:
    assert _durable([_outcome(200), _outcome(410)]) is True  # it disables the webhook
    assert _durable([_outcome(200), _outcome(500), _outcome(None)]) is False
    assert _durable([]) is False


@pytest.fixture
def own_db(api: Api) -> Iterator[Database]:
    """A Database of its own on the test's database, one pooled connection at a time."""
    db = Database.from_url(api.context.settings.sqlalchemy_url)
    yield db
    db.dispose()


def _synchronous_commit(conn: Any) -> str:
    return str(conn.execute(text("SHOW synchronous_commit")).scalar_one())


@ON_POSTGRESQL
def test_synchronous_commit_follows_each_write_even_after_a_rollback(own_db: Database) -> None:
    with own_db.write() as conn:
        assert _synchronous_commit(conn) == "on"  # the server's default
    with own_db.write(durable=False) as conn:
        assert _synchronous_commit(conn) == "off"
    with own_db.write(durable=False) as conn:
        assert _synchronous_commit(conn) == "off"  # kept from the last write
    with own_db.write() as conn:
        assert _synchronous_commit(conn) == "on"
    # A write that fails rolls back its SET (or RESET) with everything else: the next write
    # must not trust what the failed one set.
    with pytest.raises(RuntimeError), own_db.write(durable=False) as conn:
        assert _synchronous_commit(conn) == "off"
        raise RuntimeError("rolled back")
    with own_db.write(durable=False) as conn:
        assert _synchronous_commit(conn) == "off"
    with pytest.raises(RuntimeError), own_db.write() as conn:
        assert _synchronous_commit(conn) == "on"
        raise RuntimeError("rolled back")
    with own_db.write() as conn:
        assert _synchronous_commit(conn) == "on"
    with own_db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM pg_stat_activity")).scalar_one() >= 1


@ON_POSTGRESQL
def test_loop_writes_on_postgresql_run_alone_and_put_off_statements_on_the_connection(
    own_db: Database,
) -> None:
    """`write_in_loop` on PostgreSQL (no shared transactions there: every write alone, in
    `write_committed_in_thread`), with `defer`: the put-off statements run in the committing
    thread on the SQLAlchemy connection itself, not a DBAPI cursor, and are committed."""
    with own_db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE loop_writes (k TEXT PRIMARY KEY)")
    seen: list[tuple[str, bool]] = []

    def insert(key: str, conn: db_module.Statements) -> None:
        seen.append((threading.current_thread().name, isinstance(conn, Connection)))
        conn.exec_driver_sql("INSERT INTO loop_writes VALUES (%(k)s)", {"k": key})

    def body(key: str, conn: Connection) -> str:
        db_module.at_commit(conn, functools.partial(insert, key))
        return key

    async def main() -> list[str]:
        writes = [own_db.write_in_loop(functools.partial(body, k), defer=True) for k in "ab"]
        return list(await asyncio.gather(*writes))

    try:
        assert asyncio.run(main()) == ["a", "b"]
        with own_db.read() as conn:
            keys = conn.exec_driver_sql("SELECT k FROM loop_writes ORDER BY k").scalars().all()
        assert keys == ["a", "b"]
        assert len(seen) == 2 and all(is_conn for _name, is_conn in seen)
        assert threading.main_thread().name not in {name for name, _ in seen}
        assert own_db._loop_writes == {}  # nothing queued per loop on PostgreSQL
    finally:
        with own_db.write() as conn:
            conn.exec_driver_sql("DROP TABLE loop_writes")


def _terminate_other_backends(api: Api) -> None:
    with api.context.db.write() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )


@ON_POSTGRESQL
def test_an_idle_connection_the_server_dropped_is_replaced_unseen(
    api: Api, own_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with own_db.read() as conn:
        conn.execute(text("SELECT 1"))
    _terminate_other_backends(api)
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 0.0)  # idle long enough: pinged
    with own_db.read() as conn:
        assert conn.execute(text("SELECT 2")).scalar_one() == 2


@ON_POSTGRESQL
def test_a_connection_dropped_while_busy_fails_once_then_the_pool_is_renewed(
    api: Api, own_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 3600.0)  # never idle long enough
    with own_db.read() as conn:
        conn.execute(text("SELECT 1"))
    _terminate_other_backends(api)
    with pytest.raises(Unavailable), own_db.read() as conn:
        conn.execute(text("SELECT 2"))
    with own_db.write() as conn:
        assert conn.execute(text("SELECT 3")).scalar_one() == 3


def _failing_since(api: Api, webhook_id: str) -> float | None:
    with api.context.db.read() as conn:
        query = select(webhooks.c.failing_since).where(webhooks.c.id == webhook_id)
        value = conn.execute(query).scalar_one()
        return None if value is None else float(value)


def _set_failing_since(api: Api, webhook_id: str, since: float) -> None:
    with api.context.db.write() as conn:  # as another worker's failure would
        conn.execute(
            update(webhooks).where(webhooks.c.id == webhook_id).values(failing_since=since)
        )


def test_a_worker_ends_a_failing_streak_at_most_once_a_second(api: Api) -> None:
    hook = api.create_webhook(events=["item.created"])
    assert api.publish("item.created").status_code == 202
    with api.context.db.read() as conn:
        delivery_id = conn.execute(select(deliveries.c.id)).scalar_one()
    kept = queue.KeptWebhooks()

    def record(code: int, at: float) -> None:
        outcome = _outcome(code, hook["id"], at)._replace(delivery_id=delivery_id)
        with api.context.db.write() as conn:
            queue.record(conn, "w1", [outcome], at, kept_webhooks=kept)

    _set_failing_since(api, hook["id"], 50.0)
    record(200, 100.0)
    assert _failing_since(api, hook["id"]) is None
    _set_failing_since(api, hook["id"], 100.5)  # another worker's failure
    record(200, 100.9)  # this worker ended it 0.9 s ago: not again yet
    assert _failing_since(api, hook["id"]) == 100.5
    record(200, 101.0)  # a second later it does
    assert _failing_since(api, hook["id"]) is None
    # This worker's own failure starts a streak; its next success ends it at once.
    record(500, 101.2)
    assert _failing_since(api, hook["id"]) == 101.2
    record(200, 101.3)
    assert _failing_since(api, hook["id"]) is None
    # Without what a worker keeps, every success ends it.
    _set_failing_since(api, hook["id"], 101.4)
    with api.context.db.write() as conn:
        outcome = _outcome(200, hook["id"], 101.5)._replace(delivery_id=delivery_id)
        queue.record(conn, "w1", [outcome], 101.5)
    assert _failing_since(api, hook["id"]) is None


def test_one_record_starts_the_failing_streaks_of_several_webhooks_at_their_first_failure(
    api: Api,
) -> None:
    fresh, early, already, healed = (
        api.create_webhook(url=f"https://hooks.example.com/{i}")["id"] for i in range(4)
    )
    assert api.publish("item.created").status_code == 202
    with api.context.db.read() as conn:
        ids = dict(conn.execute(select(deliveries.c.webhook_id, deliveries.c.id)).all())
    _set_failing_since(api, already, 10.0)  # its streak started earlier: it stays
    outcomes = [
        _outcome(500, fresh, 100.25)._replace(delivery_id=ids[fresh]),
        _outcome(None, early, 100.5)._replace(delivery_id=ids[early]),
        _outcome(503, early, 100.125)._replace(delivery_id=ids[early]),  # its first failure
        _outcome(500, already, 100.0)._replace(delivery_id=ids[already]),
        _outcome(500, healed, 100.0)._replace(delivery_id=ids[healed]),
        _outcome(200, healed, 100.75)._replace(delivery_id=ids[healed]),  # a success as well
    ]
    with api.context.db.write() as conn:
        queue.record(conn, "w1", outcomes, 101.0)
    assert _failing_since(api, fresh) == 100.25
    assert _failing_since(api, early) == 100.125
    assert _failing_since(api, already) == 10.0
    assert _failing_since(api, healed) is None


def test_claims_hold_three_caps_on_postgresql_and_two_on_sqlite(api: Api) -> None:
    """Half the statements per delivery on PostgreSQL, wherever its calls wait (the loop or
    a thread); the lease covers the longer wait."""
    ctx = api.context
    timeout = max(ctx.settings.timeout_s, MAX_WEBHOOK_TIMEOUT_S)
    in_loop = Worker(ctx.db, ctx.settings, ctx.box, SystemClock(), db_in_loop=True)
    threaded = Worker(ctx.db, ctx.settings, ctx.box, SystemClock(), db_in_loop=False)
    assert in_loop.per_webhook == threaded.per_webhook == 64
    caps = 2 if ctx.db.is_sqlite else 3
    for worker in (in_loop, threaded):
        assert (worker._batch_at, worker._claim_cap) == (64 * (caps - 1) // 2, 64 * caps)
        # A claimed delivery may wait behind the caps' attempts, then make its own.
        assert worker.lease_s == caps * timeout + LEASE_MARGIN_S


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_waits_for_postgresql_in_its_loop_until_a_call_is_slow(api: Api) -> None:
    """`tidings worker` makes its PostgreSQL calls in the event loop (no thread, no GIL
    passing back and forth); one slower than SLOW_IN_LOOP_S sends the later ones to a
    thread, so that a slow server cannot hold the loop, and the sends on it, every time."""
    ctx = api.context
    worker = Worker(ctx.db, ctx.settings, ctx.box, SystemClock(), db_in_loop=True)
    threads: list[int] = []

    def call(seconds: float, conn: Connection) -> int:
        threads.append(threading.get_ident())
        conn.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
        return 1

    async def calls() -> None:
        for seconds in (0, 0, SLOW_IN_LOOP_S + 0.05, 0):
            assert await worker._db_write(functools.partial(call, seconds)) == 1

    asyncio.run(calls())
    loop_thread = threading.get_ident()  # asyncio.run runs its loop in this thread
    assert threads[:3] == [loop_thread] * 3  # the slow one too: it ran in the loop
    assert threads[3] != loop_thread
    assert worker.db_in_loop is False


def test_waiting_deliveries_start_past_a_capped_webhook_in_their_order(
    api: Api, tmp_path: Path
) -> None:
    """`Worker._pump`: a webhook at its cap is skipped, the others start, and the skipped
    keep their order for when its slots free up."""
    settings = make_settings(
        f"sqlite:///{tmp_path / 'pump.db'}", worker_concurrency=8, webhook_concurrency=2
    )
    ctx = api.context
    worker = Worker(ctx.db, settings, ctx.box, SystemClock())
    started: list[str] = []
    release = asyncio.Event()

    async def deliver(_sender: object, job: queue.Job) -> None:
        started.append(job.delivery_id)
        await release.wait()

    def job(name: str, webhook_id: str) -> queue.Job:
        return queue.Job(name, "app", 0, "item.created", "{}", 0, {"id": webhook_id})

    async def scenario() -> None:
        worker._deliver = deliver  # type: ignore[method-assign]
        worker._active_sender = object()  # type: ignore[assignment]
        worker._hold([job(f"a{i}", "A") for i in range(4)] + [job("b0", "B"), job("a4", "A")])
        worker._hold([job("c0", "C")])
        # A at its cap of 2; B and C start past it.
        assert list(worker._inflight) == ["a0", "a1", "b0", "c0"]
        assert [j.delivery_id for j in worker._ready] == ["a2", "a3", "a4"]
        first = worker._inflight["a0"]
        first.cancel()  # A's first attempt ends: its next one starts
        await asyncio.gather(first, return_exceptions=True)  # after the worker's callback
        assert list(worker._inflight) == ["a1", "b0", "c0", "a2"]
        assert [j.delivery_id for j in worker._ready] == ["a3", "a4"]
        release.set()
        while worker._inflight:  # the rest finish, A's last two starting as slots free
            await asyncio.gather(*worker._inflight.values(), return_exceptions=True)
        assert started == ["a1", "b0", "c0", "a2", "a3", "a4"]  # a0 ended before it ran

    asyncio.run(scenario())


def test_a_claim_in_the_loop_waits_for_a_threads_write_turn_without_stopping_the_loop(
    api: Api, tmp_path: Path
) -> None:
    """In `serve`, a claim or record that waited for the write turn in a thread held it ~3x
    as long as in the loop (it fought the loop for the GIL at every statement): the loop
    waits for a turn that a thread holds, however long, without stopping, then runs the
    statements itself and the COMMIT in a thread."""
    settings = make_settings(f"sqlite:///{tmp_path / 'turn.db'}")
    db = Database.from_settings(settings)
    worker = Worker(db, settings, api.context.box, SystemClock())
    assert worker.db_in_loop
    held, release = threading.Event(), threading.Event()
    committed_in: list[str] = []

    def on_commit(_conn: Any) -> None:
        committed_in.append(threading.current_thread().name)

    def other_writer() -> None:
        with db.write():
            held.set()
            release.wait(5)

    async def claim_meanwhile() -> tuple[threading.Thread, int]:
        claim = asyncio.create_task(worker._db_write(lambda _conn: threading.current_thread()))
        ticks = 0
        for _ in range(25):  # 0.25 s: the loop goes on while the claim waits
            await asyncio.sleep(0.01)
            ticks += 1
            assert not claim.done()
        release.set()
        return await asyncio.wait_for(claim, 5), ticks

    writer = threading.Thread(target=other_writer)
    writer.start()
    event.listen(db.engine, "commit", on_commit)
    try:
        assert held.wait(5)
        ran_in, ticks = asyncio.run(claim_meanwhile())
    finally:
        release.set()
        writer.join(5)
        event.remove(db.engine, "commit", on_commit)
        db.dispose()
    assert ran_in is threading.main_thread()  # the statements: in the loop
    assert ticks == 25
    claims = [name for name in committed_in if name != writer.name]  # not the other writer's
    assert len(claims) == 1 and claims[0] != threading.main_thread().name  # COMMIT: a thread


def test_a_loop_writer_gives_up_after_the_busy_timeout(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread that keeps the write turn past SQLite's busy timeout makes the loop's
    writer fail with Unavailable (a 503, or the worker's later retry), as a thread would."""
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_MS", 50)
    db = Database.from_settings(make_settings(f"sqlite:///{tmp_path / 'busy.db'}"))
    held, release = threading.Event(), threading.Event()

    def other_writer() -> None:
        with db.write():
            held.set()
            release.wait(5)

    async def write() -> None:
        async with db.write_committed_in_thread():
            pass

    writer = threading.Thread(target=other_writer)
    writer.start()
    try:
        assert held.wait(5)
        with pytest.raises(Unavailable):
            asyncio.run(write())
        release.set()
        writer.join(5)
        asyncio.run(write())  # the turn is free again: nothing was left held
    finally:
        release.set()
        writer.join(5)
        db.dispose()


def test_statements_put_off_to_the_commit_run_in_its_thread_or_roll_back_together(
    tmp_path: Path,
) -> None:
    """`at_commit` in `write_committed_in_thread(defer=True)`: the statements run in the
    committing thread, after the loop's own; one that fails rolls back the whole
    transaction, is raised (translated) to the loop, and leaves the write turn free. Without
    `defer`, or in `write()`, they run at once."""
    db = Database.from_settings(make_settings(f"sqlite:///{tmp_path / 'defer.db'}"))
    with db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY, by TEXT)")
    ran_in: list[str] = []

    def insert(key: str, conn: Connection) -> None:
        ran_in.append(threading.current_thread().name)
        conn.exec_driver_sql("INSERT INTO t VALUES (?, ?)", (key, threading.current_thread().name))

    def keys() -> list[str]:
        with db.read() as conn:
            return [row[0] for row in conn.exec_driver_sql("SELECT k FROM t ORDER BY k")]

    async def write(*statements: str, defer: bool = True) -> None:
        async with db.write_committed_in_thread(defer=defer) as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES ('loop', 'loop')")  # at once
            for key in statements:
                db_module.at_commit(conn, functools.partial(insert, key))
            assert ran_in == ([] if defer else ["MainThread"] * len(statements))
            conn.exec_driver_sql("DELETE FROM t WHERE k = 'loop'")

    try:
        asyncio.run(write("a", "b"))
        assert keys() == ["a", "b"]
        assert len(ran_in) == 2 and "MainThread" not in ran_in
        ran_in.clear()
        with pytest.raises(Conflict):  # "a" again: the primary key
            asyncio.run(write("c", "a"))
        assert keys() == ["a", "b"]  # "c" rolled back with it
        ran_in.clear()
        asyncio.run(write("d", defer=False))  # the turn is free; at once without `defer`
        with db.write() as conn:
            db_module.at_commit(conn, functools.partial(insert, "e"))
            assert ran_in[-1] == "MainThread"
        assert keys() == ["a", "b", "d", "e"]
    finally:
        db.dispose()


class _SharedWrites:
    """A table `t` in a fresh SQLite file, and `write_in_loop` bodies that note when they
    ran; the first COMMIT is held until `proceed`, so that writes pile up behind it."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = Database.from_settings(make_settings(f"sqlite:///{tmp_path / 'shared.db'}"))
        with self.db.write() as conn:
            conn.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY)")
        self.ran: list[str] = []  # bodies, and deferred statements with "@commit"
        self.held = FirstCommitHeld(self.db)
        self.commits = self.held.threads  # the thread of each COMMIT

    def now(self, key: str) -> Any:
        """A body that inserts `key` at once and returns how many rows it saw before."""

        def body(conn: Connection) -> int:
            self.ran.append(key)
            seen = int(conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one())
            conn.exec_driver_sql("INSERT INTO t VALUES (?)", (key,))
            return seen

        return body

    def at_commit(self, key: str) -> Any:
        """A body whose INSERT of `key` waits for the COMMIT (`defer=True`); returns `key`."""

        def insert(conn: Connection) -> None:
            self.ran.append(key + "@commit")
            conn.exec_driver_sql("INSERT INTO t VALUES (?)", (key,))

        def body(conn: Connection) -> str:
            self.ran.append(key)
            db_module.at_commit(conn, insert)
            return key

        return body

    def keys(self) -> list[str]:
        with self.db.read() as conn:
            return [row[0] for row in conn.exec_driver_sql("SELECT k FROM t ORDER BY k")]

    def run(self, main: Any) -> Any:
        """`main(first)` in a new loop, where `first` is a task whose COMMIT is held."""

        async def go() -> Any:
            first = asyncio.create_task(self.db.write_in_loop(self.now("first")))
            assert await asyncio.to_thread(self.held.started.wait, 10)
            return await main(first)

        try:
            with self.held.listening():
                return asyncio.run(go())
        finally:
            self.db.dispose()


def test_loop_writes_that_come_during_a_commit_share_the_next_transaction(
    tmp_path: Path,
) -> None:
    """`write_in_loop`: what waits while a transaction commits is written as one transaction,
    each write answered with its own result; the writes that do not defer run first, so
    that none sees another half written (a claim reads its own transaction)."""
    shared = _SharedWrites(tmp_path)

    async def main(first: asyncio.Task[int]) -> list[Any]:
        db = shared.db
        waiting = [
            asyncio.create_task(db.write_in_loop(shared.at_commit("d1"), defer=True)),
            asyncio.create_task(db.write_in_loop(shared.now("n"))),
            asyncio.create_task(db.write_in_loop(shared.at_commit("d2"), defer=True)),
        ]
        for _ in range(5):  # the loop turns meanwhile
            await asyncio.sleep(0.005)
        assert not first.done() and not any(task.done() for task in waiting)
        shared.held.proceed.set()
        return [await first] + [await task for task in waiting]

    results = shared.run(main)
    assert results == [0, "d1", 1, "d2"]  # "n" saw "first" only
    assert shared.ran == ["first", "n", "d1", "d2", "d1@commit", "d2@commit"]
    assert len(shared.commits) == 2  # "first", then the three together
    assert threading.main_thread().name not in shared.commits
    assert shared.keys() == ["d1", "d2", "first", "n"]


def test_a_write_that_fails_in_a_shared_transaction_fails_alone(tmp_path: Path) -> None:
    """A shared transaction that fails (here a deferred INSERT of a key taken, at the
    COMMIT) is rolled back, and each of its writes is tried again alone: only the one that
    failed gets the error, and none of its rows stay."""
    shared = _SharedWrites(tmp_path)

    def fails_in_the_loop(conn: Connection) -> None:
        conn.exec_driver_sql("INSERT INTO t VALUES ('half')")
        raise ValueError("a bug")

    async def main(first: asyncio.Task[int]) -> list[Any]:
        db = shared.db
        waiting = [
            db.write_in_loop(shared.at_commit("g1"), defer=True),
            db.write_in_loop(shared.at_commit("first"), defer=True),  # taken: Conflict
            db.write_in_loop(shared.now("g2")),
            db.write_in_loop(fails_in_the_loop),
        ]
        tasks = [asyncio.create_task(w) for w in waiting]
        await asyncio.sleep(0.02)
        shared.held.proceed.set()
        await first
        return await asyncio.gather(*tasks, return_exceptions=True)

    g1, taken, g2, bug = shared.run(main)
    assert (g1, g2) == ("g1", 1)
    assert isinstance(taken, Conflict)
    assert isinstance(bug, ValueError)
    assert shared.keys() == ["first", "g1", "g2"]  # no "half"
    # "first"; the shared one rolled back; then alone: g1 and g2 committed, the others not
    assert len(shared.commits) == 3


def test_a_waiting_write_whose_caller_went_away_is_not_written(tmp_path: Path) -> None:
    shared = _SharedWrites(tmp_path)

    async def main(first: asyncio.Task[int]) -> str:
        db = shared.db
        gone = asyncio.create_task(db.write_in_loop(shared.now("gone")))
        kept = asyncio.create_task(db.write_in_loop(shared.at_commit("kept"), defer=True))
        await asyncio.sleep(0.01)
        gone.cancel()
        shared.held.proceed.set()
        await first
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await kept

    assert shared.run(main) == "kept"
    assert shared.keys() == ["first", "kept"]
    assert "gone" not in shared.ran


def test_loop_writes_that_wait_past_the_busy_timeout_all_get_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_MS", 50)
    shared = _SharedWrites(tmp_path)
    db = shared.db
    held, release = threading.Event(), threading.Event()

    def other_writer() -> None:
        with db.write():
            held.set()
            release.wait(5)

    async def together() -> list[Any]:
        writes = [db.write_in_loop(shared.now("a")), db.write_in_loop(shared.now("b"))]
        return await asyncio.gather(*writes, return_exceptions=True)

    writer = threading.Thread(target=other_writer)
    writer.start()
    try:
        assert held.wait(5)
        results = asyncio.run(together())
        assert [type(r) for r in results] == [Unavailable, Unavailable]
        assert shared.ran == []  # neither body ran
        release.set()
        writer.join(5)
        assert asyncio.run(together()) == [0, 1]  # the turn is free again, shared
    finally:
        release.set()
        writer.join(5)
        db.dispose()


def test_a_writer_cancelled_during_its_commit_waits_for_the_thread_to_end_it(
    tmp_path: Path,
) -> None:
    """Cancelled while its COMMIT runs in a thread, a loop writer is cancelled only once the
    thread has ended the transaction: the rows are committed, the connection and the write
    turn given back (the next write gets the turn at once)."""
    shared = _SharedWrites(tmp_path)
    db = shared.db

    async def write() -> None:
        async with db.write_committed_in_thread() as conn:
            shared.now("first")(conn)

    async def main() -> None:
        writer = asyncio.create_task(write())
        assert await asyncio.to_thread(shared.held.started.wait, 10)
        writer.cancel()
        for _ in range(5):  # the COMMIT is still held: the writer waits for it
            await asyncio.sleep(0.005)
            assert not writer.done()
        shared.held.proceed.set()
        with pytest.raises(asyncio.CancelledError):
            await writer
        assert db._write_lock is not None and not db._write_lock.locked()
        assert await asyncio.wait_for(db.write_in_loop(shared.now("next")), 1) == 1

    try:
        with shared.held.listening():
            asyncio.run(main())
        assert shared.keys() == ["first", "next"]
    finally:
        db.dispose()
    assert len(shared.commits) == 2 and threading.main_thread().name not in shared.commits


def test_statements_at_the_commit_run_on_the_dbapi_cursor_on_sqlite(tmp_path: Path) -> None:
    """In the committing thread the put-off statements skip SQLAlchemy's execution (no
    `before_cursor_execute`): Python the thread would run holding the GIL. Their rows are
    written all the same, and their rowcount read."""
    shared = _SharedWrites(tmp_path)
    db = shared.db
    seen: list[str] = []
    counted: list[int] = []

    def insert(conn: db_module.Statements) -> None:
        counted.append(conn.exec_driver_sql("INSERT INTO t VALUES ('deferred')").rowcount)

    def body(conn: Connection) -> None:
        conn.exec_driver_sql("INSERT INTO t VALUES ('at once')")
        db_module.at_commit(conn, insert)

    event.listen(db.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    try:
        asyncio.run(db.write_in_loop(body, defer=True))
        assert shared.keys() == ["at once", "deferred"]
    finally:
        db.dispose()
    assert counted == [1]
    assert any("'at once'" in sql for sql in seen)
    assert not any("'deferred'" in sql for sql in seen)
