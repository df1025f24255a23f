"""Webhooks: validation, the limit of 10 (also under racing creates), secrets, updates."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from tests.integration.conftest import Api
from tidings.domain.signing import secret_key
from tidings.store import webhooks as store
from tidings.store.tables import webhooks


def test_create_returns_the_whole_webhook_with_its_secret(api: Api) -> None:
    body = {
        "url": "https://hooks.example.com/in",
        "name": "Orders",
        "events": ["item.created", "item.refreshed"],
        "rate_limit": 5,
        "headers": {"X-Team": "payments"},
        "ordering": "fifo",
    }
    response = api.call("POST", api.webhooks(), api.admin, json=body)
    assert response.status_code == 201, response.text
    wh = response.json()
    assert wh["id"].startswith("wh_")
    assert {k: wh[k] for k in body} == {**body, "rate_limit": 5.0}
    assert wh["enabled"] is True and wh["disabled_reason"] is None
    assert len(secret_key(wh["secret"])) == 32
    assert wh["created_at"].endswith("Z") and wh["updated_at"] == wh["created_at"]


def test_secret_is_masked_after_creation(api: Api) -> None:
    wh = api.create_webhook()
    shown = api.call("GET", f"{api.webhooks()}/{wh['id']}", api.member).json()["secret"]
    assert shown != wh["secret"]
    assert shown.startswith("whsec_") and shown.endswith(wh["secret"][-4:])
    listed = api.call("GET", api.webhooks(), api.admin).json()["data"][0]["secret"]
    assert listed == shown


def test_secret_is_encrypted_at_rest(api: Api) -> None:
    wh = api.create_webhook()
    with api.context.db.read() as conn:
        stored = conn.execute(select(webhooks.c.secret)).scalar_one()
    assert wh["secret"] not in stored
    assert wh["secret"][6:] not in stored


def test_defaults(api: Api) -> None:
    wh = api.create_webhook()
    assert wh["name"] is None
    assert wh["enabled"] is True
    assert wh["rate_limit"] is None
    assert wh["headers"] == {}
    assert wh["ordering"] == "unordered"


def test_wildcard_subscription(api: Api) -> None:
    assert api.create_webhook(events=["*"])["events"] == ["*"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        pytest.param({"events": ["item.created"]}, "url", id="missing-url"),
        pytest.param({"url": "https://h.example.com"}, "events", id="missing-events"),
        pytest.param(
            {"url": "https://h.example.com", "events": []}, "at least one", id="empty-events"
        ),
        pytest.param(
            {"url": "https://h.example.com", "events": ["nope.nope"]},
            "unknown event type",
            id="unknown-event-type",
        ),
        pytest.param(
            {"url": "https://h.example.com", "events": ["TEST_EVENT"]},
            "TEST_EVENT",
            id="test-event-subscription",
        ),
        pytest.param(
            {"url": "https://h.example.com", "events": ["*", "item.created"]},
            "alone",
            id="wildcard-with-others",
        ),
        pytest.param(
            {"url": "https://h.example.com", "events": ["item.created", "item.created"]},
            "more than once",
            id="duplicate-event",
        ),
        pytest.param({"url": "ftp://h.example.com", "events": ["*"]}, "http", id="ftp-scheme"),
        pytest.param({"url": "not a url", "events": ["*"]}, "url", id="not-a-url"),
        pytest.param(
            {"url": "https://user:pw@h.example.com", "events": ["*"]},
            "credentials",
            id="credentials-in-url",
        ),
        pytest.param(
            {"url": "https://h.example.com/" + "a" * 2100, "events": ["*"]},
            "url",
            id="url-too-long",
        ),
        pytest.param(
            {"url": "http://127.0.0.1:9000/hook", "events": ["*"]}, "loopback", id="loopback-target"
        ),
        pytest.param(
            {"url": "http://localhost/hook", "events": ["*"]}, "local", id="localhost-target"
        ),
        pytest.param(
            {"url": "http://10.0.0.8/hook", "events": ["*"]}, "private", id="private-target"
        ),
        pytest.param(
            {"url": "http://169.254.169.254/latest", "events": ["*"]},
            "metadata",
            id="metadata-target",
        ),
        pytest.param(
            {"url": "http://2130706433/", "events": ["*"]}, "loopback", id="decimal-loopback-target"
        ),
        pytest.param(
            {"url": "https://h.example.com", "events": ["*"], "name": "n" * 201},
            "name",
            id="name-too-long",
        ),
        pytest.param(
            {"url": "https://h.example.com", "events": ["*"], "rate_limit": 0},
            "rate_limit",
            id="zero-rate-limit",
        ),
        pytest.param(
            {"url": "https://h.example.com", "events": ["*"], "ordering": "lifo"},
            "ordering",
            id="unknown-ordering",
        ),
        pytest.param(
            {
                "url": "https://h.example.com",
                "events": ["*"],
                "headers": {"webhook-signature": "x"},
            },
            "cannot be overridden",
            id="header-overrides-signature",
        ),
        pytest.param(
            {
                "url": "https://h.example.com",
                "events": ["*"],
                "headers": {"Tidings-Signature": "x"},
            },
            "cannot be overridden",
            id="header-overrides-hex-signature",
        ),
        pytest.param(
            {
                "url": "https://h.example.com",
                "events": ["*"],
                "headers": {"Content-Type": "text/plain"},
            },
            "cannot be overridden",
            id="header-overrides-content-type",
        ),
        pytest.param(
            {"url": "https://h.example.com", "events": ["*"], "headers": {"Bad Name": "x"}},
            "header name",
            id="header-name-with-space",
        ),
        pytest.param(
            {"url": "https://h.example.com", "events": ["*"], "headers": {"X-A": "a\r\nb"}},
            "line break",
            id="header-value-crlf",
        ),
        pytest.param(
            {"url": "https://h.example.com", "events": ["*"], "colour": "red"},
            "colour",
            id="unknown-field",
        ),
        pytest.param({"url": 12, "events": ["*"]}, "url", id="url-not-a-string"),
        pytest.param(
            {"url": "https://h.example.com", "events": "item.created"},
            "events",
            id="events-not-a-list",
        ),
    ],
)
def test_invalid_webhook_is_refused_and_creates_nothing(
    api: Api, body: dict, fragment: str
) -> None:
    response = api.call("POST", api.webhooks(), api.admin, json=body)
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert fragment.lower() in response.json()["detail"].lower()
    assert api.call("GET", api.webhooks(), api.admin).json()["data"] == []


def test_private_targets_allowed_when_configured(api: Api) -> None:
    api.context.settings = api.context.settings.model_copy(update={"allow_private_targets": True})
    assert (
        api.create_webhook(url="http://127.0.0.1:9000/hook")["url"] == "http://127.0.0.1:9000/hook"
    )


def test_require_https(api: Api) -> None:
    api.context.settings = api.context.settings.model_copy(update={"require_https": True})
    response = api.call(
        "POST", api.webhooks(), api.admin, json={"url": "http://h.example.com", "events": ["*"]}
    )
    assert response.status_code == 422
    assert "https" in response.json()["detail"]


def test_the_eleventh_webhook_is_refused_with_409(api: Api) -> None:
    for n in range(10):
        api.create_webhook(name=f"hook {n}")
    response = api.call(
        "POST", api.webhooks(), api.admin, json={"url": "https://h.example.com", "events": ["*"]}
    )
    assert response.status_code == 409
    assert "10" in response.json()["detail"]
    assert len(api.call("GET", api.webhooks(), api.admin).json()["data"]) == 10
    # The limit is per application.
    other = api.call(
        "POST",
        api.webhooks(api.other_app_id),
        api.other_admin,
        json={"url": "https://h.example.com", "events": ["*"]},
    )
    assert other.status_code == 201


def test_racing_creates_never_make_eleven(api: Api) -> None:
    for n in range(8):
        api.create_webhook(name=f"hook {n}")
    barrier = threading.Barrier(6)
    results: list[int | str] = []

    def create() -> None:
        barrier.wait()
        try:
            with api.context.db.write() as conn:
                store.create_webhook(
                    conn,
                    api.app_id,
                    {"url": "https://h.example.com", "events": ["*"]},
                    "whsec_" + "A" * 44,
                    api.context.box,
                    limit=10,
                    now=api.context.clock.now(),
                )
            results.append(201)
        except Exception as exc:
            results.append(type(exc).__name__)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count(201) == 2
    assert sorted(r for r in results if r != 201) == ["LimitReached"] * 4
    with api.context.db.read() as conn:
        count = conn.execute(select(func.count()).select_from(webhooks)).scalar_one()
    assert count == 10


def test_racing_creates_over_http_never_make_eleven(api: Api) -> None:
    for n in range(9):
        api.create_webhook(name=f"hook {n}")
    barrier = threading.Barrier(4)
    codes: list[int] = []
    answers: list[str] = []

    def create() -> None:
        barrier.wait()
        r = api.call(
            "POST",
            api.webhooks(),
            api.admin,
            json={"url": "https://h.example.com", "events": ["*"]},
        )
        codes.append(r.status_code)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(codes) == [201, 409, 409, 409], answers


def test_patch_changes_only_given_fields(api: Api, clock) -> None:
    wh = api.create_webhook(name="Before", events=["item.created"])
    clock.advance(5)
    url = f"{api.webhooks()}/{wh['id']}"
    response = api.call(
        "PATCH", url, api.admin, json={"name": "After", "events": ["*"], "headers": {"X-A": "1"}}
    )
    assert response.status_code == 200, response.text
    got = response.json()
    assert (got["name"], got["events"], got["headers"], got["url"]) == (
        "After",
        ["*"],
        {"X-A": "1"},
        wh["url"],
    )
    assert got["updated_at"] > wh["updated_at"]
    assert api.call("GET", url, api.admin).json()["name"] == "After"
    # name may be cleared with null
    assert api.call("PATCH", url, api.admin, json={"name": None}).json()["name"] is None


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"events": []}, id="empty-events"),
        pytest.param({"events": ["TEST_EVENT"]}, id="test-event"),
        pytest.param({"url": None}, id="null-url"),
        pytest.param({"url": "gopher://x.example.com"}, id="gopher-url"),
        pytest.param({"enabled": None}, id="null-enabled"),
        pytest.param({"headers": {"User-Agent": "me"}}, id="user-agent-header"),
        pytest.param({"ordering": None}, id="null-ordering"),
        pytest.param({"secret": "whsec_x"}, id="secret-not-settable"),
    ],
)
def test_invalid_patch_changes_nothing(api: Api, body: dict) -> None:
    wh = api.create_webhook()
    url = f"{api.webhooks()}/{wh['id']}"
    response = api.call("PATCH", url, api.admin, json=body)
    assert response.status_code == 422, response.text
    after = api.call("GET", url, api.admin).json()
    assert after == {**wh, "secret": after["secret"]}


def test_disable_and_enable(api: Api) -> None:
    wh = api.create_webhook()
    url = f"{api.webhooks()}/{wh['id']}"
    off = api.call("PATCH", url, api.admin, json={"enabled": False}).json()
    assert off["enabled"] is False and off["disabled_reason"]
    assert api.publish("item.created").json()["deliveries"] == 0
    on = api.call("PATCH", url, api.admin, json={"enabled": True}).json()
    assert on["enabled"] is True and on["disabled_reason"] is None
    assert api.publish("item.created").json()["deliveries"] == 1


def test_disabling_fails_pending_deliveries(api: Api) -> None:
    wh = api.create_webhook()
    api.publish("item.created")
    api.call("PATCH", f"{api.webhooks()}/{wh['id']}", api.admin, json={"enabled": False})
    listed = api.call("GET", f"/v1/applications/{api.app_id}/deliveries", api.admin).json()["data"]
    assert [(d["status"], d["last_error"]) for d in listed] == [
        ("failed", "the webhook was disabled")
    ]


def test_delete_removes_webhook_and_fails_its_pending_deliveries(api: Api) -> None:
    wh = api.create_webhook()
    api.publish("item.created")
    url = f"{api.webhooks()}/{wh['id']}"
    assert api.call("DELETE", url, api.admin).status_code == 204
    assert api.call("GET", url, api.admin).status_code == 404
    assert api.call("DELETE", url, api.admin).status_code == 404
    listed = api.call("GET", f"/v1/applications/{api.app_id}/deliveries", api.admin).json()["data"]
    assert [(d["status"], d["last_error"]) for d in listed] == [
        ("failed", "the webhook was deleted")
    ]
    # The slot is free again.
    for _ in range(10):
        api.create_webhook()


def test_rotation_keeps_previous_secret_live_for_24_hours(api: Api, clock) -> None:
    wh = api.create_webhook()
    response = api.call("POST", f"{api.webhooks()}/{wh['id']}/rotate-secret", api.admin)
    assert response.status_code == 200
    new = response.json()["secret"]
    assert new != wh["secret"] and len(secret_key(new)) == 32
    with api.context.db.read() as conn:
        row = store.get_webhook(conn, api.app_id, wh["id"])
    box = api.context.box
    assert store.live_secrets(row, box, clock.now()) == [new, wh["secret"]]
    assert store.live_secrets(row, box, clock.now() + 24 * 3600 - 1) == [new, wh["secret"]]
    assert store.live_secrets(row, box, clock.now() + 24 * 3600) == [new]


def test_rotating_twice_keeps_at_most_two_live_secrets(api: Api, clock) -> None:
    wh = api.create_webhook()
    url = f"{api.webhooks()}/{wh['id']}/rotate-secret"
    second = api.call("POST", url, api.admin).json()["secret"]
    clock.advance(60)
    third = api.call("POST", url, api.admin).json()["secret"]
    with api.context.db.read() as conn:
        row = store.get_webhook(conn, api.app_id, wh["id"])
    assert store.live_secrets(row, api.context.box, clock.now()) == [third, second]


def test_unknown_webhook_is_404(api: Api) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        r = api.call(
            method, f"{api.webhooks()}/wh_nope", api.admin, json={} if method == "PATCH" else None
        )
        assert r.status_code == 404, method


def test_send_test_queues_a_test_event_delivery(api: Api) -> None:
    wh = api.create_webhook(events=["item.created"])
    response = api.call("POST", f"{api.webhooks()}/{wh['id']}/test", api.admin)
    assert response.status_code == 202, response.text
    delivery = response.json()
    assert (delivery["event_type"], delivery["status"], delivery["webhook_id"]) == (
        "TEST_EVENT",
        "pending",
        wh["id"],
    )
    detail = api.call(
        "GET", f"/v1/applications/{api.app_id}/deliveries/{delivery['id']}", api.admin
    ).json()
    content = detail["payload"]["content"]
    assert set(detail["payload"]) == {"content", "timestamp", "type"}
    assert (content["item_id"], content["status"], detail["payload"]["type"]) == (
        1234567890,
        0,
        "TEST_EVENT",
    )


def test_send_test_to_disabled_webhook_is_409(api: Api) -> None:
    wh = api.create_webhook(enabled=False)
    assert api.call("POST", f"{api.webhooks()}/{wh['id']}/test", api.admin).status_code == 409


def test_list_pagination(api: Api) -> None:
    made = [api.create_webhook(name=f"h{n}")["id"] for n in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.call("GET", api.webhooks(), api.member, params=params).json()
        seen += [w["id"] for w in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"limit": 0}, id="limit-zero"),
        pytest.param({"limit": 1000}, id="limit-too-big"),
        pytest.param({"limit": "ten"}, id="limit-not-a-number"),
        pytest.param({"cursor": "garbage"}, id="cursor-garbage"),
        pytest.param({"cursor": "dlv_01JD0000000000000000000000"}, id="cursor-of-other-kind"),
    ],
)
def test_bad_list_parameters_are_422(api: Api, params: dict) -> None:
    response = api.call("GET", api.webhooks(), api.admin, params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
