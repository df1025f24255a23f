"""Dashboard sessions, and the record of failed sign-ins that throttles password guessing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from tidings.crypto import hash_token
from tidings.store.tables import login_failures, sessions, users


def create_session(
    conn: Connection, user_id: str, token: str, csrf_token: str, now: float, ttl_s: float
) -> None:
    conn.execute(
        insert(sessions).values(
            token_hash=hash_token(token),
            user_id=user_id,
            csrf_token=csrf_token,
            created_at=now,
            expires_at=now + ttl_s,
        )
    )


def session_user(conn: Connection, token: str, now: float) -> dict[str, Any] | None:
    """The signed-in user (with the session's `csrf_token`), or None."""
    query = (
        select(users, sessions.c.csrf_token)
        .join(sessions, sessions.c.user_id == users.c.id)
        .where(sessions.c.token_hash == hash_token(token), sessions.c.expires_at > now)
    )
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def delete_session(conn: Connection, token: str) -> None:
    conn.execute(delete(sessions).where(sessions.c.token_hash == hash_token(token)))


def purge_expired_sessions(conn: Connection, now: float) -> int:
    return int(conn.execute(delete(sessions).where(sessions.c.expires_at <= now)).rowcount)


def blocked_until(conn: Connection, keys: list[str], now: float) -> float | None:
    """The latest time until which any of `keys` is blocked, or None."""
    query = select(login_failures.c.blocked_until).where(
        login_failures.c.key.in_(keys), login_failures.c.blocked_until > now
    )
    times = [t for t in conn.execute(query).scalars() if t is not None]
    return max(times) if times else None


def record_failure(
    conn: Connection, key: str, now: float, *, window_s: float, limit: int, block_s: float
) -> int:
    """Count a failed sign-in for `key`; block it once `limit` is reached. Returns the count."""
    row = conn.execute(select(login_failures).where(login_failures.c.key == key)).mappings().first()
    if row is None or row["window_start"] < now - window_s:
        failures, start = 1, now
        conn.execute(delete(login_failures).where(login_failures.c.key == key))
        conn.execute(insert(login_failures).values(key=key, failures=1, window_start=now))
    else:
        failures, start = row["failures"] + 1, row["window_start"]
        conn.execute(
            update(login_failures).where(login_failures.c.key == key).values(failures=failures)
        )
    if failures >= limit:
        conn.execute(
            update(login_failures)
            .where(login_failures.c.key == key)
            .values(blocked_until=now + block_s, window_start=start)
        )
    return failures


def clear_failures(conn: Connection, key: str) -> None:
    conn.execute(delete(login_failures).where(login_failures.c.key == key))
