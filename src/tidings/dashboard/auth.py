"""Dashboard sign-in: sessions in HTTP-only SameSite cookies, CSRF tokens, throttled guessing."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from tidings.api.auth import Principal
from tidings.api.deps import Context, Ctx
from tidings.crypto import check_password
from tidings.errors import Forbidden, RateLimited
from tidings.store import accounts, sessions

SESSION_COOKIE = "tidings_session"
LOGIN_CSRF_COOKIE = "tidings_login_csrf"
SESSION_TTL_S = 12 * 3600

# Throttling: per account and per client address, within a window.
WINDOW_S = 15 * 60
BLOCK_S = 15 * 60
ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 20


class LoginRequired(Exception):
    """No valid session: the page answers with a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


@dataclass(frozen=True)
class User:
    id: str
    email: str
    role: str
    application_id: str
    csrf_token: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def principal(self) -> Principal:
        role: Any = self.role
        return Principal(
            kind="user", application_id=self.application_id, role=role, subject_id=self.id
        )


def current_user(request: Request, ctx: Ctx) -> User:
    token = request.cookies.get(SESSION_COOKIE)
    row = None
    if token:
        with ctx.db.read() as conn:
            row = sessions.session_user(conn, token, ctx.clock.now())
    if row is None:
        raise LoginRequired(request.url.path)
    return User(row["id"], row["email"], row["role"], row["application_id"], row["csrf_token"])


SignedIn = Annotated[User, Depends(current_user)]


def check_csrf(user: User, submitted: str | None) -> None:
    if not submitted or not hmac.compare_digest(submitted, user.csrf_token):
        raise Forbidden(
            "the form was stale or came from another site; reload the page and try again"
        )


def require_admin(user: User, action: str) -> None:
    if not user.is_admin:
        raise Forbidden(f"only application admins may {action}; you are signed in as a member")


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def throttle_keys(email: str, address: str) -> list[str]:
    return [f"account:{email.strip().lower()}", f"address:{address}"]


def check_not_blocked(ctx: Context, keys: list[str]) -> None:
    now = ctx.clock.now()
    with ctx.db.read() as conn:
        until = sessions.blocked_until(conn, keys, now)
    if until is not None:
        wait = int(until - now) + 1
        raise RateLimited(
            f"too many failed sign-ins; try again in {wait // 60 + 1} minutes", retry_after=wait
        )


def sign_in(ctx: Context, email: str, password: str, keys: list[str]) -> tuple[str, int]:
    """Check the credentials: (a new session token, 0), or ("", failures so far)."""
    now = ctx.clock.now()
    with ctx.db.read() as conn:
        user = accounts.find_user_by_email(conn, email.strip().lower())
    # Always verify a hash, so that an unknown email takes as long as a wrong password.
    ok = check_password(user["password_hash"] if user else None, password) and user is not None
    with ctx.db.write() as conn:
        if not ok:
            account, address = keys
            failures = sessions.record_failure(
                conn, account, now, window_s=WINDOW_S, limit=ACCOUNT_LIMIT, block_s=BLOCK_S
            )
            sessions.record_failure(
                conn, address, now, window_s=WINDOW_S, limit=ADDRESS_LIMIT, block_s=BLOCK_S
            )
            return "", failures
        assert user is not None
        sessions.clear_failures(conn, keys[0])
        token = secrets.token_urlsafe(32)
        sessions.create_session(
            conn, user["id"], token, secrets.token_urlsafe(32), now, SESSION_TTL_S
        )
        return token, 0


def failure_delay_s(failures: int) -> float:
    """How long to hold a wrong answer: nothing for the first two, then growing, at most 3 s."""
    return 0.0 if failures <= 2 else min(3.0, 0.5 * (failures - 2))


def sign_out(ctx: Context, token: str | None) -> None:
    if token:
        with ctx.db.write() as conn:
            sessions.delete_session(conn, token)
