"""The dashboard: server-rendered pages where application admins manage their webhooks."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.dashboard import auth, views

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}
_API_PATHS = ("/v1/", "/docs", "/openapi.json")


class SecurityHeaders:
    """Security headers on every dashboard response (the API's /docs page needs a CDN)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_API_PATHS):
            await self.app(scope, receive, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = [
                    *message.get("headers", []),
                    *[h for h in extra if h[0] not in names],
                ]
            await send(message)

        await self.app(scope, receive, add_headers)


def install(app: FastAPI) -> None:
    """Serve the dashboard from `app` at `/`."""
    app.include_router(views.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.state.render_error = views.render_error

    def login_required(_request: Request, error: Exception) -> Response:
        assert isinstance(error, auth.LoginRequired)
        return views.login_redirect(error.next_path)

    app.add_exception_handler(auth.LoginRequired, login_required)
    app.add_middleware(SecurityHeaders)
