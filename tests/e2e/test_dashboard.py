"""The dashboard in real headless Chromium (Playwright), against a real `tidings serve`.

Controls are found by the labels, button names and test ids DESIGN §7 gives. Screenshots of
the main pages are written to docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from standardwebhooks.webhooks import Webhook

from tests.e2e.helpers import Server, Workspace, bearer
from tests.support.receiver import Receiver

OPERATOR = "e2e-operator-token"
ENCRYPTION_KEY = "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtbG9uZy1rZXk="
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM = os.environ.get("TIDINGS_CHROMIUM", "/usr/bin/chromium")
ADMIN = ("admin@acme.example", "correct horse battery")
MEMBER = ("member@acme.example", "member password 1")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def server(workspace: Workspace) -> Iterator[Server]:
    env = workspace.env(
        TIDINGS_OPERATOR_TOKEN=OPERATOR,
        TIDINGS_ENCRYPTION_KEY=ENCRYPTION_KEY,
        TIDINGS_ALLOW_PRIVATE_TARGETS="1",
    )
    s = Server(workspace, "serve", env)
    s.wait_ready()
    yield s
    s.stop()


@pytest.fixture
def app_id(server: Server) -> str:
    with httpx.Client(base_url=server.base, headers=bearer(OPERATOR)) as c:
        app = c.post("/v1/applications", json={"name": "Acme"}).json()["id"]
        for (email, password), role in ((ADMIN, "admin"), (MEMBER, "member")):
            r = c.post(
                f"/v1/applications/{app}/users",
                json={"email": email, "password": password, "role": role},
            )
            assert r.status_code == 201, r.text
    return str(app)


def new_page(browser: Browser, server: Server, **options: Any) -> Page:
    context = browser.new_context(base_url=server.base, **options)
    return context.new_page()


def sign_in(page: Page, who: tuple[str, str]) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))
    page.get_by_label("Email").fill(who[0])
    page.get_by_label("Password").fill(who[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/webhooks$"))


def shot(page: Page, name: str, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def create_webhook(page: Page, url: str, name: str, events: list[str]) -> str:
    page.get_by_role("link", name="New webhook").first.click()
    page.get_by_label("Callback URL").fill(url)
    page.get_by_label("Name").fill(name)
    for event in events:
        page.get_by_label(event, exact=True).check()
    page.get_by_role("button", name="Create webhook").click()
    secret = page.get_by_test_id("secret").inner_text().strip()
    assert secret.startswith("whsec_")
    return secret


def test_admin_manages_a_webhook_end_to_end(
    browser: Browser, server: Server, app_id: str, receiver: Receiver
) -> None:
    page = new_page(browser, server, viewport={"width": 1280, "height": 900})
    page.goto("/login")
    shot(page, "login")
    sign_in(page, ADMIN)
    expect(page.get_by_text("No webhooks yet")).to_be_visible()
    shot(page, "webhooks-empty")

    page.get_by_role("link", name="New webhook").first.click()
    expect(page.get_by_role("button", name="Create webhook")).to_be_visible()
    shot(page, "webhook-new")
    page.get_by_role("link", name="Cancel").click()

    secret = create_webhook(
        page, receiver.url("/ok"), "Orders service", ["item.created", "item.refreshed"]
    )
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    shot(page, "webhook-created")

    page.get_by_role("link", name="Go to the webhook").click()
    page.get_by_role("button", name="Send a test").click()
    expect(page.get_by_text("Test event queued")).to_be_visible()
    (request,) = receiver.wait_for(1)
    envelope = Webhook(secret).verify(request.body, request.headers)
    assert envelope["type"] == "TEST_EVENT"
    assert envelope["content"]["item_id"] == 1234567890

    # Some traffic for the chart and the list: a few events through the API.
    with httpx.Client(base_url=server.base, headers=bearer(OPERATOR)) as c:
        for n in range(6):
            c.post(
                f"/v1/applications/{app_id}/events",
                json={"type": "item.created", "content": {"item_id": n}},
            )
    receiver.wait_for(7)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        page.reload()
        if page.get_by_test_id("delivery-row").filter(has_text="succeeded").count() >= 7:
            break
        time.sleep(0.2)
    rows = page.get_by_test_id("delivery-row")
    expect(rows).to_have_count(7)
    expect(rows.first).to_contain_text("succeeded")
    expect(rows.last).to_contain_text("TEST_EVENT")  # newest first: the test was sent first
    expect(page.locator("svg.chart")).to_be_visible()
    shot(page, "webhook")

    page.get_by_role("link", name="Failed").click()
    expect(page.get_by_text("No failed deliveries yet")).to_be_visible()
    page.get_by_role("link", name="All").click()

    rows.last.get_by_role("link").first.click()
    expect(page.get_by_test_id("attempt")).to_have_count(1)
    expect(page.get_by_test_id("attempt")).to_contain_text("200")
    page.get_by_text("Request headers").click()
    expect(page.get_by_text("webhook-signature")).to_be_visible()
    shot(page, "delivery")
    page.get_by_role("button", name="Retry").click()
    expect(page.get_by_text("queued for another attempt")).to_be_visible()
    receiver.wait_for(8)
    assert receiver.requests[-1].headers["webhook-id"] == request.headers["webhook-id"]
    page.go_back()

    page.goto("/webhooks")
    expect(page.get_by_role("cell", name="Orders service")).to_be_visible()
    expect(page.get_by_text("100.0%")).to_be_visible()
    shot(page, "webhooks")
    page.get_by_role("link", name="Orders service").click()
    hook_url = page.url

    page.get_by_role("button", name="Rotate secret").click()
    new_secret = page.get_by_test_id("secret").inner_text().strip()
    assert new_secret.startswith("whsec_") and new_secret != secret
    expect(page.get_by_text("valid for 24 hours")).to_be_visible()
    shot(page, "secret-rotated")
    page.goto(hook_url)

    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("button", name="Enable")).to_be_visible()
    expect(page.get_by_text("disabled by an admin")).to_be_visible()
    page.get_by_role("button", name="Enable").click()
    expect(page.get_by_role("button", name="Disable")).to_be_visible()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"/webhooks\?notice=deleted$"))
    expect(page.get_by_text("No webhooks yet")).to_be_visible()


def test_form_errors_are_shown_beside_the_fields_and_keep_what_was_typed(
    browser: Browser, server: Server, app_id: str
) -> None:
    page = new_page(browser, server)
    sign_in(page, ADMIN)
    page.get_by_role("link", name="New webhook").first.click()
    page.get_by_label("Callback URL").fill("ftp://files.example.com/in")
    page.get_by_label("Name").fill("Kept name")
    page.get_by_role("button", name="Create webhook").click()
    expect(page.get_by_text("must start with http:// or https://")).to_be_visible()
    expect(page.get_by_text("Pick at least one event.")).to_be_visible()
    expect(page.get_by_label("Name")).to_have_value("Kept name")
    expect(page.get_by_label("Callback URL")).to_have_value("ftp://files.example.com/in")
    shot(page, "webhook-new-errors")


def test_the_eleventh_webhook_is_refused_with_the_reason(
    browser: Browser, server: Server, app_id: str
) -> None:
    with httpx.Client(base_url=server.base, headers=bearer(OPERATOR)) as c:
        for n in range(10):
            c.post(
                f"/v1/applications/{app_id}/webhooks",
                json={"url": f"https://h{n}.example.com/in", "events": ["*"]},
            )
    page = new_page(browser, server)
    sign_in(page, ADMIN)
    expect(page.get_by_text("10 of 10 webhooks")).to_be_visible()
    expect(page.get_by_role("link", name="New webhook")).to_have_count(0)
    page.goto("/webhooks/new")
    page.get_by_label("Callback URL").fill("https://eleven.example.com/in")
    page.get_by_label("item.created", exact=True).check()
    page.get_by_role("button", name="Create webhook").click()
    expect(page.get_by_role("alert")).to_contain_text("the most allowed is 10")


def test_members_see_everything_read_only(browser: Browser, server: Server, app_id: str) -> None:
    with httpx.Client(base_url=server.base, headers=bearer(OPERATOR)) as c:
        hook = c.post(
            f"/v1/applications/{app_id}/webhooks",
            json={"url": "https://hooks.acme.example/in", "name": "Billing", "events": ["*"]},
        ).json()
    page = new_page(browser, server, viewport={"width": 1280, "height": 800})
    sign_in(page, MEMBER)
    expect(page.get_by_role("link", name="Billing")).to_be_visible()
    expect(page.get_by_role("link", name="New webhook")).to_have_count(0)
    page.get_by_role("link", name="Billing").click()
    for name in ("Send a test", "Rotate secret", "Disable", "Delete", "Save changes"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    shot(page, "webhook-member")
    # A member's POST is refused even with a valid CSRF token.
    token = page.locator("form[action='/logout'] input[name=csrf_token]").input_value()
    for action in ("test", "rotate", "disable", "delete"):
        response = page.request.post(f"/webhooks/{hook['id']}/{action}", form={"csrf_token": token})
        assert response.status == 403, action
        assert "admin" in response.text()
    assert page.request.get("/webhooks/new").status == 403


def test_wrong_password_is_refused_then_throttled(
    browser: Browser, server: Server, app_id: str
) -> None:
    page = new_page(browser, server)
    page.goto("/login")
    page.get_by_label("Email").fill(ADMIN[0])
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Wrong email or password.")).to_be_visible()
    shot(page, "login-wrong-password")
    page.get_by_label("Password").fill("x")
    page.get_by_label("Email").fill("nobody@acme.example")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Wrong email or password.")).to_be_visible()  # the same words
    for _ in range(4):
        page.get_by_label("Email").fill(ADMIN[0])
        page.get_by_label("Password").fill("still wrong")
        page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("too many failed sign-ins")).to_be_visible()
    # Even the right password waits now.
    page.goto("/login")
    page.get_by_label("Email").fill(ADMIN[0])
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("too many failed sign-ins")).to_be_visible()


def test_a_phone_sized_screen(browser: Browser, server: Server, app_id: str) -> None:
    with httpx.Client(base_url=server.base, headers=bearer(OPERATOR)) as c:
        c.post(
            f"/v1/applications/{app_id}/webhooks",
            json={"url": "https://hooks.acme.example/in", "name": "Billing", "events": ["*"]},
        )
    page = new_page(browser, server, viewport={"width": 390, "height": 844})
    sign_in(page, ADMIN)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways ({width}px)"
    shot(page, "webhooks-phone")


def test_signed_out_pages_lead_to_login_and_back(
    browser: Browser, server: Server, app_id: str
) -> None:
    page = new_page(browser, server)
    page.goto("/webhooks/new")
    expect(page).to_have_url(re.compile(r"/login\?next=/webhooks/new"))
    page.get_by_label("Email").fill(ADMIN[0])
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/webhooks/new$"))
    # Sign out ends the session.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login"))
    page.goto("/webhooks")
    expect(page).to_have_url(re.compile(r"/login"))
