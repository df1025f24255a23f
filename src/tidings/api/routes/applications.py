"""Applications, and the API keys and users that act for them."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter

from tidings.api.auth import Caller, require_app, require_operator
from tidings.api.deps import Ctx
from tidings.api.params import AppCursor, Limit, check_cursor
from tidings.api.problems import COMMON_ERRORS, responses
from tidings.api.schemas import (
    ApiKeyIn,
    ApiKeyOut,
    ApplicationIn,
    ApplicationList,
    ApplicationOut,
    UserIn,
    UserOut,
    iso,
)
from tidings.store import accounts

router = APIRouter(
    prefix="/v1/applications", tags=["applications"], responses=responses(*COMMON_ERRORS)
)

API_KEY_PREFIX = "tdk_"


def _app_out(row: dict[str, Any]) -> ApplicationOut:
    return ApplicationOut(id=row["id"], name=row["name"], created_at=iso(row["created_at"]))


@router.post("", status_code=201, response_model=ApplicationOut, responses=responses(400, 403))
def create_application(body: ApplicationIn, caller: Caller, ctx: Ctx) -> ApplicationOut:
    require_operator(caller, "create applications")
    with ctx.db.write() as conn:
        row = accounts.create_application(conn, body.name, ctx.clock.now())
    return _app_out(row)


@router.get("", response_model=ApplicationList, responses=responses(403))
def list_applications(
    caller: Caller, ctx: Ctx, limit: Limit = 50, cursor: AppCursor = None
) -> ApplicationList:
    require_operator(caller, "list applications")
    check_cursor(cursor, "app")
    with ctx.db.read() as conn:
        page = accounts.list_applications(conn, limit, cursor)
    return ApplicationList(data=[_app_out(r) for r in page.rows], next_cursor=page.next_cursor)


@router.get("/{app_id}", response_model=ApplicationOut, responses=responses(404))
def get_application(app_id: str, caller: Caller, ctx: Ctx) -> ApplicationOut:
    require_app(caller, app_id, admin=False)
    with ctx.db.read() as conn:
        return _app_out(accounts.get_application(conn, app_id))


@router.post(
    "/{app_id}/api-keys",
    status_code=201,
    response_model=ApiKeyOut,
    responses=responses(400, 403, 404),
)
def create_api_key(app_id: str, body: ApiKeyIn, caller: Caller, ctx: Ctx) -> ApiKeyOut:
    require_app(caller, app_id, admin=True, action="create API keys")
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    with ctx.db.write() as conn:
        accounts.get_application(conn, app_id)
        row = accounts.create_api_key(conn, app_id, body.name, body.role, key, ctx.clock.now())
    return ApiKeyOut(
        id=row["id"], name=row["name"], role=row["role"], key=key, created_at=iso(row["created_at"])
    )


@router.post(
    "/{app_id}/users",
    status_code=201,
    response_model=UserOut,
    responses=responses(400, 403, 404, 409),
)
def create_user(app_id: str, body: UserIn, caller: Caller, ctx: Ctx) -> UserOut:
    require_app(caller, app_id, admin=True, action="create users")
    with ctx.db.write() as conn:
        accounts.get_application(conn, app_id)
        row = accounts.create_user(
            conn, app_id, body.email, body.password, body.role, ctx.clock.now()
        )
    return UserOut(
        id=row["id"], email=row["email"], role=row["role"], created_at=iso(row["created_at"])
    )
