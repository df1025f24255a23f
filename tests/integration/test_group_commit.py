"""Publishes are committed in batches by one writer thread (store.group_commit)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx2 as httpx
import pytest
from sqlalchemy import func, select

from tidings.api.app import create_app
from tidings.delivery.worker import Worker
from tidings.errors import Conflict, InvalidInput, NotFound, Unavailable
from tidings.store import events
from tidings.store.db import Database, at_commit
from tidings.store.events import PublishRequest
from tidings.store.group_commit import GroupCommit
from tidings.store.tables import deliveries
from tidings.store.tables import events as events_table

from .conftest import Api, FirstCommitHeld

T = TypeVar("T")


def _committer(db: Database) -> GroupCommit[PublishRequest, events.Accepted]:
    return GroupCommit(
        db,
        lambda conn, requests: events.publish_many(conn, requests, time.time()),
        lambda conn, request: events.publish(conn, request, time.time()),
    )


def _count(db: Database, table: Any) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


async def _submit_all(
    committer: GroupCommit[PublishRequest, events.Accepted], requests: list[PublishRequest]
) -> list[Any]:
    return await asyncio.gather(*(committer.submit(r) for r in requests), return_exceptions=True)


def test_concurrent_publishes_share_transactions_and_each_gets_its_own_answer(api: Api) -> None:
    api.create_webhook(events=["item.created"])
    api.create_webhook(events=["*"])
    db = api.context.db
    committer = _committer(db)
    requests = [PublishRequest(api.app_id, "item.created", {"n": n}, None, "h") for n in range(200)]
    requests += [
        PublishRequest("app_missing", "item.created", {}, None, "h"),
        PublishRequest(api.app_id, "no.such_type", {}, None, "h"),
        PublishRequest(api.app_id, "user.deleted", {}, None, "h"),  # only the "*" webhook
    ]
    try:
        results = asyncio.run(_submit_all(committer, requests))
    finally:
        committer.close()
    accepted = results[:200]
    assert all(isinstance(r, events.Accepted) and r.created for r in accepted)
    assert len({r.event["id"] for r in accepted}) == 200
    assert [r.event["content"]["n"] for r in accepted] == list(range(200))
    assert isinstance(results[200], NotFound)
    assert isinstance(results[201], InvalidInput)
    assert results[202].event["delivery_count"] == 1
    # 201 events, 2 deliveries for each item.created and 1 for the user.deleted
    assert _count(db, events_table) == 201
    assert _count(db, deliveries) == 401
    assert committer.batches < 200  # they were written together, not one by one


def test_idempotency_keys_inside_one_batch_and_across_batches(api: Api) -> None:
    api.create_webhook(events=["item.created"])
    db = api.context.db
    committer = _committer(db)
    same = PublishRequest(api.app_id, "item.created", {"a": 1}, "key-1", "hash-a")
    other_body = PublishRequest(api.app_id, "item.created", {"a": 2}, "key-1", "hash-b")
    try:
        first = asyncio.run(_submit_all(committer, [same, same, other_body]))
        again = asyncio.run(_submit_all(committer, [same]))
    finally:
        committer.close()
    assert first[0].created and not first[1].created
    assert first[1].event["id"] == first[0].event["id"]
    assert isinstance(first[2], Conflict)
    assert not again[0].created and again[0].event["id"] == first[0].event["id"]
    assert _count(db, events_table) == 1
    assert _count(db, deliveries) == 1


# SQLite has one writer at a time, so no other writer can commit in between there.
@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_a_key_taken_by_another_writer_replays_without_failing_the_batch(api: Api) -> None:
    """Another process committed the same key between our check and our insert: the batch
    insert fails on the unique index, and each request is written alone instead."""
    api.create_webhook(events=["item.created"])
    db = api.context.db
    racer = PublishRequest(api.app_id, "item.created", {"a": 1}, "raced", "hash-a")
    calls = 0

    def write_many(conn: Any, requests: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # the other writer commits first, after our batch has looked
            with db.engine.connect() as other, other.begin():
                events.publish(other, racer, time.time())
        return events.publish_many(conn, requests, time.time())

    committer: GroupCommit[PublishRequest, events.Accepted] = GroupCommit(
        db, write_many, lambda conn, r: events.publish(conn, r, time.time())
    )
    plain = [PublishRequest(api.app_id, "item.created", {"n": n}, None, "h") for n in range(5)]
    try:
        results = asyncio.run(_submit_all(committer, [racer, *plain]))
    finally:
        committer.close()
    assert not results[0].created  # replayed the other writer's event
    assert all(isinstance(r, events.Accepted) and r.created for r in results[1:])
    assert _count(db, events_table) == 6


def test_an_unavailable_database_fails_the_whole_batch_with_503(api: Api) -> None:
    def write_many(_conn: Any, _requests: Any) -> Any:
        raise Unavailable("the database is busy; try again shortly", retry_after=1)

    committer: GroupCommit[PublishRequest, events.Accepted] = GroupCommit(
        api.context.db, write_many, lambda conn, r: events.publish(conn, r, time.time())
    )
    requests = [PublishRequest(api.app_id, "item.created", {}, None, "h") for _ in range(3)]
    try:
        results = asyncio.run(_submit_all(committer, requests))
    finally:
        committer.close()
    assert all(isinstance(r, Unavailable) for r in results)
    assert _count(api.context.db, events_table) == 0


def test_the_api_answers_concurrent_publishes_after_committing_them(api: Api) -> None:
    api.create_webhook(events=["item.created"])

    async def many() -> list[int]:
        transport = httpx.ASGITransport(app=create_app(api.context))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"/v1/applications/{api.app_id}/events",
                        json={"type": "item.created", "content": {"n": n}},
                        headers={"Authorization": f"Bearer {api.operator}"},
                    )
                    for n in range(50)
                )
            )
        return [r.status_code for r in responses]

    before = api.context.publishes.batches
    assert asyncio.run(many()) == [202] * 50
    assert _count(api.context.db, events_table) == 50
    assert api.context.publishes.batches - before < 50


def _recording_committer(
    db: Database, writers: list[str]
) -> GroupCommit[PublishRequest, events.Accepted]:
    """A committer that notes which thread wrote each batch."""

    def write_many(conn: Any, requests: Any) -> Any:
        writers.append(threading.current_thread().name)
        return events.publish_many(conn, requests, time.time())

    return GroupCommit(
        db, write_many, lambda conn, r: events.publish(conn, r, time.time()), name="writer"
    )


SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class _FirstCommitHeld(FirstCommitHeld):
    def run(
        self,
        committer: GroupCommit[PublishRequest, events.Accepted],
        main: Callable[[], Coroutine[Any, Any, T]],
    ) -> T:
        """`main()` in a new loop; then `proceed` is set and the committer closed."""
        try:
            with self.listening():
                return asyncio.run(main())
        finally:
            committer.close()


@SQLITE_ONLY
def test_in_its_own_loop_what_is_submitted_together_is_one_batch_written_in_the_loop(
    api: Api,
) -> None:
    api.create_webhook(events=["item.created"])
    writers: list[str] = []
    committer = _recording_committer(api.context.db, writers)
    requests = [PublishRequest(api.app_id, "item.created", {"n": n}, None, "h") for n in range(40)]

    async def run() -> tuple[list[Any], list[Any]]:
        committer.write_in_loop(asyncio.get_running_loop())
        first = await _submit_all(committer, requests)
        committer.write_in_loop(None)  # from now on, the thread again
        second = await _submit_all(committer, requests[:3])
        return first, second

    try:
        first, second = asyncio.run(run())
    finally:
        committer.close()
    assert [r.event["content"]["n"] for r in first] == list(range(40))
    assert all(isinstance(r, events.Accepted) and r.created for r in first + second)
    assert writers == [threading.main_thread().name, "writer"]
    assert committer.batches == 2
    assert _count(api.context.db, events_table) == 43


@SQLITE_ONLY
def test_in_its_loop_a_batch_commits_in_a_thread_while_the_next_gathers(api: Api) -> None:
    """The loop runs a batch's statements, not its COMMIT: while that runs in a thread, the
    loop goes on, and what is submitted meanwhile is written as the next batch."""
    api.create_webhook(events=["item.created"])
    db = api.context.db
    writers: list[str] = []
    committer = _recording_committer(db, writers)
    held = _FirstCommitHeld(db)

    def request(n: int) -> PublishRequest:
        return PublishRequest(api.app_id, "item.created", {"n": n}, None, "h")

    async def run() -> list[Any]:
        committer.write_in_loop(asyncio.get_running_loop())
        first = asyncio.create_task(committer.submit(request(0)))
        await asyncio.to_thread(held.started.wait, 10)  # the first batch is committing
        assert not first.done()
        later = [asyncio.create_task(committer.submit(request(n))) for n in (1, 2)]
        for _ in range(3):  # the loop turns meanwhile
            await asyncio.sleep(0)
        assert writers == [threading.main_thread().name]  # the next batch waits its turn
        held.proceed.set()
        results = [await asyncio.wait_for(t, 10) for t in (first, *later)]
        await committer.finish_in_loop()
        return results

    results = held.run(committer, run)
    assert [r.event["content"]["n"] for r in results] == [0, 1, 2]
    assert writers == [threading.main_thread().name] * 2  # statements: in the loop, twice
    assert len(held.threads) == 2
    assert threading.main_thread().name not in held.threads  # COMMITs: in threads
    assert committer.batches == 2
    assert _count(db, events_table) == 3


@SQLITE_ONLY
@pytest.mark.parametrize("fails", ["in-the-loop", "at-the-commit"])
def test_in_its_loop_a_failed_batch_is_rolled_back_and_each_request_written_alone(
    api: Api, fails: str
) -> None:
    """A batch that fails with a conflict, in the loop's statements or in the rows inserted
    in the committing thread (`at_commit`), is rolled back whole; each publish is then
    written alone."""
    api.create_webhook(events=["item.created"])
    db = api.context.db
    failed: list[bool] = []

    def write_many(conn: Any, requests: Any) -> Any:
        results = events.publish_many(conn, requests, time.time())  # written, then undone
        if failed:
            return results
        failed.append(True)
        if fails == "in-the-loop":
            raise Conflict("another request took that key first")
        at_commit(  # the event type exists: its primary key refuses a second row
            conn,
            lambda c: c.exec_driver_sql(
                "INSERT INTO event_types (name, description, created_at)"
                " VALUES ('item.created', '', 0)"
            ),
        )
        return results

    committer = GroupCommit(db, write_many, lambda conn, r: events.publish(conn, r, time.time()))
    requests = [PublishRequest(api.app_id, "item.created", {"n": n}, None, "h") for n in range(3)]

    async def run() -> list[Any]:
        committer.write_in_loop(asyncio.get_running_loop())
        results = await _submit_all(committer, requests)
        await committer.finish_in_loop()
        return results

    try:
        results = asyncio.run(run())
    finally:
        committer.close()
    assert [r.event["content"]["n"] for r in results] == [0, 1, 2]
    assert committer.batches == 3  # each alone, after the shared one was rolled back
    assert _count(db, events_table) == 3  # the shared batch's rows are gone
    assert _count(db, deliveries) == 3


@SQLITE_ONLY
def test_in_its_loop_a_batch_waits_for_another_threads_write_without_stopping(
    api: Api,
) -> None:
    """The loop is never stopped by a write turn another thread holds: the batch waits for
    it while the loop goes on, then is written in the loop."""
    api.create_webhook(events=["item.created"])
    db = api.context.db
    writers: list[str] = []
    committer = _recording_committer(db, writers)
    holding, release = threading.Event(), threading.Event()

    def hold_the_write_turn() -> None:
        with db.write():
            holding.set()
            release.wait(10)

    async def run() -> tuple[Any, float]:
        committer.write_in_loop(asyncio.get_running_loop())
        holder = asyncio.create_task(asyncio.to_thread(hold_the_write_turn))
        await asyncio.to_thread(holding.wait, 10)
        publish = asyncio.create_task(
            committer.submit(PublishRequest(api.app_id, "item.created", {}, None, "h"))
        )
        started = time.perf_counter()
        for _ in range(20):  # the loop goes on meanwhile (held up, it would wait 10 s)
            await asyncio.sleep(0.005)
        ticking = time.perf_counter() - started
        assert not publish.done()
        release.set()
        await holder
        return await asyncio.wait_for(publish, 10), ticking

    try:
        accepted, ticking = asyncio.run(run())
    finally:
        release.set()
        committer.close()
    assert isinstance(accepted, events.Accepted) and accepted.created
    assert ticking < 5
    assert writers == [threading.main_thread().name]
    assert _count(db, events_table) == 1


def _serves_writers(
    api: Api,
) -> tuple[
    Database, Worker, list[str], GroupCommit[PublishRequest, events.Accepted], _FirstCommitHeld
]:
    """A webhook for item.created, and the loop writers of `serve` on its database: a
    worker and a publish committer noting who wrote each batch; the first COMMIT held."""
    api.create_webhook(events=["item.created"])
    ctx = api.context
    writers: list[str] = []
    committer = _recording_committer(ctx.db, writers)
    worker = Worker(ctx.db, ctx.settings, ctx.box, ctx.clock)
    return ctx.db, worker, writers, committer, _FirstCommitHeld(ctx.db)


@SQLITE_ONLY
def test_in_serves_loop_a_publish_batch_waits_for_the_workers_commit_in_the_loop(
    api: Api,
) -> None:
    """The worker's claims and records commit in a thread too (`Worker._db_write`); a
    publish batch that comes meanwhile waits for its turn in the loop, not in a thread, and
    the loop goes on."""
    # the worker's first COMMIT is held until the publish has come
    db, worker, writers, committer, held = _serves_writers(api)

    async def run() -> Any:
        committer.write_in_loop(asyncio.get_running_loop())
        record = asyncio.create_task(
            worker._db_write(lambda conn: conn.exec_driver_sql("SELECT 1"))
        )
        await asyncio.to_thread(held.started.wait, 10)  # the worker's transaction is committing
        publish = asyncio.create_task(
            committer.submit(PublishRequest(api.app_id, "item.created", {}, None, "h"))
        )
        for _ in range(5):  # the loop turns meanwhile
            await asyncio.sleep(0.001)
        assert not record.done() and not publish.done()
        assert writers == []  # the publish batch waits for its turn
        held.proceed.set()
        await asyncio.wait_for(record, 10)
        accepted = await asyncio.wait_for(publish, 10)
        await committer.finish_in_loop()
        return accepted

    accepted = held.run(committer, run)
    assert isinstance(accepted, events.Accepted) and accepted.created
    assert writers == [threading.main_thread().name]  # written in the loop, after its turn
    assert committer._thread is None  # the writer thread never started
    assert len(held.threads) == 2 and threading.main_thread().name not in held.threads
    assert _count(db, events_table) == 1


@SQLITE_ONLY
def test_in_serves_loop_a_publish_batch_and_a_workers_record_that_wait_share_a_transaction(
    api: Api,
) -> None:
    """What waits behind a commit in the loop is written together (`Database.write_in_loop`):
    here a publish batch and a record of the worker, in one transaction."""
    # a claim's COMMIT is held until the others wait behind it
    db, worker, writers, committer, held = _serves_writers(api)

    def record(conn: Any) -> str:
        at_commit(conn, lambda c: c.exec_driver_sql("SELECT 1"))
        return "recorded"

    async def run() -> list[Any]:
        committer.write_in_loop(asyncio.get_running_loop())
        claim = asyncio.create_task(worker._db_write(lambda conn: "claimed"))
        await asyncio.to_thread(held.started.wait, 10)
        waiting = [
            asyncio.create_task(worker._db_write(record, defer=True)),
            asyncio.create_task(
                committer.submit(PublishRequest(api.app_id, "item.created", {}, None, "h"))
            ),
        ]
        await asyncio.sleep(0.01)
        held.proceed.set()
        results = [await claim] + [await task for task in waiting]
        await committer.finish_in_loop()
        return results

    claimed, recorded, accepted = held.run(committer, run)
    assert (claimed, recorded) == ("claimed", "recorded")
    assert isinstance(accepted, events.Accepted) and accepted.created
    assert len(held.threads) == 2  # the claim's COMMIT, then one for the other two
    assert committer.batches == 1 and writers == [threading.main_thread().name]
    assert _count(db, events_table) == 1


@SQLITE_ONLY
def test_serve_writes_publishes_in_its_loop_and_the_api_alone_in_its_thread(api: Api) -> None:
    ctx = api.context  # no webhook: nothing to deliver, only the event to write
    worker = Worker(ctx.db, ctx.settings, ctx.box, ctx.clock)

    async def publish(app: Any) -> tuple[int, str | None]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post(
                    f"/v1/applications/{api.app_id}/events",
                    json={"type": "item.created", "content": {}},
                    headers={"Authorization": f"Bearer {api.operator}"},
                )
                thread = ctx.publishes._thread
                return response.status_code, None if thread is None else thread.name

    assert asyncio.run(publish(create_app(ctx, worker))) == (202, None)
    assert asyncio.run(publish(create_app(ctx))) == (202, "publish-writer")
    assert _count(ctx.db, events_table) == 2


@pytest.mark.parametrize("in_loop", [True, False], ids=["in-loop", "thread"])
def test_what_is_committed_is_passed_on_even_when_its_caller_went_away(
    api: Api, in_loop: bool
) -> None:
    """`committed` sees each committed result in its caller's loop, also when the caller was
    cancelled meanwhile: in `serve` it hands the deliveries leased in the transaction to the
    worker, which otherwise would wait for their lease to expire."""
    api.create_webhook(events=["item.created"])
    db = api.context.db
    seen: list[tuple[events.Accepted, bool]] = []

    def committed(accepted: events.Accepted) -> None:
        running = asyncio.get_running_loop() is loop
        seen.append((accepted, running))

    committer = GroupCommit(
        db,
        lambda conn, requests: events.publish_many(conn, requests, time.time()),
        lambda conn, request: events.publish(conn, request, time.time()),
        committed=committed,
    )
    request = PublishRequest(api.app_id, "item.created", {"n": 1}, None, "h")
    loop: asyncio.AbstractEventLoop | None = None

    async def run() -> bool:
        nonlocal loop
        loop = asyncio.get_running_loop()
        if in_loop:
            committer.write_in_loop(loop)
        task = asyncio.create_task(committer.submit(request))
        await asyncio.sleep(0)  # submitted; its batch is written after this turn
        task.cancel()
        for _ in range(500):
            if seen:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(asyncio.CancelledError):
            await task
        return True

    try:
        assert asyncio.run(run())
    finally:
        committer.close()
    assert len(seen) == 1
    accepted, in_callers_loop = seen[0]
    assert accepted.created and accepted.event["content"] == {"n": 1}
    assert in_callers_loop
    assert _count(db, events_table) == 1
    assert _count(db, deliveries) == 1
