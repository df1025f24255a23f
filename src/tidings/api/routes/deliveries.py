"""Deliveries: the log of what was sent where, and a hand-made retry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from tidings.api.auth import Caller, require_app
from tidings.api.deps import Ctx
from tidings.api.params import DeliveryCursor, Limit, check_cursor
from tidings.api.problems import COMMON_ERRORS, responses
from tidings.api.schemas import (
    AttemptOut,
    DeliveryDetail,
    DeliveryList,
    DeliveryOut,
    DeliveryStatus,
    iso,
    iso_or_none,
)
from tidings.domain.catalog import envelope
from tidings.store import deliveries

router = APIRouter(
    prefix="/v1/applications/{app_id}/deliveries",
    tags=["deliveries"],
    responses=responses(*COMMON_ERRORS),
)

DELIVERY_FIELDS = (
    "id",
    "event_id",
    "webhook_id",
    "event_type",
    "status",
    "attempt_count",
    "last_status_code",
    "last_duration_ms",
    "last_error",
)


def delivery_out(row: dict[str, Any]) -> DeliveryOut:
    return DeliveryOut(
        **{k: row[k] for k in DELIVERY_FIELDS},
        next_attempt_at=iso_or_none(row["next_attempt_at"]),
        created_at=iso(row["created_at"]),
        updated_at=iso(row["updated_at"]),
    )


def attempt_out(row: dict[str, Any]) -> AttemptOut:
    return AttemptOut(
        at=iso(row["at"]),
        status_code=row["status_code"],
        duration_ms=row["duration_ms"],
        error=row["error"],
        response_body=row["response_body"],
        request_headers=row["request_headers"],
    )


StatusFilter = Annotated[
    DeliveryStatus | None,
    Query(description="Only the deliveries in this status."),
]
Filter = Annotated[str | None, Query(max_length=100)]


@router.get("", response_model=DeliveryList, responses=responses(404))
def list_deliveries(
    app_id: str,
    caller: Caller,
    ctx: Ctx,
    webhook_id: Filter = None,
    status: StatusFilter = None,
    event_type: Filter = None,
    limit: Limit = 50,
    cursor: DeliveryCursor = None,
) -> DeliveryList:
    require_app(caller, app_id, admin=False)
    check_cursor(cursor, "dlv")
    with ctx.db.read() as conn:
        page = deliveries.list_deliveries(
            conn,
            app_id,
            webhook_id=webhook_id,
            status=status,
            event_type=event_type,
            limit=limit,
            cursor=cursor,
        )
    return DeliveryList(data=[delivery_out(r) for r in page.rows], next_cursor=page.next_cursor)


@router.get("/{delivery_id}", response_model=DeliveryDetail, responses=responses(404))
def get_delivery(app_id: str, delivery_id: str, caller: Caller, ctx: Ctx) -> DeliveryDetail:
    require_app(caller, app_id, admin=False)
    with ctx.db.read() as conn:
        row = deliveries.get_delivery(conn, app_id, delivery_id)
        event = deliveries.get_event(conn, row["event_id"])
        attempts = deliveries.list_attempts(conn, delivery_id)
    return DeliveryDetail(
        **delivery_out(row).model_dump(),
        payload=envelope(event["type"], event["content"], event["timestamp"]),
        attempts=[attempt_out(a) for a in attempts],
    )


@router.post(
    "/{delivery_id}/retry",
    status_code=202,
    response_model=DeliveryOut,
    responses=responses(403, 404, 409),
)
def retry_delivery(app_id: str, delivery_id: str, caller: Caller, ctx: Ctx) -> DeliveryOut:
    require_app(caller, app_id, admin=True, action="retry deliveries")
    with ctx.db.write() as conn:
        row = deliveries.retry_delivery(conn, app_id, delivery_id, ctx.clock.now())
    ctx.notify()
    return delivery_out(row)
