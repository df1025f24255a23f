"""Who is calling (operator, or an application's admin or member) and what they may do.

Roles: the operator may do everything, on every application. An API key or a dashboard user
belongs to one application: members read, admins also manage. Another application's objects
answer 404, so that ids cannot be probed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from tidings.api.deps import Context, Ctx
from tidings.api.ratelimit import retry_after_header
from tidings.crypto import hash_token
from tidings.errors import Forbidden, NotFound, RateLimited, Unauthenticated
from tidings.store import accounts

Role = Literal["admin", "member"]


@dataclass(frozen=True)
class Principal:
    kind: Literal["operator", "api_key", "user"]
    application_id: str | None = None
    role: Role | None = None
    subject_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"


def is_operator_token(context: Context, token: str) -> bool:
    configured = context.settings.operator_token
    if configured:
        return hmac.compare_digest(configured.encode(), token.encode())
    stored = context.operator_token_hash
    return stored is not None and hmac.compare_digest(stored, hash_token(token))


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("send Authorization: Bearer <operator token or API key>")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token


def _api_key_principal(context: Context, token: str) -> Principal:
    with context.db.read() as conn:
        key = accounts.find_api_key(conn, token)
    if key is None:
        raise Unauthenticated("this token is not an operator token or a known API key")
    return Principal(
        kind="api_key", application_id=key["application_id"], role=key["role"], subject_id=key["id"]
    )


async def get_principal(request: Request, context: Ctx) -> Principal:
    # Async, so the operator's requests (publishing) skip the thread pool; an API key is
    # looked up in the database from a worker thread.
    token = bearer_token(request.headers.get("authorization"))
    if is_operator_token(context, token):
        principal = Principal(kind="operator")
    else:
        principal = await run_in_threadpool(_api_key_principal, context, token)
    enforce_rate_limit(context, principal)
    return principal


def enforce_rate_limit(context: Context, principal: Principal) -> None:
    if principal.is_operator:
        limiter, key = context.operator_limiter, "operator"
    else:
        limiter, key = context.limiter, principal.subject_id or ""
    wait = limiter.take(key) if limiter is not None else 0.0
    if wait > 0:
        seconds = retry_after_header(wait)
        raise RateLimited(
            f"too many requests with this credential; try again in {seconds} s",
            retry_after=seconds,
        )


Caller = Annotated[Principal, Depends(get_principal)]


def require_operator(principal: Principal, action: str) -> None:
    if not principal.is_operator:
        raise Forbidden(f"only the operator token may {action}")


def require_app(principal: Principal, app_id: str, *, admin: bool, action: str = "") -> None:
    """Let the caller act on application `app_id`, as an admin when `admin` is set."""
    if principal.is_operator:
        return
    if principal.application_id != app_id:
        raise NotFound(f"no application {app_id}")
    if admin and principal.role != "admin":
        raise Forbidden(f"only application admins may {action}; this {_who(principal)} is a member")


def _who(principal: Principal) -> str:
    return "API key" if principal.kind == "api_key" else "user"
