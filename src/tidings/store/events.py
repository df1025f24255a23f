"""Events: accept one (idempotently) and fan it out into one pending delivery per webhook."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from tidings.domain.catalog import TEST_EVENT, compact_json, subscribes
from tidings.domain.ids import new_id
from tidings.errors import Conflict, InvalidInput, NotFound, TidingsError
from tidings.store.db import Statements, at_commit, execute_many, in_list
from tidings.store.queue import KEPT_WEBHOOK_COLUMNS, Job, KeptWhileCatalogStays
from tidings.store.tables import applications, deliveries, event_types, events, webhooks


@dataclass(frozen=True)
class Accepted:
    event: dict[str, Any]
    created: bool  # False when the Idempotency-Key replayed an earlier event
    # Deliveries leased at once to an in-process worker (`tidings serve`), to hand it.
    jobs: tuple[Job, ...] = ()


class Taker(Protocol):
    """An in-process worker that takes new deliveries as they are written (no claim)."""

    worker_id: str
    lease_s: float

    def take(self, webhook: dict[str, Any]) -> bool:
        """Whether it takes one more new delivery to `webhook` (called per delivery)."""


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


@dataclass(frozen=True)
class PublishRequest:
    app_id: str
    event_type: str
    content: dict[str, Any]
    idempotency_key: str | None = None
    request_hash: str | None = None


class Catalog(KeptWhileCatalogStays):
    """What publishing reads of applications, event types and webhooks, kept from one batch
    to the next (for the publish writer's thread): reading them again was 300 to 490 µs of
    every batch; the version is one row by primary key."""

    def forget(self) -> None:
        self._hooks: dict[str, list[dict[str, Any]]] = {}  # application → enabled webhooks
        self._types: set[str] = set()

    def kept(self) -> int:
        return len(self._hooks)

    def lookup(
        self, conn: Connection, app_ids: set[str], type_names: set[str]
    ) -> tuple[dict[str, list[dict[str, Any]]], set[str]]:
        """Of these, the applications that exist (with their enabled webhooks), and the event
        types that exist."""
        self.check(conn)
        missing = [a for a in app_ids if a not in self._hooks]
        if missing:
            found: dict[str, list[dict[str, Any]]] = {
                a: [] for a in conn.execute(_APPLICATIONS, {"ids": missing}).scalars()
            }
            for row in conn.execute(_ENABLED_WEBHOOKS, {"ids": list(found)}).mappings():
                found[row["application_id"]].append(dict(row))
            self._hooks.update(found)
        unknown = [t for t in type_names if t not in self._types]
        if unknown:
            self._types.update(conn.execute(_EVENT_TYPES, {"names": unknown}).scalars())
        hooks = {a: self._hooks[a] for a in app_ids if a in self._hooks}
        return hooks, type_names & self._types


def publish_many(
    conn: Connection,
    requests: Sequence[PublishRequest],
    now: float,
    taker: Taker | None = None,
    catalog: Catalog | None = None,
) -> list[Accepted | TidingsError]:
    """Store many events and their deliveries in the caller's transaction, with a fixed number
    of statements whatever their count (group commit): each request's answer is its
    `Accepted`, or the error that refused it (no such application, unknown type, a reused
    Idempotency-Key). A concurrent request that took the same Idempotency-Key first makes the
    insert raise `IntegrityError`: retry that request alone with `publish`. `catalog`
    carries what was read of applications, types and webhooks from one call to the next."""
    hooks, types = (catalog or Catalog()).lookup(
        conn, {r.app_id for r in requests}, {r.event_type for r in requests}
    )
    earlier = _earlier_by_key(conn, [r for r in requests if r.idempotency_key is not None])
    results: list[Accepted | TidingsError] = []
    new_events: list[dict[str, Any]] = []
    new_deliveries: list[dict[str, Any]] = []
    for r in requests:
        if r.app_id not in hooks:
            results.append(NotFound(f"no application {r.app_id}"))
            continue
        if r.event_type not in types:
            results.append(
                InvalidInput(f"unknown event type {r.event_type}; see GET /v1/event-types")
            )
            continue
        key = (r.app_id, r.idempotency_key)
        if r.idempotency_key is not None and key in earlier:
            results.append(_replayed(earlier[key], r.request_hash))
            continue
        targets = [h for h in hooks.get(r.app_id, ()) if subscribes(h["events"], r.event_type)]
        event = {
            "id": new_id("evt", now),
            "application_id": r.app_id,
            "type": r.event_type,
            "content": r.content,
            "timestamp": int(now),
            "idempotency_key": r.idempotency_key,
            "request_hash": r.request_hash,
            "delivery_count": len(targets),
            "created_at": now,
        }
        if r.idempotency_key is not None:
            earlier[key] = event
        new_events.append(event)
        taken = []
        for hook in targets:
            delivery = new_delivery(r.app_id, event, hook["id"], now)
            if taker is not None and _takeable(hook) and taker.take(hook):
                delivery.update(
                    status="delivering",
                    leased_by=taker.worker_id,
                    lease_expires_at=now + taker.lease_s,
                )
                taken.append((delivery, hook))
            new_deliveries.append(delivery)
        results.append(Accepted(event, created=True, jobs=_jobs(event, taken)))
    at_commit(conn, functools.partial(_insert, new_events, new_deliveries))
    return results


def _insert(
    new_events: list[dict[str, Any]], new_deliveries: list[dict[str, Any]], conn: Statements
) -> None:
    execute_many(conn, _INSERT_EVENT, new_events)
    execute_many(conn, _INSERT_DELIVERY, new_deliveries)


# Built once (lists bound at execution): building them was a sixth of a small batch's time.
_APPLICATIONS = select(applications.c.id).where(in_list(applications.c.id, "ids"))
_EVENT_TYPES = select(event_types.c.name).where(in_list(event_types.c.name, "names"))
_ENABLED_WEBHOOKS = select(*KEPT_WEBHOOK_COLUMNS).where(
    in_list(webhooks.c.application_id, "ids"), webhooks.c.enabled.is_(True)
)
_INSERT_EVENT = insert(events)
_INSERT_DELIVERY = insert(deliveries)


def _takeable(hook: dict[str, Any]) -> bool:
    """FIFO and rate-limited webhooks go through the claim, which keeps their rules."""
    return hook["ordering"] != "fifo" and not hook["rate_limit"]


def _jobs(
    event: dict[str, Any], taken: list[tuple[dict[str, Any], dict[str, Any]]]
) -> tuple[Job, ...]:
    """The handed-over deliveries of one event, as the worker sends them (its content
    written as JSON once for all of them)."""
    if not taken:
        return ()
    content_json = compact_json(event["content"])
    return tuple(
        Job(
            delivery_id=delivery["id"],
            application_id=delivery["application_id"],
            attempt_count=0,
            event_type=event["type"],
            content_json=content_json,
            timestamp=event["timestamp"],
            webhook=hook,
        )
        for delivery, hook in taken
    )


def _earlier_by_key(
    conn: Connection, keyed: Sequence[PublishRequest]
) -> dict[tuple[str, str | None], dict[str, Any]]:
    if not keyed:
        return {}
    query = select(events).where(
        events.c.application_id.in_({r.app_id for r in keyed}),
        events.c.idempotency_key.in_({r.idempotency_key for r in keyed}),
    )
    return {
        (row["application_id"], row["idempotency_key"]): dict(row)
        for row in conn.execute(query).mappings()
    }


def _replayed(event: dict[str, Any], request_hash: str | None) -> Accepted | TidingsError:
    if (event["request_hash"] or "") != (request_hash or ""):
        return Conflict(
            "this Idempotency-Key was already used with a different request body; "
            "use a new key for a new event"
        )
    return Accepted(event, created=False)


def publish(conn: Connection, request: PublishRequest, now: float) -> Accepted:
    """Store one event and its deliveries in the caller's transaction, or raise why not.

    A concurrent request with the same Idempotency-Key that commits first makes the insert
    fail; the retry then finds that event and answers with it."""
    for attempt in range(2):
        try:
            with conn.begin_nested():
                result = publish_many(conn, [request], now)[0]
        except IntegrityError:
            if attempt or request.idempotency_key is None:
                raise
            continue
        if isinstance(result, TidingsError):
            raise result
        return result
    raise AssertionError("unreachable")


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
