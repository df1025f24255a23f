"""Deliveries as the API reads them, and the hand-made actions on them (retry, recover)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, update

from tidings.errors import Conflict, NotFound
from tidings.store.pages import Page, fetch_page
from tidings.store.tables import attempts, deliveries, events, webhooks

STATUSES = ("pending", "delivering", "succeeded", "failed")


def list_deliveries(
    conn: Connection,
    app_id: str,
    *,
    webhook_id: str | None,
    status: str | None,
    event_type: str | None,
    limit: int,
    cursor: str | None,
) -> Page:
    query = select(deliveries).where(deliveries.c.application_id == app_id)
    if webhook_id is not None:
        query = query.where(deliveries.c.webhook_id == webhook_id)
    if status is not None:
        query = query.where(deliveries.c.status == status)
    if event_type is not None:
        query = query.where(deliveries.c.event_type == event_type)
    return fetch_page(conn, query, deliveries.c.id, limit=limit, cursor=cursor, newest_first=True)


def get_delivery(conn: Connection, app_id: str, delivery_id: str) -> dict[str, Any]:
    query = select(deliveries).where(
        deliveries.c.id == delivery_id, deliveries.c.application_id == app_id
    )
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id} in this application")
    return dict(row)


def get_event(conn: Connection, event_id: str) -> dict[str, Any]:
    row = conn.execute(select(events).where(events.c.id == event_id)).mappings().one()
    return dict(row)


def list_attempts(conn: Connection, delivery_id: str) -> list[dict[str, Any]]:
    query = (
        select(attempts)
        .where(attempts.c.delivery_id == delivery_id)
        .order_by(attempts.c.at, attempts.c.id)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def retry_delivery(conn: Connection, app_id: str, delivery_id: str, now: float) -> dict[str, Any]:
    """Queue a finished delivery for one more attempt now (it keeps its id)."""
    row = get_delivery(conn, app_id, delivery_id)
    if row["status"] in ("pending", "delivering"):
        raise Conflict(f"delivery {delivery_id} is {row['status']} already; it will be attempted")
    hook = conn.execute(select(webhooks.c.enabled).where(webhooks.c.id == row["webhook_id"]))
    enabled = hook.scalar()
    if enabled is None:
        raise Conflict("the webhook of this delivery was deleted; it cannot be retried")
    if not enabled:
        raise Conflict("the webhook of this delivery is disabled; enable it, then retry")
    changes = {
        "status": "pending",
        "next_attempt_at": now,
        "finished_at": None,
        "updated_at": now,
    }
    conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(changes))
    return {**row, **changes}


def recover_failed(conn: Connection, app_id: str, webhook_id: str, since: float, now: float) -> int:
    """Queue again every failed delivery of the webhook created at or after `since`."""
    result = conn.execute(
        update(deliveries)
        .where(
            deliveries.c.application_id == app_id,
            deliveries.c.webhook_id == webhook_id,
            deliveries.c.status == "failed",
            deliveries.c.created_at >= since,
        )
        .values(status="pending", next_attempt_at=now, finished_at=None, updated_at=now)
    )
    return result.rowcount
