"""The dashboard over HTTP (no browser): sessions, CSRF, roles, headers, on both databases."""

from __future__ import annotations

import re

import pytest

from tests.integration.conftest import Api

ADMIN = ("ann@acme.example", "correct horse battery")
MEMBER = ("max@acme.example", "member password 1")


@pytest.fixture
def users(api: Api) -> None:
    for (email, password), role in ((ADMIN, "admin"), (MEMBER, "member")):
        r = api.call(
            "POST",
            f"/v1/applications/{api.app_id}/users",
            api.operator,
            json={"email": email, "password": password, "role": role},
        )
        assert r.status_code == 201


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def sign_in(api: Api, who: tuple[str, str]) -> str:
    """Sign in with the test client (which keeps cookies); returns the session's CSRF token."""
    form = api.client.get("/login")
    token = csrf_of(form.text)
    r = api.client.post(
        "/login",
        data={"email": who[0], "password": who[1], "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    page = api.client.get("/webhooks")
    assert page.status_code == 200
    return csrf_of(page.text)


def test_signed_out_pages_redirect_to_login(api: Api) -> None:
    for path in ("/", "/webhooks", "/webhooks/new", "/webhooks/wh_x", "/deliveries/dlv_x"):
        r = api.client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login"), path


def test_session_cookie_is_http_only_and_same_site(api: Api, users: None) -> None:
    token = csrf_of(api.client.get("/login").text)
    r = api.client.post(
        "/login",
        data={"email": ADMIN[0], "password": ADMIN[1], "csrf_token": token},
        follow_redirects=False,
    )
    cookie = r.headers["set-cookie"]
    assert "tidings_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie


def test_login_without_its_csrf_token_is_refused(api: Api, users: None) -> None:
    api.client.get("/login")
    r = api.client.post(
        "/login",
        data={"email": ADMIN[0], "password": ADMIN[1], "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert r.status_code == 400
    assert "tidings_session" not in r.headers.get("set-cookie", "")


def test_wrong_password_and_unknown_email_read_the_same(api: Api, users: None) -> None:
    token = csrf_of(api.client.get("/login").text)
    wrong = api.client.post(
        "/login", data={"email": ADMIN[0], "password": "nope", "csrf_token": token}
    )
    unknown = api.client.post(
        "/login", data={"email": "who@acme.example", "password": "nope", "csrf_token": token}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong email or password." in wrong.text and "Wrong email or password." in unknown.text


def test_post_without_csrf_token_is_refused(api: Api, users: None) -> None:
    sign_in(api, ADMIN)
    r = api.client.post(
        "/webhooks/new", data={"url": "https://h.example.com", "events": ["item.created"]}
    )
    assert r.status_code == 403
    assert api.call("GET", api.webhooks(), api.admin).json()["data"] == []


def test_admin_creates_a_webhook_through_the_form(api: Api, users: None) -> None:
    csrf = sign_in(api, ADMIN)
    r = api.client.post(
        "/webhooks/new",
        data={
            "csrf_token": csrf,
            "url": "https://h.example.com/in",
            "name": "Form",
            "events": ["item.created", "user.deleted"],
        },
    )
    assert r.status_code == 201
    secret = re.search(r'data-testid="secret" id="secret">(whsec_[^<]+)<', r.text)
    assert secret
    (hook,) = api.call("GET", api.webhooks(), api.admin).json()["data"]
    assert (hook["name"], hook["events"]) == ("Form", ["item.created", "user.deleted"])
    assert hook["secret"].endswith(secret.group(1)[-4:])


def test_all_event_types_box_subscribes_to_the_wildcard(api: Api, users: None) -> None:
    csrf = sign_in(api, ADMIN)
    r = api.client.post(
        "/webhooks/new",
        data={
            "csrf_token": csrf,
            "url": "https://h.example.com/in",
            "events": ["*", "item.created"],
        },
    )
    assert r.status_code == 201
    assert api.call("GET", api.webhooks(), api.admin).json()["data"][0]["events"] == ["*"]


@pytest.mark.parametrize("action", ["test", "rotate", "disable", "enable", "delete"])
def test_members_posts_are_403_and_change_nothing(api: Api, users: None, action: str) -> None:
    hook = api.create_webhook()
    csrf = sign_in(api, MEMBER)
    r = api.client.post(f"/webhooks/{hook['id']}/{action}", data={"csrf_token": csrf})
    assert r.status_code == 403
    assert "admin" in r.text
    after = api.call("GET", f"{api.webhooks()}/{hook['id']}", api.admin).json()
    assert after == {**hook, "secret": after["secret"]}
    assert (
        api.call("GET", f"/v1/applications/{api.app_id}/deliveries", api.admin).json()["data"] == []
    )


def test_another_applications_webhook_is_404_page(api: Api, users: None) -> None:
    other = api.call(
        "POST",
        api.webhooks(api.other_app_id),
        api.other_admin,
        json={"url": "https://o.example.com", "events": ["*"]},
    ).json()
    sign_in(api, ADMIN)
    r = api.client.get(f"/webhooks/{other['id']}")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")


def test_dashboard_pages_carry_security_headers_and_the_api_does_not_need_them(
    api: Api, users: None
) -> None:
    sign_in(api, ADMIN)
    page = api.client.get("/webhooks")
    csp = page.headers["content-security-policy"]
    assert (
        "script-src 'self'" in csp
        and "frame-ancestors 'none'" in csp
        and "unsafe-inline" not in csp
    )
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    assert "<script>" not in page.text  # no inline script, so the CSP holds
    api_answer = api.call("GET", api.webhooks(), api.admin)
    assert api_answer.headers["content-type"] == "application/json"


def test_sign_out_ends_the_session(api: Api, users: None) -> None:
    csrf = sign_in(api, ADMIN)
    r = api.client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert api.client.get("/webhooks", follow_redirects=False).status_code == 303


def test_chart_and_success_rate_from_recorded_attempts(api: Api, users: None, clock) -> None:
    from sqlalchemy import insert

    from tidings.domain.ids import new_id
    from tidings.store.tables import attempts

    hook = api.create_webhook(name="Charted")
    api.publish("item.created")
    delivery_id = api.call("GET", f"/v1/applications/{api.app_id}/deliveries", api.admin).json()[
        "data"
    ][0]["id"]
    now = clock.now()
    rows = [(200, 10), (200, 30), (500, 50), (None, 1000)]
    with api.context.db.write() as conn:
        conn.execute(
            insert(attempts),
            [
                {
                    "id": new_id("att"),
                    "delivery_id": delivery_id,
                    "at": now - 60 * i,
                    "status_code": code,
                    "duration_ms": ms,
                    "error": None,
                    "response_body": None,
                    "request_headers": {},
                }
                for i, (code, ms) in enumerate(rows)
            ],
        )
    sign_in(api, ADMIN)
    listing = api.client.get("/webhooks").text
    assert "50.0%" in listing and "of 4" in listing
    page = api.client.get(f"/webhooks/{hook['id']}").text
    assert "Last 24 hours: 2 succeeded and 2 failed attempts" in page
    assert '<svg class="chart"' in page
    assert re.search(r"\d\d:00 UTC: [0-4] succeeded, [0-4] failed, median \d+ ms", page)


def test_delivery_settings_through_the_form(api: Api, users: None) -> None:
    csrf = sign_in(api, ADMIN)
    r = api.client.post(
        "/webhooks/new",
        data={
            "csrf_token": csrf,
            "url": "https://h.example.com/in",
            "events": ["item.created"],
            "rate_limit": "2.5",
            "ordering": "fifo",
            "headers": "X-Team: payments\nX-Env: prod",
        },
    )
    assert r.status_code == 201, r.text
    (hook,) = api.call("GET", api.webhooks(), api.admin).json()["data"]
    assert (hook["rate_limit"], hook["ordering"], hook["headers"]) == (
        2.5,
        "fifo",
        {"X-Team": "payments", "X-Env": "prod"},
    )
    page = api.client.get(f"/webhooks/{hook['id']}").text
    assert "FIFO, one at a time" in page and "at most 2.5 a second" in page
    assert "X-Team: payments" in page  # shown again in the edit form


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param("rate_limit", "fast", "number", id="rate-limit-not-a-number"),
        pytest.param("rate_limit", "-1", "greater than", id="negative-rate-limit"),
        pytest.param("headers", "no colon here", "Name: value", id="header-without-colon"),
        pytest.param(
            "headers",
            "Webhook-Signature: x",
            "cannot be overridden",
            id="header-overrides-signature",
        ),
        pytest.param("ordering", "lifo", "unordered", id="unknown-ordering"),
    ],
)
def test_bad_delivery_settings_are_shown_beside_the_field(
    api: Api, users: None, field: str, value: str, message: str
) -> None:
    csrf = sign_in(api, ADMIN)
    data = {
        "csrf_token": csrf,
        "url": "https://h.example.com/in",
        "events": ["item.created"],
        field: value,
    }
    r = api.client.post("/webhooks/new", data=data)
    assert r.status_code == 422
    assert message in r.text
    assert api.call("GET", api.webhooks(), api.admin).json()["data"] == []


def test_fifo_page_says_what_holds_the_queue_up(api: Api, users: None, clock) -> None:
    from sqlalchemy import update

    from tidings.store.tables import deliveries

    hook = api.create_webhook(ordering="fifo")
    for n in range(3):
        api.publish("item.created", {"n": n})
    first = sorted(
        d["id"]
        for d in api.call("GET", f"/v1/applications/{api.app_id}/deliveries", api.admin).json()[
            "data"
        ]
    )[0]
    with api.context.db.write() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == first)
            .values(attempt_count=2, last_status_code=503, next_attempt_at=clock.now() + 60)
        )
    sign_in(api, ADMIN)
    page = api.client.get(f"/webhooks/{hook['id']}").text
    assert "In FIFO order, 2 deliveries wait behind" in page
    assert "failed 2 times (503)" in page
