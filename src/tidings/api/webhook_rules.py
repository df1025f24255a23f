"""Creating and changing webhooks, with every check; shared by the API and the dashboard."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from sqlalchemy import Connection

from tidings.api.deps import Context
from tidings.api.schemas import WebhookFields, WebhookIn, WebhookPatch
from tidings.domain import targets
from tidings.domain.catalog import subscription_problem, test_event_content
from tidings.domain.signing import generate_secret, reserved_header_problem
from tidings.errors import Conflict, InvalidInput
from tidings.store import events, webhooks


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
        raise InvalidInput(f"url: {problem}", field="url")


def checked_fields(body: WebhookFields, ctx: Context) -> dict[str, Any]:
    """The fields the caller set, checked; all but the event types (see `check_events`)."""
    fields = body.model_dump(exclude_unset=True)
    for required in ("url", "events", "enabled", "ordering"):
        if required in fields and fields[required] is None:
            raise InvalidInput(f"{required} cannot be null", field=required)
    if "url" in fields:
        check_callback_url(fields["url"], ctx)  # before any transaction: it may resolve DNS
    for name in fields.get("headers") or {}:
        problem = reserved_header_problem(name, ctx.settings.signature_header)
        if problem is not None:
            raise InvalidInput(f"headers: {problem}", field="headers")
    if "headers" in fields and fields["headers"] is None:
        fields["headers"] = {}
    if fields.get("name") == "":
        fields["name"] = None
    return fields


def check_events(fields: dict[str, Any], conn: Connection) -> None:
    if "events" in fields:
        problem = subscription_problem(fields["events"], events.known_event_types(conn))
        if problem is not None:
            raise InvalidInput(f"events: {problem}", field="events")


def create(ctx: Context, app_id: str, body: WebhookIn) -> tuple[dict[str, Any], str]:
    """A new webhook and its secret (the one time it is shown)."""
    secret = generate_secret()
    fields = checked_fields(body, ctx)
    fields.update({k: getattr(body, k) for k in ("url", "events", "enabled", "ordering")})
    with ctx.db.write() as conn:
        check_events(fields, conn)
        row = webhooks.create_webhook(
            conn,
            app_id,
            fields,
            secret,
            ctx.box,
            limit=ctx.settings.webhooks_per_application,
            now=ctx.clock.now(),
        )
    return row, secret


def update(ctx: Context, app_id: str, webhook_id: str, body: WebhookPatch) -> dict[str, Any]:
    changes = checked_fields(body, ctx)
    with ctx.db.write() as conn:
        check_events(changes, conn)
        return webhooks.update_webhook(conn, app_id, webhook_id, changes, ctx.clock.now())


def send_test(ctx: Context, app_id: str, webhook_id: str) -> dict[str, Any]:
    """Queue a TEST_EVENT for this webhook alone and wake the worker; returns the delivery."""
    with ctx.db.write() as conn:
        if not webhooks.get_webhook(conn, app_id, webhook_id)["enabled"]:
            raise Conflict("this webhook is disabled; enable it before sending a test")
        row = events.create_test_event(
            conn, app_id, webhook_id, test_event_content(), ctx.clock.now()
        )
    ctx.notify()
    return row
