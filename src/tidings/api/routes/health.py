"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from tidings import metrics
from tidings.api.deps import Ctx
from tidings.errors import Unavailable

router = APIRouter(tags=["health"])

_STATUS_SCHEMA = {
    "type": "object",
    "required": ["status", "database"],
    "properties": {"status": {"type": "string"}, "database": {"type": "string"}},
}


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: {
            "description": "Ready: the database answers.",
            "content": {"application/json": {"schema": _STATUS_SCHEMA}},
        },
        503: {
            "description": "Not ready: the database is unreachable.",
            "content": {"application/json": {"schema": _STATUS_SCHEMA}},
        },
    },
)
def readyz(ctx: Ctx) -> JSONResponse:
    if ctx.db.ping():
        return JSONResponse({"status": "ready", "database": "ok"})
    return JSONResponse({"status": "not ready", "database": "unreachable"}, status_code=503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"description": "Prometheus text format.", "content": {"text/plain": {}}},
        503: {"description": "The database is unreachable.", "content": {"text/plain": {}}},
    },
)
def prometheus(ctx: Ctx) -> Response:
    """Counters of this process, and the queue's gauges read from the database."""
    try:
        body = metrics.exposition(ctx.db, ctx.clock)
    except Unavailable:
        return Response("# database unreachable\n", status_code=503, media_type="text/plain")
    return Response(body, media_type=CONTENT_TYPE_LATEST)
