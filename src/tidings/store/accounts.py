"""Applications, their users and API keys, and the operator token."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from tidings.crypto import hash_password, hash_token
from tidings.domain.ids import new_id
from tidings.errors import Conflict, NotFound
from tidings.store.pages import Page, fetch_page
from tidings.store.tables import api_keys, applications, meta, users

OPERATOR_TOKEN_KEY = "operator_token_sha256"


def create_application(conn: Connection, name: str, now: float) -> dict[str, Any]:
    row = {"id": new_id("app", now), "name": name, "created_at": now}
    conn.execute(insert(applications).values(row))
    return row


def get_application(conn: Connection, app_id: str) -> dict[str, Any]:
    row = conn.execute(select(applications).where(applications.c.id == app_id)).mappings().first()
    if row is None:
        raise NotFound(f"no application {app_id}")
    return dict(row)


def list_applications(conn: Connection, limit: int, cursor: str | None) -> Page:
    return fetch_page(
        conn,
        select(applications),
        applications.c.id,
        limit=limit,
        cursor=cursor,
        newest_first=False,
    )


def create_user(
    conn: Connection, app_id: str, email: str, password: str, role: str, now: float
) -> dict[str, Any]:
    row = {
        "id": new_id("usr", now),
        "application_id": app_id,
        "email": email,
        "password_hash": hash_password(password),
        "role": role,
        "created_at": now,
    }
    try:
        with conn.begin_nested():
            conn.execute(insert(users).values(row))
    except IntegrityError as exc:
        raise Conflict(f"a user with email {email} already exists") from exc
    return row


def find_user_by_email(conn: Connection, email: str) -> dict[str, Any] | None:
    row = conn.execute(select(users).where(users.c.email == email)).mappings().first()
    return dict(row) if row else None


def create_api_key(
    conn: Connection, app_id: str, name: str, role: str, key: str, now: float
) -> dict[str, Any]:
    row = {
        "id": new_id("key", now),
        "application_id": app_id,
        "name": name,
        "role": role,
        "key_hash": hash_token(key),
        "created_at": now,
    }
    conn.execute(insert(api_keys).values(row))
    return row


def find_api_key(conn: Connection, key: str) -> dict[str, Any] | None:
    query = select(api_keys).where(api_keys.c.key_hash == hash_token(key))
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def stored_operator_token_hash(conn: Connection) -> str | None:
    return conn.execute(select(meta.c.value).where(meta.c.key == OPERATOR_TOKEN_KEY)).scalar()


def store_operator_token(conn: Connection, token: str) -> bool:
    """Keep the hash of a generated operator token; False when one was stored already."""
    try:
        with conn.begin_nested():
            conn.execute(insert(meta).values(key=OPERATOR_TOKEN_KEY, value=hash_token(token)))
    except IntegrityError:
        return False
    return True
