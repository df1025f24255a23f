"""Publishing keeps what it read of applications, event types and webhooks only while
`catalog_version` says nothing of them changed (migration 0006, `store.events.Catalog`)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import text

from tidings.errors import InvalidInput, NotFound
from tidings.store import events, queue
from tidings.store.db import Database
from tidings.store.events import Catalog, PublishRequest

from .conftest import Api


def _version(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(text("SELECT version FROM catalog_version")).scalar_one())


def _sql(db: Database, statement: str, **params: Any) -> None:
    """A change made behind the API's back, as another process or a tool would make it."""
    with db.write() as conn:
        conn.execute(text(statement), params)


def _publish(db: Database, catalog: Catalog, app_id: str, event_type: str) -> Any:
    with db.write() as conn:
        return events.publish_many(
            conn, [PublishRequest(app_id, event_type, {"n": 1})], time.time(), None, catalog
        )[0]


def test_every_change_that_publishing_reads_raises_the_version(api: Api) -> None:
    db = api.context.db
    seen = [_version(db)]

    def raised() -> bool:
        seen.append(_version(db))
        return seen[-1] > seen[-2]

    hook = api.create_webhook(events=["item.created"])
    assert raised()
    url = f"{api.webhooks()}/{hook['id']}"
    moved = {"url": "https://hooks.example.com/moved"}
    assert api.call("PATCH", url, api.admin, json=moved).status_code == 200
    assert raised()
    for statement in (
        "UPDATE webhooks SET enabled = :off WHERE id = :id",
        "INSERT INTO event_types (name, description, created_at) VALUES ('a.b', '', 0)",
        "UPDATE event_types SET description = 'x' WHERE name = 'a.b'",
        "DELETE FROM event_types WHERE name = 'a.b'",
        "INSERT INTO applications (id, name, created_at) VALUES ('app_x', 'x', 0)",
        "UPDATE applications SET name = 'y' WHERE id = 'app_x'",
        "DELETE FROM applications WHERE id = 'app_x'",
    ):
        _sql(db, statement, off=False, id=hook["id"])
        assert raised(), statement
    assert api.call("DELETE", url, api.admin).status_code == 204
    assert raised()


def test_what_the_worker_writes_to_a_webhook_leaves_the_version(api: Api) -> None:
    db = api.context.db
    hook = api.create_webhook(events=["item.created"])
    before = _version(db)
    _sql(db, "UPDATE webhooks SET failing_since = 5 WHERE id = :id", id=hook["id"])
    _sql(db, "UPDATE webhooks SET rate_next_at = 7 WHERE id = :id", id=hook["id"])
    _sql(db, "UPDATE webhooks SET failing_since = NULL WHERE id = 'no_such_webhook'")
    assert _version(db) == before


def test_a_kept_catalog_sees_changes_made_by_another_process(api: Api) -> None:
    db = api.context.db
    catalog = Catalog()
    first = api.create_webhook(events=["item.created"])
    assert _publish(db, catalog, api.app_id, "item.created").event["delivery_count"] == 1
    # Kept: a second publish reads neither webhooks nor applications nor types again.
    assert _publish(db, catalog, api.app_id, "item.created").event["delivery_count"] == 1

    _sql(db, "UPDATE webhooks SET events = :e WHERE id = :id", e='["user.deleted"]', id=first["id"])
    assert _publish(db, catalog, api.app_id, "item.created").event["delivery_count"] == 0
    assert _publish(db, catalog, api.app_id, "user.deleted").event["delivery_count"] == 1

    second = api.create_webhook(events=["*"])
    assert _publish(db, catalog, api.app_id, "user.deleted").event["delivery_count"] == 2
    _sql(db, "UPDATE webhooks SET enabled = :off WHERE id = :id", off=False, id=second["id"])
    assert _publish(db, catalog, api.app_id, "user.deleted").event["delivery_count"] == 1

    _sql(db, "INSERT INTO event_types (name, description, created_at) VALUES ('a.b', '', 0)")
    assert _publish(db, catalog, api.app_id, "a.b").event["delivery_count"] == 0
    _sql(db, "DELETE FROM event_types WHERE name = 'a.b'")
    assert isinstance(_publish(db, catalog, api.app_id, "a.b"), InvalidInput)

    assert isinstance(_publish(db, catalog, "app_x", "user.deleted"), NotFound)
    _sql(db, "INSERT INTO applications (id, name, created_at) VALUES ('app_x', 'x', 0)")
    assert _publish(db, catalog, "app_x", "user.deleted").event["delivery_count"] == 0

    _sql(db, "INSERT INTO applications (id, name, created_at) VALUES ('app_y', 'y', 0)")
    with db.write() as conn:  # kept as existing (an event would hold it: no publish)
        assert "app_y" in catalog.lookup(conn, {"app_y"}, set())[0]
    _sql(db, "DELETE FROM applications WHERE id = 'app_y'")
    with db.write() as conn:
        assert catalog.lookup(conn, {"app_y"}, set())[0] == {}


def test_a_kept_catalog_reads_nothing_again_while_the_version_stays(api: Api) -> None:
    """What makes it worth keeping: one statement (the version) before the inserts."""
    db = api.context.db
    api.create_webhook(events=["*"])
    catalog = Catalog()
    _publish(db, catalog, api.app_id, "item.created")
    statements: list[str] = []
    with db.write() as conn:

        def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(statement)

        sa_event.listen(conn, "before_cursor_execute", seen)
        events.publish_many(
            conn, [PublishRequest(api.app_id, "item.created", {})], time.time(), None, catalog
        )
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 1 and "catalog_version" in reads[0], statements


def _claim(api: Api, kept: queue.KeptWebhooks, worker: str = "w") -> list[queue.Job]:
    with api.context.db.write() as conn:
        now = api.context.clock.now()
        return queue.claim(conn, worker, now, 30, 10, kept_webhooks=kept)


def test_a_workers_kept_webhooks_follow_changes_between_claims(api: Api) -> None:
    db = api.context.db
    kept = queue.KeptWebhooks()
    hook = api.create_webhook(events=["*"])
    api.publish("item.created", {"n": 1})
    (job,) = _claim(api, kept)
    assert job.webhook is not None and job.webhook["url"] == "https://hooks.example.com/in"
    assert "failing_since" not in job.webhook and "rate_next_at" not in job.webhook

    # Changed behind the worker's back: the next claim reads the webhook again.
    _sql(
        db,
        "UPDATE webhooks SET url = 'https://hooks.example.com/two' WHERE id = :id",
        id=hook["id"],
    )
    api.publish("item.created", {"n": 2})
    (job,) = _claim(api, kept)
    assert job.webhook is not None and job.webhook["url"] == "https://hooks.example.com/two"

    _sql(db, "UPDATE webhooks SET enabled = :off WHERE id = :id", off=False, id=hook["id"])
    _sql(db, "UPDATE webhooks SET enabled = :on WHERE id = :id", on=True, id=hook["id"])
    api.publish("item.created", {"n": 3})
    _sql(db, "UPDATE webhooks SET enabled = :off WHERE id = :id", off=False, id=hook["id"])
    (job,) = _claim(api, kept)
    assert job.webhook is not None and job.webhook["enabled"] is False  # finished unsent

    # Turned FIFO: from the next claim on, only the head of its queue is given.
    _sql(db, "UPDATE deliveries SET status = 'succeeded'")  # nothing of it in flight
    _sql(
        db,
        "UPDATE webhooks SET enabled = :on, ordering = 'fifo' WHERE id = :id",
        on=True,
        id=hook["id"],
    )
    for n in range(3):
        api.publish("item.created", {"n": n})
    assert len(_claim(api, kept, "a")) == 1
    assert _claim(api, kept, "b") == []

    # Deleted: its deliveries are claimed with no webhook, so they end unsent.
    _sql(db, "UPDATE webhooks SET ordering = 'unordered' WHERE id = :id", id=hook["id"])
    api.publish("item.created", {"n": 4})
    with db.write() as conn:
        conn.execute(text("DELETE FROM webhooks WHERE id = :id"), {"id": hook["id"]})
    assert all(job.webhook is None for job in _claim(api, kept, "c"))
