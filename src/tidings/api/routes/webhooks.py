"""Webhooks: the callback URLs an application registers, and the actions on them."""

from __future__ import annotations

import ipaddress
import socket
from datetime import UTC
from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import Connection

from tidings.api.auth import Caller, require_app
from tidings.api.deps import Context, Ctx
from tidings.api.params import Cursor, Limit, check_cursor
from tidings.api.routes.deliveries import delivery_out
from tidings.api.schemas import (
    DeliveryOut,
    Recovered,
    RecoverIn,
    SecretOut,
    WebhookFields,
    WebhookIn,
    WebhookList,
    WebhookOut,
    WebhookPatch,
    iso,
)
from tidings.domain import targets
from tidings.domain.catalog import subscription_problem, test_event_content
from tidings.domain.signing import generate_secret, mask_secret, reserved_header_problem
from tidings.errors import Conflict, InvalidInput
from tidings.store import deliveries as delivery_store
from tidings.store import events, webhooks

router = APIRouter(prefix="/v1/applications/{app_id}/webhooks", tags=["webhooks"])


def webhook_out(row: dict[str, Any], ctx: Context, secret: str | None = None) -> WebhookOut:
    return WebhookOut(
        id=row["id"],
        url=row["url"],
        name=row["name"],
        events=row["events"],
        enabled=row["enabled"],
        disabled_reason=row["disabled_reason"],
        rate_limit=row["rate_limit"],
        headers=row["headers"],
        ordering=row["ordering"],
        secret=secret or mask_secret(ctx.box.decrypt(row["secret"])),
        created_at=iso(row["created_at"]),
        updated_at=iso(row["updated_at"]),
    )


def _resolve(host: str) -> list[targets.IPAddress] | None:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None  # unresolvable now; checked again before every delivery
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def check_callback_url(url: str, ctx: Context) -> None:
    settings = ctx.settings
    problem = targets.url_problem(url, require_https=settings.require_https)
    if problem is None:
        host = targets.hostname(url)
        allow = settings.allow_private_targets
        problem = targets.host_problem(host, allow_private=allow)
        if problem is None and not allow and targets.parse_host_literal(host) is None:
            addresses = _resolve(host)
            if addresses:
                problem = targets.resolved_problem(addresses, allow_private=allow)
        if problem is not None and not allow:
            problem += " (set TIDINGS_ALLOW_PRIVATE_TARGETS=1 to allow it in development)"
    if problem is not None:
        raise InvalidInput(f"url: {problem}")


def _checked_fields(body: WebhookFields, ctx: Context) -> dict[str, Any]:
    """The fields the caller set, checked; everything but the event types (see below)."""
    fields = body.model_dump(exclude_unset=True)
    for required in ("url", "events", "enabled", "ordering"):
        if required in fields and fields[required] is None:
            raise InvalidInput(f"{required} cannot be null")
    if "url" in fields:
        check_callback_url(fields["url"], ctx)  # before any transaction: it may resolve DNS
    for name in fields.get("headers") or {}:
        problem = reserved_header_problem(name, ctx.settings.signature_header)
        if problem is not None:
            raise InvalidInput(f"headers: {problem}")
    if "headers" in fields and fields["headers"] is None:
        fields["headers"] = {}
    if fields.get("name") == "":
        fields["name"] = None
    return fields


def _check_events(fields: dict[str, Any], conn: Connection) -> None:
    if "events" in fields:
        problem = subscription_problem(fields["events"], events.known_event_types(conn))
        if problem is not None:
            raise InvalidInput(f"events: {problem}")


@router.post("", status_code=201, response_model=WebhookOut)
def create_webhook(app_id: str, body: WebhookIn, caller: Caller, ctx: Ctx) -> WebhookOut:
    require_app(caller, app_id, admin=True, action="create webhooks")
    secret = generate_secret()
    fields = _checked_fields(body, ctx)
    fields.update({k: getattr(body, k) for k in ("url", "events", "enabled", "ordering")})
    with ctx.db.write() as conn:
        _check_events(fields, conn)
        row = webhooks.create_webhook(
            conn,
            app_id,
            fields,
            secret,
            ctx.box,
            limit=ctx.settings.webhooks_per_application,
            now=ctx.clock.now(),
        )
    return webhook_out(row, ctx, secret)


@router.get("", response_model=WebhookList)
def list_webhooks(
    app_id: str, caller: Caller, ctx: Ctx, limit: Limit = 50, cursor: Cursor = None
) -> WebhookList:
    require_app(caller, app_id, admin=False)
    check_cursor(cursor, "wh")
    with ctx.db.read() as conn:
        page = webhooks.list_webhooks(conn, app_id, limit, cursor)
    return WebhookList(data=[webhook_out(r, ctx) for r in page.rows], next_cursor=page.next_cursor)


@router.get("/{webhook_id}", response_model=WebhookOut)
def get_webhook(app_id: str, webhook_id: str, caller: Caller, ctx: Ctx) -> WebhookOut:
    require_app(caller, app_id, admin=False)
    with ctx.db.read() as conn:
        return webhook_out(webhooks.get_webhook(conn, app_id, webhook_id), ctx)


@router.patch("/{webhook_id}", response_model=WebhookOut)
def update_webhook(
    app_id: str, webhook_id: str, body: WebhookPatch, caller: Caller, ctx: Ctx
) -> WebhookOut:
    require_app(caller, app_id, admin=True, action="change webhooks")
    changes = _checked_fields(body, ctx)
    with ctx.db.write() as conn:
        _check_events(changes, conn)
        row = webhooks.update_webhook(conn, app_id, webhook_id, changes, ctx.clock.now())
    return webhook_out(row, ctx)


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(app_id: str, webhook_id: str, caller: Caller, ctx: Ctx) -> Response:
    require_app(caller, app_id, admin=True, action="delete webhooks")
    with ctx.db.write() as conn:
        webhooks.delete_webhook(conn, app_id, webhook_id, ctx.clock.now())
    return Response(status_code=204)


@router.post("/{webhook_id}/rotate-secret", response_model=SecretOut)
def rotate_secret(app_id: str, webhook_id: str, caller: Caller, ctx: Ctx) -> SecretOut:
    require_app(caller, app_id, admin=True, action="rotate secrets")
    secret = generate_secret()
    with ctx.db.write() as conn:
        webhooks.rotate_secret(conn, app_id, webhook_id, secret, ctx.box, ctx.clock.now())
    return SecretOut(secret=secret)


@router.post("/{webhook_id}/test", status_code=202, response_model=DeliveryOut)
def send_test(app_id: str, webhook_id: str, caller: Caller, ctx: Ctx) -> DeliveryOut:
    require_app(caller, app_id, admin=True, action="send test events")
    with ctx.db.write() as conn:
        if not webhooks.get_webhook(conn, app_id, webhook_id)["enabled"]:
            raise Conflict("this webhook is disabled; enable it before sending a test")
        row = events.create_test_event(
            conn, app_id, webhook_id, test_event_content(), ctx.clock.now()
        )
    ctx.notify()
    return delivery_out(row)


@router.post("/{webhook_id}/recover", status_code=202, response_model=Recovered)
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
