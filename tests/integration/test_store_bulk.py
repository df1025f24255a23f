"""The store's bulk forms, on both databases: lists bound as one value (`in_list`), rows
written as one JSON document on PostgreSQL (`execute_many`), and a claim that asks only for
what the enabled webhooks can take under their cap (`queue._takeable`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import insert, select, text

from tidings.domain.catalog import compact_json
from tidings.store import db as db_module
from tidings.store import queue
from tidings.store.db import Database, execute_many, in_list, not_in_list
from tidings.store.migrate import upgrade
from tidings.store.tables import attempts, deliveries, event_types

from .conftest import Api

AWKWARD = [
    'quote"d',
    "back\\slash",
    "com,ma",
    "{braces}",
    " spaced ",
    "NULL",
    "",
    "ünï ✓",
    "trailing\\",
]


def test_in_list_and_not_in_list_match_awkward_strings_exactly(api: Api) -> None:
    db = api.context.db
    with db.write() as conn:
        conn.execute(
            insert(event_types),
            [{"name": n, "description": "", "created_at": 0.0} for n in AWKWARD],
        )
    picked = [*AWKWARD[:4], "not there"]
    with db.read() as conn:
        names = event_types.c.name
        found = conn.execute(select(names).where(in_list(names, "names")), {"names": picked})
        assert sorted(found.scalars()) == sorted(AWKWARD[:4])
        rest = conn.execute(
            select(names).where(not_in_list(names, "names"), in_list(names, "all")),
            {"names": picked, "all": AWKWARD},
        )
        assert sorted(rest.scalars()) == sorted(AWKWARD[4:])
        # An empty list: IN matches nothing, NOT IN leaves nothing out.
        assert conn.execute(select(names).where(in_list(names, "n")), {"n": []}).all() == []
        everything = conn.execute(
            select(names).where(not_in_list(names, "n"), in_list(names, "all")),
            {"n": [], "all": AWKWARD},
        )
        assert sorted(everything.scalars()) == sorted(AWKWARD)


def _one_delivery(api: Api) -> str:
    """Publish one event to one webhook; the id of its delivery (attempts need one)."""
    api.create_webhook(events=["item.created"])
    assert api.publish("item.created").status_code == 202
    with api.context.db.read() as conn:
        delivery_id: str = conn.execute(select(deliveries.c.id)).scalar_one()
    return delivery_id


def test_execute_many_keeps_every_value_exactly(api: Api) -> None:
    db = api.context.db
    delivery_id = _one_delivery(api)
    rows: list[dict[str, Any]] = [
        {
            "id": f"att_{i}",
            "delivery_id": delivery_id,
            "at": 1764212345.123456 + i,
            "status_code": None if i else 500,
            "duration_ms": 7,
            "error": AWKWARD[i % len(AWKWARD)] + "\nline two\t'",
            "response_body": None,
            "request_headers": {"x-big": 2**70, "x-ü": ["a", 1.5, None], "q": 'say "hi"'},
        }
        for i in range(5)
    ]
    with db.write() as conn:
        execute_many(conn, insert(attempts), rows)
    columns = [attempts.c[k] for k in rows[0] if k != "request_headers"]
    stored_json = text("SELECT CAST(request_headers AS TEXT) FROM attempts WHERE id = 'att_0'")
    with db.read() as conn:
        got = conn.execute(select(*columns).order_by(attempts.c.id)).mappings().all()
        headers = conn.execute(select(attempts.c.request_headers)).scalars().all()
        raw = conn.execute(stored_json).scalar_one()
    assert [dict(r) for r in got] == [
        {k: v for k, v in r.items() if k != "request_headers"} for r in rows
    ]
    assert headers == [rows[0]["request_headers"]] * 5
    # Stored as the same compact text on both databases.
    assert raw == compact_json(rows[0]["request_headers"])


def _due_deliveries(api: Api, hook_events: list[str], count: int) -> None:
    for _ in range(count):
        assert api.publish(hook_events[0]).status_code == 202


def _claim(db: Database, busy: dict[str, int], limit: int, **kw: Any) -> list[queue.Job]:
    with db.write() as conn:
        return queue.claim(conn, "w1", 2e9, 60, limit, busy=busy, per_webhook=10, **kw)


def _pending(db: Database) -> int:
    with db.read() as conn:
        query = select(deliveries.c.id).where(deliveries.c.status == "pending")
        return len(conn.execute(query).all())


def test_a_claim_asks_only_for_what_the_webhooks_cap_leaves(api: Api) -> None:
    hook = api.create_webhook(events=["item.created"])
    _due_deliveries(api, ["item.created"], 12)
    db = api.context.db
    asked: list[int] = []

    @sa_event.listens_for(db.engine, "before_cursor_execute")
    def _limits(*args: Any) -> None:
        compiled = getattr(args[4], "compiled_parameters", None)
        if compiled and "limit" in compiled[0]:
            asked.append(compiled[0]["limit"])

    kept = queue.KeptWebhooks()
    jobs = _claim(db, {hook["id"]: 7}, 12, kept_webhooks=kept)
    assert len(jobs) == 3  # 10 - 7 in flight
    assert asked == [3]  # not 12, most of them to be left (and another round to look past)
    assert _pending(db) == 9
    assert _claim(db, {hook["id"]: 10}, 12, kept_webhooks=kept) == []
    assert _pending(db) == 9
    # A second enabled webhook has room of its own: the first claim may ask for more.
    other = api.create_webhook(events=["item.created"], url="https://hooks.example.com/b")
    jobs = _claim(db, {hook["id"]: 10, other["id"]: 0}, 12, kept_webhooks=kept)
    assert jobs == []  # all due rows belong to the capped webhook
    assert len(_claim(db, {hook["id"]: 4}, 12, kept_webhooks=kept)) == 6


def test_rows_of_a_disabled_webhook_are_still_claimed(api: Api) -> None:
    hook = api.create_webhook(events=["item.created"])
    gone = api.create_webhook(events=["item.created"], url="https://hooks.example.com/b")
    _due_deliveries(api, ["item.created"], 3)
    db = api.context.db
    # Disabled behind the API's back, its rows left pending (as a retry scheduled by an
    # attempt in flight when it was disabled would be).
    with db.write() as conn:
        conn.execute(
            text("UPDATE webhooks SET enabled = :off WHERE id = :id"),
            {"off": False, "id": gone["id"]},
        )
    kept = queue.KeptWebhooks()
    # The enabled webhook at its cap: only a deep claim looks past it.
    assert _claim(db, {hook["id"]: 10}, 12, kept_webhooks=kept) == []
    jobs = _claim(db, {hook["id"]: 10}, 12, kept_webhooks=kept, deep=True)
    assert {j.webhook["id"] for j in jobs if j.webhook} == {gone["id"]}
    assert len(jobs) == 3
    # No enabled webhook at all: nothing limits the claim.
    with db.write() as conn:
        conn.execute(
            text("UPDATE webhooks SET enabled = :off WHERE id = :id"),
            {"off": False, "id": hook["id"]},
        )
    assert len(_claim(db, {}, 12, kept_webhooks=kept)) == 3


def _prepared_after_a_claim(url: str, prepared_statements: bool) -> list[str]:
    db = Database.from_url(url, prepared_statements=prepared_statements)
    try:
        with db.write() as conn:
            queue.claim(conn, "w1", 2e9, 60, 10, busy={}, per_webhook=10)
            listed = text("SELECT statement FROM pg_prepared_statements")
            return [str(s) for s in conn.execute(listed).scalars()]
    finally:
        db.dispose()


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_postgresql_prepares_the_marked_statements_unless_told_not_to(
    api: Api, database_url: str
) -> None:
    api.create_webhook(events=["item.created"])
    _due_deliveries(api, ["item.created"], 3)
    url = api.context.settings.sqlalchemy_url
    prepared = _prepared_after_a_claim(url, True)
    assert any(s.startswith("UPDATE deliveries SET status") for s in prepared)  # the lease
    # The query for due deliveries stays unprepared: its generic plan can scan the queue.
    assert not any("next_attempt_at <=" in s for s in prepared)
    assert _prepared_after_a_claim(url, False) == []


def _statements(db: Database) -> list[str]:
    """The SQL texts `db` sends from now on (append-only list)."""
    sent: list[str] = []

    @sa_event.listens_for(db.engine, "before_cursor_execute")
    def _sent(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        sent.append(statement)

    return sent


@pytest.mark.parametrize("count", [1, 3, 128, 129, 300])
def test_execute_many_writes_any_count_of_rows_in_few_statements(api: Api, count: int) -> None:
    """One statement per 128 rows on SQLite (padded to a power of two), one on PostgreSQL:
    on SQLite the driver's executemany let go of the GIL at every row (see execute_many)."""
    db = api.context.db
    delivery_id = _one_delivery(api)
    rows: list[dict[str, Any]] = [
        {
            "id": f"att_{i:04d}",
            "delivery_id": delivery_id,
            "at": 1764212345.123456 + i / 7,  # not a short decimal: sent as a double
            "status_code": None if i % 3 else 200 + i,
            "duration_ms": i,
            "error": None if i % 2 else AWKWARD[i % len(AWKWARD)],
            "response_body": "ok",
            "request_headers": {"n": i},
        }
        for i in range(count)
    ]
    sent = _statements(db)
    with db.write() as conn:
        assert execute_many(conn, insert(attempts), rows) == count
    inserts = [s for s in sent if s.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == (1 if not db.is_sqlite else -(-count // 128))
    columns = [attempts.c[k] for k in rows[0]]
    with db.read() as conn:
        got = conn.execute(select(*columns).order_by(attempts.c.id)).mappings().all()
    assert [dict(r) for r in got] == rows


def test_execute_many_inserts_the_shared_values_into_every_row(api: Api) -> None:
    db = api.context.db
    delivery_id = _one_delivery(api)
    rows: list[dict[str, Any]] = [
        {"id": f"att_{i}", "delivery_id": delivery_id, "at": float(i), "duration_ms": i}
        for i in range(3)
    ]
    shared = {"response_body": "the same", "request_headers": {"shared": True}}
    with db.write() as conn:
        assert execute_many(conn, insert(attempts), rows, shared) == 3
    with db.read() as conn:
        got = conn.execute(
            select(attempts.c.id, attempts.c.response_body, attempts.c.request_headers)
        ).all()
    assert sorted(got) == [(f"att_{i}", "the same", {"shared": True}) for i in range(3)]


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database.from_url(f"sqlite:///{tmp_path / 'bulk.db'}")
    upgrade(db.engine)
    yield db
    db.dispose()


def test_execute_many_on_sqlite_refuses_a_row_it_could_not_tell_from_padding(
    sqlite_db: Database,
) -> None:
    with pytest.raises(ValueError, match="may not be None"), sqlite_db.write() as conn:
        execute_many(conn, insert(event_types), [{"name": None, "description": ""}])


def test_a_record_moves_only_what_is_still_leased_to_its_worker(api: Api) -> None:
    api.create_webhook(events=["item.created"])
    for _ in range(5):
        assert api.publish("item.created").status_code == 202
    db = api.context.db
    with db.write() as conn:
        mine = queue.claim(conn, "w1", 2e9, 60, 3)
        theirs = queue.claim(conn, "w2", 2e9, 60, 2)
    assert (len(mine), len(theirs)) == (3, 2)

    def outcome(job: queue.Job, code: int) -> queue.Outcome:
        hook_id = job.webhook["id"] if job.webhook else ""
        retry = None if code == 200 else 2e9 + 60
        return queue.Outcome(
            job.delivery_id, hook_id, 2e9, code, 5, None, "", {}, code == 200, retry
        )

    outcomes = [outcome(mine[0], 200), outcome(mine[1], 500), outcome(mine[2], 200)]
    sent = _statements(db)
    with db.write() as conn:  # w1 also reports one of w2's deliveries: not moved
        moved = queue.record(conn, "w1", [*outcomes, outcome(theirs[0], 200)], 2e9 + 1)
    assert moved == 3
    assert sum(s.lstrip().upper().startswith("UPDATE DELIVERIES") for s in sent) == 1
    with db.read() as conn:
        rows = conn.execute(
            select(deliveries.c.id, deliveries.c.status, deliveries.c.attempt_count)
        )
        status = {r.id: (r.status, r.attempt_count) for r in rows}
    assert status[mine[0].delivery_id] == ("succeeded", 1)
    assert status[mine[1].delivery_id] == ("pending", 1)
    assert status[theirs[0].delivery_id] == ("delivering", 0)


def test_the_sqlite_record_finds_each_delivery_by_its_key(sqlite_db: Database) -> None:
    columns = tuple(f"b_{k}" for k in RECORD_KEYS)
    sql = db_module._sqlite_many(queue._SQLITE_RECORD, columns, 4)
    with sqlite_db.read() as conn:
        explain = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, (None,) * 40)
        plan = [row[-1] for row in explain]
    assert any(step.startswith("SEARCH d USING INDEX sqlite_autoindex_deliveries") for step in plan)
    assert not any(step.startswith("SCAN d") for step in plan), plan


RECORD_KEYS = (
    "id",
    "status",
    "next",
    "code",
    "duration",
    "error",
    "at",
    "finished",
    "worker",
    "now",
)
