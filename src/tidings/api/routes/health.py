"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from tidings.api.deps import Ctx

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(ctx: Ctx) -> JSONResponse:
    if ctx.db.ping():
        return JSONResponse({"status": "ready", "database": "ok"})
    return JSONResponse({"status": "not ready", "database": "unreachable"}, status_code=503)
