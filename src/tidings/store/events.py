"""Events: accept one (idempotently) and fan it out into one pending delivery per webhook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from tidings.domain.catalog import TEST_EVENT, subscribes
from tidings.domain.ids import new_id
from tidings.errors import Conflict
from tidings.store.tables import deliveries, event_types, events, webhooks


@dataclass(frozen=True)
class Accepted:
    event: dict[str, Any]
    created: bool  # False when the Idempotency-Key replayed an earlier event


def known_event_types(conn: Connection) -> dict[str, str]:
    rows = conn.execute(select(event_types.c.name, event_types.c.description))
    return {name: description for name, description in rows}


def add_event_type(conn: Connection, name: str, description: str, now: float) -> None:
    try:
        with conn.begin_nested():
            conn.execute(
                insert(event_types).values(name=name, description=description, created_at=now)
            )
    except IntegrityError as exc:
        raise Conflict(f"the event type {name} exists already") from exc


def _replay(conn: Connection, app_id: str, key: str, request_hash: str) -> Accepted | None:
    query = select(events).where(events.c.application_id == app_id, events.c.idempotency_key == key)
    row = conn.execute(query).mappings().first()
    if row is None:
        return None
    if row["request_hash"] != request_hash:
        raise Conflict(
            "this Idempotency-Key was already used with a different request body; "
            "use a new key for a new event"
        )
    return Accepted(dict(row), created=False)


def publish(
    conn: Connection,
    app_id: str,
    event_type: str,
    content: dict[str, Any],
    *,
    idempotency_key: str | None,
    request_hash: str | None,
    now: float,
) -> Accepted:
    """Store the event and its deliveries in the caller's transaction."""
    if idempotency_key is not None:
        earlier = _replay(conn, app_id, idempotency_key, request_hash or "")
        if earlier is not None:
            return earlier
    targets = [
        w.id
        for w in conn.execute(
            select(webhooks.c.id, webhooks.c.events).where(
                webhooks.c.application_id == app_id, webhooks.c.enabled.is_(True)
            )
        )
        if subscribes(w.events, event_type)
    ]
    event = {
        "id": new_id("evt", now),
        "application_id": app_id,
        "type": event_type,
        "content": content,
        "timestamp": int(now),
        "idempotency_key": idempotency_key,
        "request_hash": request_hash,
        "delivery_count": len(targets),
        "created_at": now,
    }
    try:
        with conn.begin_nested():
            conn.execute(insert(events).values(event))
    except IntegrityError:
        # A concurrent request with the same key won the race: answer with its event.
        earlier = _replay(conn, app_id, idempotency_key or "", request_hash or "")
        if earlier is None:
            raise
        return earlier
    if targets:
        conn.execute(insert(deliveries), [new_delivery(app_id, event, w, now) for w in targets])
    return Accepted(event, created=True)


def new_delivery(app_id: str, event: dict[str, Any], webhook_id: str, now: float) -> dict[str, Any]:
    return {
        "id": new_id("dlv", now),
        "application_id": app_id,
        "event_id": event["id"],
        "webhook_id": webhook_id,
        "event_type": event["type"],
        "status": "pending",
        "attempt_count": 0,
        "next_attempt_at": now,
        "lease_expires_at": None,
        "leased_by": None,
        "last_status_code": None,
        "last_duration_ms": None,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
        "finished_at": None,
    }


def create_test_event(
    conn: Connection, app_id: str, webhook_id: str, content: dict[str, Any], now: float
) -> dict[str, Any]:
    """A TEST_EVENT for one webhook only, and its delivery."""
    event = {
        "id": new_id("evt", now),
        "application_id": app_id,
        "type": TEST_EVENT,
        "content": content,
        "timestamp": int(now),
        "idempotency_key": None,
        "request_hash": None,
        "delivery_count": 1,
        "created_at": now,
    }
    conn.execute(insert(events).values(event))
    delivery = new_delivery(app_id, event, webhook_id, now)
    conn.execute(insert(deliveries).values(delivery))
    return delivery
