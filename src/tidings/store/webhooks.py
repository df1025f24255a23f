"""Webhooks: create within the per-application limit, read, update, delete, rotate secrets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from tidings.crypto import SecretBox
from tidings.domain.catalog import WEBHOOK_DISABLED
from tidings.domain.ids import new_id
from tidings.errors import LimitReached, NotFound
from tidings.store.events import PublishRequest, publish
from tidings.store.pages import Page, fetch_page
from tidings.store.tables import applications, deliveries, webhooks

SECRET_OVERLAP_S = 24 * 3600


def _lock_application(conn: Connection, app_id: str) -> None:
    """Serialise writers of one application's webhooks (SQLite: BEGIN IMMEDIATE already does)."""
    query = select(applications.c.id).where(applications.c.id == app_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    if conn.execute(query).first() is None:
        raise NotFound(f"no application {app_id}")


def create_webhook(
    conn: Connection,
    app_id: str,
    fields: dict[str, Any],
    secret: str,
    box: SecretBox,
    *,
    limit: int,
    now: float,
) -> dict[str, Any]:
    _lock_application(conn, app_id)
    count = conn.execute(
        select(func.count()).select_from(webhooks).where(webhooks.c.application_id == app_id)
    ).scalar_one()
    if count >= limit:
        raise LimitReached(
            f"this application already has {count} webhooks, the most allowed is {limit}; "
            "delete one first"
        )
    row = {
        "id": new_id("wh", now),
        "application_id": app_id,
        "enabled": True,
        "name": None,
        "disabled_reason": None,
        "rate_limit": None,
        "headers": {},
        "ordering": "unordered",
        **fields,
        "secret": box.encrypt(secret),
        "previous_secret": None,
        "previous_secret_expires_at": None,
        "created_at": now,
        "updated_at": now,
    }
    conn.execute(insert(webhooks).values(row))
    return row


def get_webhook(conn: Connection, app_id: str, webhook_id: str) -> dict[str, Any]:
    query = select(webhooks).where(webhooks.c.id == webhook_id, webhooks.c.application_id == app_id)
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"no webhook {webhook_id} in this application")
    return dict(row)


def list_webhooks(conn: Connection, app_id: str, limit: int, cursor: str | None) -> Page:
    query = select(webhooks).where(webhooks.c.application_id == app_id)
    return fetch_page(conn, query, webhooks.c.id, limit=limit, cursor=cursor, newest_first=False)


def update_webhook(
    conn: Connection, app_id: str, webhook_id: str, changes: dict[str, Any], now: float
) -> dict[str, Any]:
    current = get_webhook(conn, app_id, webhook_id)
    if changes.get("enabled") is True:
        changes = {**changes, "disabled_reason": None, "failing_since": None}
    elif changes.get("enabled") is False and current["enabled"]:
        changes = {"disabled_reason": "disabled by an admin", **changes}
    conn.execute(
        update(webhooks).where(webhooks.c.id == webhook_id).values(**changes, updated_at=now)
    )
    if changes.get("enabled") is False and current["enabled"]:
        stop_pending_deliveries(conn, webhook_id, "the webhook was disabled", now)
    return {**current, **changes, "updated_at": now}


def delete_webhook(conn: Connection, app_id: str, webhook_id: str, now: float) -> None:
    get_webhook(conn, app_id, webhook_id)
    stop_pending_deliveries(conn, webhook_id, "the webhook was deleted", now)
    conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id))


def stop_pending_deliveries(conn: Connection, webhook_id: str, reason: str, now: float) -> int:
    """Fail the webhook's deliveries that wait for an attempt; in-flight ones finish first."""
    result = conn.execute(
        update(deliveries)
        .where(deliveries.c.webhook_id == webhook_id, deliveries.c.status == "pending")
        .values(
            status="failed",
            last_error=reason,
            next_attempt_at=None,
            updated_at=now,
            finished_at=now,
        )
    )
    return result.rowcount


def rotate_secret(
    conn: Connection, app_id: str, webhook_id: str, secret: str, box: SecretBox, now: float
) -> None:
    """Make `secret` current; the old one stays valid for 24 hours, and only it: two at most."""
    current = get_webhook(conn, app_id, webhook_id)
    conn.execute(
        update(webhooks)
        .where(webhooks.c.id == webhook_id)
        .values(
            secret=box.encrypt(secret),
            previous_secret=current["secret"],
            previous_secret_expires_at=now + SECRET_OVERLAP_S,
            updated_at=now,
        )
    )


def live_secrets(row: dict[str, Any], box: SecretBox, now: float) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous within 24 h."""
    secrets = [box.decrypt(row["secret"])]
    expires = row["previous_secret_expires_at"]
    if row["previous_secret"] and expires is not None and now < expires:
        secrets.append(box.decrypt(row["previous_secret"]))
    return secrets


def disable_webhook(conn: Connection, webhook_id: str, reason: str, now: float) -> bool:
    """Disable a webhook on Tidings' own account, and tell the application's webhooks that
    subscribe to `webhook.disabled`. False when it was disabled (or deleted) already."""
    row = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).mappings().first()
    if row is None or not row["enabled"]:
        return False
    conn.execute(
        update(webhooks)
        .where(webhooks.c.id == webhook_id)
        .values(enabled=False, disabled_reason=reason, failing_since=None, updated_at=now)
    )
    stop_pending_deliveries(conn, webhook_id, f"the webhook was disabled: {reason}", now)
    content = {"webhook_id": webhook_id, "url": row["url"], "reason": reason}
    publish(conn, PublishRequest(row["application_id"], WEBHOOK_DISABLED, content), now)
    return True
