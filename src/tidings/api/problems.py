"""Every error answer is application/problem+json (RFC 9457); this is the one place that says so."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from tidings.errors import TidingsError

log = logging.getLogger(__name__)

PROBLEM_TYPE = "urn:tidings:problem:"
_HTTP_SLUGS = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}


# Renders an error as a page for people (the dashboard); API paths always get problem+json.
HtmlRenderer = Callable[[Request, int, str, str], Response]
_MACHINE_PATHS = ("/v1/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs")


def _for_people(request: Request) -> bool:
    return not request.url.path.startswith(_MACHINE_PATHS)


def problem(
    status: int,
    title: str,
    detail: str,
    slug: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": PROBLEM_TYPE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status, headers=headers, media_type="application/problem+json")


def _tidings_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, TidingsError)
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    html: HtmlRenderer | None = getattr(request.app.state, "render_error", None)
    if html is not None and _for_people(request):
        response = html(request, error.status, error.title, error.detail)
        response.headers.update(headers or {})
        return response
    if error.status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return problem(error.status, error.title, error.detail, error.slug, headers)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = error.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        reason = first.get("ctx", {}).get("error", "")
        return problem(
            400, "Malformed request", f"the body is not valid JSON ({reason})", "malformed-request"
        )
    items = [
        {"field": _location(tuple(e.get("loc", ()))), "message": str(e.get("msg", ""))}
        for e in errors
    ]
    detail = "; ".join(f"{i['field']}: {i['message']}" for i in items)
    return problem(422, "Invalid input", detail, "invalid-input", errors=items)


def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    slug = _HTTP_SLUGS.get(error.status_code, f"http-{error.status_code}")
    detail = error.detail if isinstance(error.detail, str) else str(error.detail)
    html: HtmlRenderer | None = getattr(request.app.state, "render_error", None)
    if html is not None and _for_people(request):
        return html(request, error.status_code, detail, "There is nothing here.")
    return problem(error.status_code, detail, detail, slug, dict(error.headers or {}))


def _unexpected(_request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=error)
    return problem(
        500, "Internal error", "something went wrong on our side; it was logged", "internal-error"
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(TidingsError, _tidings_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
