"""Webhooks: the callback URLs an application registers, and the actions on them."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from fastapi import APIRouter, Response

from tidings.api import webhook_rules as rules
from tidings.api.auth import Caller, require_app
from tidings.api.deps import Context, Ctx
from tidings.api.params import Limit, WebhookCursor, check_cursor
from tidings.api.problems import COMMON_ERRORS, responses
from tidings.api.routes.deliveries import delivery_out
from tidings.api.schemas import (
    DeliveryOut,
    Recovered,
    RecoverIn,
    SecretOut,
    WebhookIn,
    WebhookList,
    WebhookOut,
    WebhookPatch,
    iso,
)
from tidings.domain.signing import generate_secret, mask_secret
from tidings.errors import Conflict
from tidings.store import deliveries as delivery_store
from tidings.store import webhooks

router = APIRouter(
    prefix="/v1/applications/{app_id}/webhooks",
    tags=["webhooks"],
    responses=responses(*COMMON_ERRORS),
)


def webhook_out(row: dict[str, Any], ctx: Context, secret: str | None = None) -> WebhookOut:
    return WebhookOut(
        id=row["id"],
        url=row["url"],
        name=row["name"],
        events=row["events"],
        enabled=row["enabled"],
        disabled_reason=row["disabled_reason"],
        rate_limit=row["rate_limit"],
        timeout_s=row.get("timeout_s"),
        headers=row["headers"],
        ordering=row["ordering"],
        secret=secret or mask_secret(ctx.box.decrypt(row["secret"])),
        created_at=iso(row["created_at"]),
        updated_at=iso(row["updated_at"]),
    )


@router.post(
    "",
    status_code=201,
    response_model=WebhookOut,
    responses=responses(400, 403, 404, 409),
)
def create_webhook(app_id: str, body: WebhookIn, caller: Caller, ctx: Ctx) -> WebhookOut:
    require_app(caller, app_id, admin=True, action="create webhooks")
    row, secret = rules.create(ctx, app_id, body)
    return webhook_out(row, ctx, secret)


@router.get("", response_model=WebhookList, responses=responses(404))
def list_webhooks(
    app_id: str, caller: Caller, ctx: Ctx, limit: Limit = 50, cursor: WebhookCursor = None
) -> WebhookList:
    require_app(caller, app_id, admin=False)
    check_cursor(cursor, "wh")
    with ctx.db.read() as conn:
        page = webhooks.list_webhooks(conn, app_id, limit, cursor)
    return WebhookList(data=[webhook_out(r, ctx) for r in page.rows], next_cursor=page.next_cursor)


@router.get("/{webhook_id}", response_model=WebhookOut, responses=responses(404))
def get_webhook(app_id: str, webhook_id: str, caller: Caller, ctx: Ctx) -> WebhookOut:
    require_app(caller, app_id, admin=False)
    with ctx.db.read() as conn:
        return webhook_out(webhooks.get_webhook(conn, app_id, webhook_id), ctx)


@router.patch("/{webhook_id}", response_model=WebhookOut, responses=responses(400, 403, 404, 409))
def update_webhook(
    app_id: str, webhook_id: str, body: WebhookPatch, caller: Caller, ctx: Ctx
) -> WebhookOut:
    require_app(caller, app_id, admin=True, action="change webhooks")
    return webhook_out(rules.update(ctx, app_id, webhook_id, body), ctx)


@router.delete("/{webhook_id}", status_code=204, responses=responses(403, 404))
def delete_webhook(app_id: str, webhook_id: str, caller: Caller, ctx: Ctx) -> Response:
    require_app(caller, app_id, admin=True, action="delete webhooks")
    with ctx.db.write() as conn:
        webhooks.delete_webhook(conn, app_id, webhook_id, ctx.clock.now())
    return Response(status_code=204)


@router.post("/{webhook_id}/rotate-secret", response_model=SecretOut, responses=responses(403, 404))
def rotate_secret(app_id: str, webhook_id: str, caller: Caller, ctx: Ctx) -> SecretOut:
    require_app(caller, app_id, admin=True, action="rotate secrets")
    secret = generate_secret()
    with ctx.db.write() as conn:
        webhooks.rotate_secret(conn, app_id, webhook_id, secret, ctx.box, ctx.clock.now())
    return SecretOut(secret=secret)


@router.post(
    "/{webhook_id}/test",
    status_code=202,
    response_model=DeliveryOut,
    responses=responses(403, 404, 409),
)
def send_test(app_id: str, webhook_id: str, caller: Caller, ctx: Ctx) -> DeliveryOut:
    require_app(caller, app_id, admin=True, action="send test events")
    return delivery_out(rules.send_test(ctx, app_id, webhook_id))


@router.post(
    "/{webhook_id}/recover",
    status_code=202,
    response_model=Recovered,
    responses=responses(400, 403, 404, 409),
)
def recover(app_id: str, webhook_id: str, body: RecoverIn, caller: Caller, ctx: Ctx) -> Recovered:
    require_app(caller, app_id, admin=True, action="recover deliveries")
    with ctx.db.write() as conn:
        if not webhooks.get_webhook(conn, app_id, webhook_id)["enabled"]:
            raise Conflict("this webhook is disabled; enable it before recovering its deliveries")
        since = body.since if body.since.tzinfo else body.since.replace(tzinfo=UTC)
        count = delivery_store.recover_failed(
            conn, app_id, webhook_id, since.timestamp(), ctx.clock.now()
        )
    if count:
        ctx.notify()
    return Recovered(requeued=count)
