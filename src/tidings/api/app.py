"""The FastAPI application factory: wires settings, database, clock and routers."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import Receive, Scope, Send

from tidings import __version__, dashboard
from tidings.api import problems
from tidings.api.deps import Context
from tidings.api.fast_publish import FastPublish
from tidings.api.limits import BodySizeLimit, JsonBodies
from tidings.api.routes import applications, deliveries, event_types, events, health, webhooks
from tidings.clock import Clock, SystemClock
from tidings.config import Settings
from tidings.crypto import SecretBox, load_or_create_key
from tidings.delivery.worker import Worker
from tidings.store import accounts
from tidings.store.db import Database

DESCRIPTION = """\
Tidings delivers your platform's events to the webhooks your client applications register,
signed (Standard Webhooks and a hex HMAC header) and retried for one to two days.

Authenticate with `Authorization: Bearer <token>`: the operator token, or an application API
key (role `admin` or `member`). Errors are `application/problem+json`.
"""


def build_context(
    settings: Settings, db: Database | None = None, clock: Clock | None = None
) -> Context:
    db = db or Database.from_settings(settings)
    box = SecretBox(load_or_create_key(settings.encryption_key, settings.key_file))
    with db.read() as conn:
        token_hash = accounts.stored_operator_token_hash(conn)
    return Context(settings, db, box, clock or SystemClock(), token_hash)


def _openapi_with_bearer(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, saying that every /v1 operation takes a bearer token."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "The operator token, or an application API key (tdk_…).",
            }
        }
        for path, operations in schema["paths"].items():
            if path.startswith("/v1/"):
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema


class TidingsAPI(FastAPI):
    """FastAPI, with the publish fast path (when there is one) in front of everything."""

    fast_publish: FastPublish | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_publish is not None:
            await self.fast_publish(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(
    context: Context, worker: Worker | None = None, *, fast_publish: bool = True
) -> FastAPI:
    """The API; with `worker`, also the delivery worker in the same process (`tidings serve`).
    `fast_publish=False` leaves every publish to FastAPI's route (tests compare the two)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = None
        if worker is not None:
            task = asyncio.create_task(worker.run(stop))
            context.notify = worker.wake
            context.taker = worker.taker
            context.handoff = worker.accept
            if context.db.is_sqlite:  # publishes written in the loop too (group_commit)
                context.publishes.write_in_loop(asyncio.get_running_loop())
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task
            await context.publishes.finish_in_loop()
            await asyncio.to_thread(context.publishes.close)
            context.db.dispose()

    app = TidingsAPI(
        title="Tidings",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.context = context
    problems.install(app)
    for module in (applications, event_types, webhooks, events, deliveries, health):
        app.include_router(module.router)
    dashboard.install(app)
    app.openapi = lambda: _openapi_with_bearer(app)  # type: ignore[method-assign]
    app.add_middleware(JsonBodies)
    app.add_middleware(BodySizeLimit, max_bytes=context.settings.max_body_bytes)
    if fast_publish:  # in front of the whole stack; what it does not answer goes through it
        rest = functools.partial(FastAPI.__call__, app)
        app.fast_publish = FastPublish(rest, context, context.settings.max_body_bytes)
    return app
