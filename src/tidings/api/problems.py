"""Every error answer is application/problem+json (RFC 9457); this is the one place that says so."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Match, Mount

from tidings.errors import TidingsError

log = logging.getLogger(__name__)

PROBLEM_TYPE = "urn:tidings:problem:"
_HTTP_SLUGS = {
    400: "malformed-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
}


# Renders an error as a page for people (the dashboard); API paths always get problem+json.
HtmlRenderer = Callable[[Request, int, str, str], Response]
_MACHINE_PATHS = ("/v1/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs")


def _for_people(request: Request) -> bool:
    return not request.url.path.startswith(_MACHINE_PATHS)


# What the OpenAPI document says of every error answer (RFC 9457, with our `errors` list on
# 422). Inlined rather than a named component: FastAPI only registers components for models
# it serves as application/json, and these are application/problem+json.
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "urn:tidings:problem:<slug>"},
        "title": {"type": "string"},
        "status": {"type": "integer", "description": "The HTTP status code, repeated."},
        "detail": {"type": "string", "description": "What was wrong, for people."},
        "errors": {
            "type": "array",
            "description": "On 422: each invalid input and what is wrong with it.",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

_RESPONSE_DESCRIPTIONS = {
    400: "Malformed request: the body is not valid JSON.",
    401: "No credentials, or credentials we do not know.",
    403: "Known credentials whose role may not do this.",
    404: "No such object (also another application's).",
    409: "A conflict with an existing object, or a limit reached.",
    413: "The request body is larger than the configured limit.",
    422: "Invalid input.",
    429: "Too many requests with this credential; see Retry-After.",
    500: "An error on our side; it was logged.",
    503: "The database is busy or unreachable; try again shortly (see Retry-After).",
}
_RESPONSE_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
    503: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
}

# The errors any API call can meet: bad or missing credentials, a body over the size limit,
# invalid input (FastAPI would otherwise document its own 422, which we never send), a rate
# limit, a failure on our side, a busy database.
COMMON_ERRORS = (401, 413, 422, 429, 500, 503)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entries for these error statuses, as problem+json."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "description": _RESPONSE_DESCRIPTIONS[status],
            "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
        }
        if status in _RESPONSE_HEADERS:
            entry["headers"] = _RESPONSE_HEADERS[status]
        documented[status] = entry
    return documented


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


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> str:
    """Every method the path answers to, for `Allow` on a 405. Starlette names only those of
    the first route that matched the path, and FastAPI makes one route per method."""
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        routes = (r for r in request.app.routes if not isinstance(r, Mount))  # static files
        if any(route.matches(scope)[0] is Match.FULL for route in routes):
            allowed.append(method)
    return ", ".join(allowed)


def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    slug = _HTTP_SLUGS.get(error.status_code, f"http-{error.status_code}")
    detail = error.detail if isinstance(error.detail, str) else str(error.detail)
    headers = dict(error.headers or {})
    if error.status_code == 405 and (allowed := _allowed_methods(request)):
        headers["Allow"] = allowed
    html: HtmlRenderer | None = getattr(request.app.state, "render_error", None)
    if html is not None and _for_people(request):
        response = html(request, error.status_code, detail, "There is nothing here.")
        response.headers.update(headers)
        return response
    return problem(error.status_code, detail, detail, slug, headers)


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
