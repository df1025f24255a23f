"""Dashboard pages. Each handler reads or changes through the same store and rules as the API."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from tidings import __version__
from tidings.api import webhook_rules as rules
from tidings.api.deps import Context, Ctx
from tidings.api.schemas import WebhookIn, WebhookPatch
from tidings.dashboard import auth, charts
from tidings.dashboard.auth import SignedIn, User
from tidings.domain.catalog import WILDCARD, subscription_problem
from tidings.domain.signing import generate_secret
from tidings.errors import InvalidInput, LimitReached, NotFound
from tidings.store import deliveries as delivery_store
from tidings.store import events, queue, stats, webhooks

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)

NOTICES = {
    "test-sent": "Test event queued: it is on its way.",
    "saved": "Changes saved.",
    "disabled": "Webhook disabled: no deliveries are sent to it until it is enabled again.",
    "enabled": "Webhook enabled.",
    "deleted": "Webhook deleted.",
    "retried": "Delivery queued for another attempt.",
}
FormText = Annotated[str, Form()]
CsrfToken = Annotated[str, Form()]


def when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["when"] = when
templates.env.globals["version"] = __version__
templates.env.globals["WILDCARD"] = WILDCARD


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _see(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


# -- signing in -------------------------------------------------------------------------


@router.get("/")
def home(request: Request, ctx: Ctx) -> Response:
    try:
        auth.current_user(request, ctx)
    except auth.LoginRequired:
        return _see("/login")
    return _see("/webhooks")


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/") and not value.startswith("//"):
        return value
    return "/webhooks"


def _login_page(
    request: Request,
    *,
    error: str | None = None,
    email: str = "",
    status_code: int = 200,
    next_path: str = "/webhooks",
) -> HTMLResponse:
    token = request.cookies.get(auth.LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = page(
        request, "login.html", status_code, error=error, email=email, csrf=token, next=next_path
    )
    response.set_cookie(
        auth.LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/login",
    )
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _login_page(request, next_path=_safe_next(next))


@router.post("/login")
async def login(
    request: Request,
    ctx: Ctx,
    email: FormText = "",
    password: FormText = "",
    csrf_token: CsrfToken = "",
    next: FormText = "/webhooks",
) -> Response:
    cookie = request.cookies.get(auth.LOGIN_CSRF_COOKIE, "")
    if not cookie or not secrets.compare_digest(cookie, csrf_token):
        return _login_page(
            request,
            error="The sign-in form had expired; please try again.",
            email=email,
            status_code=400,
        )
    keys = auth.throttle_keys(email, auth.client_address(request))
    await run_in_threadpool(auth.check_not_blocked, ctx, keys)
    token, failures = await run_in_threadpool(auth.sign_in, ctx, email, password, keys)
    if not token:
        await asyncio.sleep(auth.failure_delay_s(failures))
        await run_in_threadpool(auth.check_not_blocked, ctx, keys)  # this one may have tipped it
        return _login_page(
            request,
            error="Wrong email or password.",
            email=email,
            status_code=401,
            next_path=_safe_next(next),
        )
    response = _see(_safe_next(next))
    response.set_cookie(
        auth.SESSION_COOKIE,
        token,
        max_age=auth.SESSION_TTL_S,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.delete_cookie(auth.LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, user: SignedIn, ctx: Ctx, csrf_token: CsrfToken = "") -> Response:
    auth.check_csrf(user, csrf_token)
    auth.sign_out(ctx, request.cookies.get(auth.SESSION_COOKIE))
    response = _see("/login")
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return response


# -- webhooks ---------------------------------------------------------------------------


@router.get("/webhooks")
def webhook_list(
    request: Request, user: SignedIn, ctx: Ctx, notice: str | None = None
) -> HTMLResponse:
    now = ctx.clock.now()
    with ctx.db.read() as conn:
        rows = webhooks.list_webhooks(conn, user.application_id, 100, None).rows
        rates = stats.success_rates(conn, user.application_id, now)
    return page(
        request,
        "webhooks.html",
        user=user,
        webhooks=rows,
        rates=rates,
        limit=ctx.settings.webhooks_per_application,
        notice=NOTICES.get(notice or ""),
    )


def _catalog(ctx: Context) -> dict[str, str]:
    with ctx.db.read() as conn:
        return events.known_event_types(conn)


def _normalise(events: list[str]) -> list[str]:
    """'All event types' wins over single boxes ticked beside it."""
    return [WILDCARD] if WILDCARD in events else events


@dataclass
class WebhookForm:
    """What the webhook form sent, as typed (to show again), and the fields it means."""

    url: str = ""
    name: str = ""
    events: list[str] = field(default_factory=list)
    rate_limit: str = ""
    timeout_s: str = ""
    ordering: str = "unordered"
    headers_text: str = ""

    @classmethod
    def of(cls, hook: dict[str, Any]) -> WebhookForm:
        return cls(
            url=hook["url"],
            name=hook["name"] or "",
            events=hook["events"],
            rate_limit="" if hook["rate_limit"] is None else f"{hook['rate_limit']:g}",
            timeout_s="" if hook.get("timeout_s") is None else f"{hook['timeout_s']:g}",
            ordering=hook["ordering"],
            headers_text="\n".join(f"{k}: {v}" for k, v in hook["headers"].items()),
        )

    def fields(self, errors: dict[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = {
            "url": self.url,
            "name": self.name or None,
            "events": self.events,
            "ordering": self.ordering,
            "rate_limit": self.rate_limit.strip() or None,
            "headers": {},
        }
        if "timeout_s" in WebhookIn.model_fields:
            values["timeout_s"] = self.timeout_s.strip() or None
        for line in self.headers_text.splitlines():
            if not line.strip():
                continue
            key, sep, value = line.partition(":")
            if not sep or not key.strip():
                errors["headers"] = f"write each header as 'Name: value' (not {line.strip()!r})"
                break
            values["headers"][key.strip()] = value.strip()
        return values


def _form_problems(
    ctx: Context, catalog: dict[str, str], form: WebhookForm
) -> tuple[WebhookIn | None, dict[str, str]]:
    """The webhook the form describes, or every problem with it at once, by field."""
    errors: dict[str, str] = {}
    values = form.fields(errors)
    body: WebhookIn | None = None
    try:
        body = WebhookIn(**values)
    except ValidationError as exc:
        for e in exc.errors():
            where = str(e["loc"][0]) if e["loc"] else "form"
            errors.setdefault(where, str(e["msg"]).removeprefix("Value error, "))
    if body is not None and not errors:
        try:
            rules.checked_fields(body, ctx)
        except InvalidInput as exc:
            errors[exc.field or "form"] = exc.detail.split(": ", 1)[-1]
    elif "url" not in errors:
        try:
            rules.check_callback_url(form.url.strip(), ctx)
        except InvalidInput as exc:
            errors["url"] = exc.detail.split(": ", 1)[-1]
    events_problem = (
        "Pick at least one event."
        if not form.events
        else subscription_problem(form.events, catalog)
    )
    if events_problem is not None:
        errors["events"] = events_problem
    return (None if errors else body), errors


@router.get("/webhooks/new")
def new_webhook_form(request: Request, user: SignedIn, ctx: Ctx) -> HTMLResponse:
    auth.require_admin(user, "create webhooks")
    return page(
        request,
        "webhook_new.html",
        user=user,
        catalog=_catalog(ctx),
        form=WebhookForm(),
        errors={},
    )


FormFields = Annotated[list[str], Form(alias="events")]


@router.post("/webhooks/new")
def create_webhook(
    request: Request,
    user: SignedIn,
    ctx: Ctx,
    csrf_token: CsrfToken = "",
    url: FormText = "",
    name: FormText = "",
    events_: FormFields = [],  # noqa: B006 - FastAPI form default
    rate_limit: FormText = "",
    timeout_s: FormText = "",
    ordering: FormText = "unordered",
    headers: FormText = "",
) -> HTMLResponse:
    auth.check_csrf(user, csrf_token)
    auth.require_admin(user, "create webhooks")
    form = WebhookForm(url, name, _normalise(events_), rate_limit, timeout_s, ordering, headers)
    catalog = _catalog(ctx)
    body, errors = _form_problems(ctx, catalog, form)
    if body is not None:
        try:
            row, secret = rules.create(ctx, user.application_id, body)
        except (InvalidInput, LimitReached) as exc:
            errors = {getattr(exc, "field", None) or "form": exc.detail.split(": ", 1)[-1]}
    if errors:
        return page(
            request, "webhook_new.html", 422, user=user, catalog=catalog, form=form, errors=errors
        )
    return page(request, "secret.html", 201, user=user, webhook=row, secret=secret, rotated=False)


def _load(ctx: Context, user: User, webhook_id: str) -> dict[str, Any]:
    with ctx.db.read() as conn:
        return webhooks.get_webhook(conn, user.application_id, webhook_id)


def _render_webhook(
    request: Request,
    ctx: Context,
    user: User,
    hook: dict[str, Any],
    *,
    status: str | None = None,
    form: WebhookForm | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The webhook page: its chart, its deliveries (filtered by `status`) and its form."""
    now = ctx.clock.now()
    with ctx.db.read() as conn:
        recent = delivery_store.list_deliveries(
            conn,
            user.application_id,
            webhook_id=hook["id"],
            status=status,
            event_type=None,
            limit=50,
            cursor=None,
        ).rows
        hours = charts.hourly(stats.recent_attempts(conn, hook["id"], now), now)
        catalog = events.known_event_types(conn)
        blocked = queue.fifo_block(conn, hook["id"]) if hook["ordering"] == "fifo" else None
    return page(
        request,
        "webhook.html",
        status_code,
        user=user,
        webhook=hook,
        deliveries=recent,
        status=status,
        statuses=delivery_store.STATUSES,
        chart=charts.svg(hours),
        catalog=catalog,
        errors=errors or {},
        form=form or WebhookForm.of(hook),
        notice=NOTICES.get(notice or ""),
        blocked=blocked,
    )


@router.get("/webhooks/{webhook_id}")
def webhook_page(
    request: Request,
    webhook_id: str,
    user: SignedIn,
    ctx: Ctx,
    status: Annotated[str | None, Query(max_length=20)] = None,
    notice: str | None = None,
) -> HTMLResponse:
    hook = _load(ctx, user, webhook_id)
    return _render_webhook(
        request,
        ctx,
        user,
        hook,
        status=status if status in delivery_store.STATUSES else None,
        notice=notice,
    )


@router.post("/webhooks/{webhook_id}")
def edit_webhook(
    request: Request,
    webhook_id: str,
    user: SignedIn,
    ctx: Ctx,
    csrf_token: CsrfToken = "",
    url: FormText = "",
    name: FormText = "",
    events_: FormFields = [],  # noqa: B006
    rate_limit: FormText = "",
    timeout_s: FormText = "",
    ordering: FormText = "unordered",
    headers: FormText = "",
) -> Response:
    auth.check_csrf(user, csrf_token)
    auth.require_admin(user, "change webhooks")
    form = WebhookForm(url, name, _normalise(events_), rate_limit, timeout_s, ordering, headers)
    hook = _load(ctx, user, webhook_id)
    body, errors = _form_problems(ctx, _catalog(ctx), form)
    if body is not None:
        try:
            changes = WebhookPatch(**body.model_dump(exclude={"enabled"}))
            rules.update(ctx, user.application_id, webhook_id, changes)
        except InvalidInput as exc:
            errors = {exc.field or "form": exc.detail.split(": ", 1)[-1]}
    if not errors:
        return _see(f"/webhooks/{webhook_id}?notice=saved")
    return _render_webhook(request, ctx, user, hook, form=form, errors=errors, status_code=422)


@router.post("/webhooks/{webhook_id}/test")
def send_test(webhook_id: str, user: SignedIn, ctx: Ctx, csrf_token: CsrfToken = "") -> Response:
    auth.check_csrf(user, csrf_token)
    auth.require_admin(user, "send test events")
    rules.send_test(ctx, user.application_id, webhook_id)
    return _see(f"/webhooks/{webhook_id}?notice=test-sent")


@router.post("/webhooks/{webhook_id}/rotate")
def rotate_secret(
    request: Request, webhook_id: str, user: SignedIn, ctx: Ctx, csrf_token: CsrfToken = ""
) -> HTMLResponse:
    auth.check_csrf(user, csrf_token)
    auth.require_admin(user, "rotate secrets")
    secret = generate_secret()
    with ctx.db.write() as conn:
        webhooks.rotate_secret(
            conn, user.application_id, webhook_id, secret, ctx.box, ctx.clock.now()
        )
        hook = webhooks.get_webhook(conn, user.application_id, webhook_id)
    return page(request, "secret.html", user=user, webhook=hook, secret=secret, rotated=True)


def _set_enabled(ctx: Context, user: User, webhook_id: str, enabled: bool) -> Response:
    rules.update(ctx, user.application_id, webhook_id, WebhookPatch(enabled=enabled))
    return _see(f"/webhooks/{webhook_id}?notice={'enabled' if enabled else 'disabled'}")


@router.post("/webhooks/{webhook_id}/disable")
def disable(webhook_id: str, user: SignedIn, ctx: Ctx, csrf_token: CsrfToken = "") -> Response:
    auth.check_csrf(user, csrf_token)
    auth.require_admin(user, "disable webhooks")
    return _set_enabled(ctx, user, webhook_id, False)


@router.post("/webhooks/{webhook_id}/enable")
def enable(webhook_id: str, user: SignedIn, ctx: Ctx, csrf_token: CsrfToken = "") -> Response:
    auth.check_csrf(user, csrf_token)
    auth.require_admin(user, "enable webhooks")
    return _set_enabled(ctx, user, webhook_id, True)


@router.post("/webhooks/{webhook_id}/delete")
def delete(webhook_id: str, user: SignedIn, ctx: Ctx, csrf_token: CsrfToken = "") -> Response:
    auth.check_csrf(user, csrf_token)
    auth.require_admin(user, "delete webhooks")
    with ctx.db.write() as conn:
        webhooks.delete_webhook(conn, user.application_id, webhook_id, ctx.clock.now())
    return _see("/webhooks?notice=deleted")


# -- deliveries -------------------------------------------------------------------------


@router.get("/deliveries/{delivery_id}")
def delivery_page(
    request: Request, delivery_id: str, user: SignedIn, ctx: Ctx, notice: str | None = None
) -> HTMLResponse:
    with ctx.db.read() as conn:
        row = delivery_store.get_delivery(conn, user.application_id, delivery_id)
        event = delivery_store.get_event(conn, row["event_id"])
        tries = delivery_store.list_attempts(conn, delivery_id)
        try:
            hook: dict[str, Any] | None = webhooks.get_webhook(
                conn, user.application_id, row["webhook_id"]
            )
        except NotFound:
            hook = None
    payload = {"content": event["content"], "timestamp": event["timestamp"], "type": event["type"]}
    return page(
        request,
        "delivery.html",
        user=user,
        delivery=row,
        payload=payload,
        attempts=tries,
        webhook=hook,
        notice=NOTICES.get(notice or ""),
    )


@router.post("/deliveries/{delivery_id}/retry")
def retry(delivery_id: str, user: SignedIn, ctx: Ctx, csrf_token: CsrfToken = "") -> Response:
    auth.check_csrf(user, csrf_token)
    auth.require_admin(user, "retry deliveries")
    with ctx.db.write() as conn:
        delivery_store.retry_delivery(conn, user.application_id, delivery_id, ctx.clock.now())
    ctx.notify()
    return _see(f"/deliveries/{delivery_id}?notice=retried")


def login_redirect(next_path: str) -> RedirectResponse:
    return _see(f"/login?next={quote(next_path)}")


def render_error(request: Request, status_code: int, title: str, detail: str) -> Response:
    """Errors on dashboard pages, as pages (installed as `app.state.render_error`)."""
    try:
        user: User | None = auth.current_user(request, request.app.state.context)
    except auth.LoginRequired:
        user = None
    return page(request, "error.html", status_code, user=user, title=title, detail=detail)
