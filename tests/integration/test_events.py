"""Publishing: validation, fan-out to subscribed enabled webhooks, and Idempotency-Key."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from tests.integration.conftest import Api
from tidings.store.tables import deliveries, events


def _count(api: Api, table) -> int:
    with api.context.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_fan_out_creates_one_delivery_per_subscribed_enabled_webhook(api: Api) -> None:
    exact = api.create_webhook(events=["item.created"])
    wildcard = api.create_webhook(events=["*"])
    api.create_webhook(events=["item.deleted"])
    api.create_webhook(events=["item.created"], enabled=False)
    api.call(
        "POST",
        api.webhooks(api.other_app_id),
        api.other_admin,
        json={"url": "https://o.example.com", "events": ["*"]},
    )

    response = api.publish("item.created", {"item_id": 7})
    assert response.status_code == 202, response.text
    body = response.json()
    assert (
        body["id"].startswith("evt_") and body["type"] == "item.created" and body["deliveries"] == 2
    )
    listed = api.call("GET", f"/v1/applications/{api.app_id}/deliveries", api.admin).json()["data"]
    assert sorted(d["webhook_id"] for d in listed) == sorted([exact["id"], wildcard["id"]])
    assert {(d["status"], d["event_id"], d["attempt_count"]) for d in listed} == {
        ("pending", body["id"], 0)
    }


def test_event_with_no_subscribers_is_accepted_with_zero_deliveries(api: Api) -> None:
    response = api.publish("user.deleted", {"user_uuid": "u"})
    assert response.status_code == 202
    assert response.json()["deliveries"] == 0
    assert _count(api, events) == 1


def test_wildcard_does_not_receive_test_events_from_publish(api: Api) -> None:
    api.create_webhook(events=["*"])
    response = api.publish("TEST_EVENT", {})
    assert response.status_code == 422
    assert _count(api, deliveries) == 0


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        pytest.param(
            {"type": "nope.nope", "content": {}}, 422, "unknown event type", id="unknown-type"
        ),
        pytest.param({"type": "TEST_EVENT", "content": {}}, 422, "TEST_EVENT", id="test-event"),
        pytest.param(
            {"type": "item.created", "content": [1, 2]}, 422, "content", id="content-is-a-list"
        ),
        pytest.param(
            {"type": "item.created", "content": "text"}, 422, "content", id="content-is-a-string"
        ),
        pytest.param({"type": "item.created"}, 422, "content", id="missing-content"),
        pytest.param({"content": {}}, 422, "type", id="missing-type"),
        pytest.param({"type": "", "content": {}}, 422, "type", id="empty-type"),
        pytest.param(
            {"type": "item.created", "content": {}, "extra": 1}, 422, "extra", id="unknown-field"
        ),
    ],
)
def test_invalid_event_is_refused_and_creates_nothing(
    api: Api, body: dict, status: int, fragment: str
) -> None:
    api.create_webhook(events=["*"])
    response = api.call("POST", f"/v1/applications/{api.app_id}/events", api.operator, json=body)
    assert response.status_code == status, response.text
    assert fragment.lower() in response.json()["detail"].lower()
    assert _count(api, events) == 0 and _count(api, deliveries) == 0


def test_publish_to_unknown_application_is_404(api: Api) -> None:
    response = api.call(
        "POST",
        "/v1/applications/app_nope/events",
        api.operator,
        json={"type": "item.created", "content": {}},
    )
    assert response.status_code == 404


def test_malformed_json_is_400_and_creates_nothing(api: Api) -> None:
    response = api.call(
        "POST",
        f"/v1/applications/{api.app_id}/events",
        api.operator,
        content=b'{"type": "item.created", "content": {',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "JSON" in response.json()["detail"]
    assert _count(api, events) == 0


def test_idempotency_key_returns_first_answer_and_creates_nothing(api: Api) -> None:
    api.create_webhook(events=["*"])
    first = api.publish("item.created", {"n": 1}, headers={"Idempotency-Key": "order-42"})
    api.create_webhook(events=["*"])  # a second replay must not fan out to it
    again = api.publish("item.created", {"n": 1}, headers={"Idempotency-Key": "order-42"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() == {**first.json(), "deliveries": 1}
    assert again.headers["idempotent-replayed"] == "true"
    assert _count(api, events) == 1 and _count(api, deliveries) == 1


def test_idempotency_key_is_per_application(api: Api) -> None:
    a = api.publish("item.created", {}, headers={"Idempotency-Key": "k"})
    b = api.call(
        "POST",
        f"/v1/applications/{api.other_app_id}/events",
        api.operator,
        json={"type": "item.created", "content": {}},
        headers={"Idempotency-Key": "k"},
    )
    assert a.json()["id"] != b.json()["id"]


def test_idempotency_key_reused_with_other_body_is_409(api: Api) -> None:
    api.publish("item.created", {"n": 1}, headers={"Idempotency-Key": "k1"})
    response = api.publish("item.created", {"n": 2}, headers={"Idempotency-Key": "k1"})
    assert response.status_code == 409
    assert "Idempotency-Key" in response.json()["detail"]
    assert _count(api, events) == 1


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty-key"),
        pytest.param("   ", id="blank-key"),
        pytest.param("k" * 300, id="key-too-long"),
    ],
)
def test_bad_idempotency_key_is_422(api: Api, key: str) -> None:
    response = api.publish("item.created", {}, headers={"Idempotency-Key": key})
    assert response.status_code == 422
    assert _count(api, events) == 0


def test_racing_publishes_with_one_key_create_one_event(api: Api) -> None:
    api.create_webhook(events=["*"])
    barrier = threading.Barrier(5)
    answers: list[tuple[int, str]] = []

    def publish() -> None:
        barrier.wait()
        r = api.publish("item.created", {"n": 1}, headers={"Idempotency-Key": "race"})
        answers.append((r.status_code, r.json()["id"]))

    threads = [threading.Thread(target=publish) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(answers) == 5
    assert {status for status, _ in answers} == {202}
    assert len({event_id for _, event_id in answers}) == 1
    assert _count(api, events) == 1 and _count(api, deliveries) == 1


def test_event_snapshot_is_kept_for_the_delivery(api: Api) -> None:
    api.create_webhook(events=["item.account.updated"])
    content = {"account_id": 5, "balance": 12.5, "nested": {"list": [1, "two", None]}}
    api.publish("item.account.updated", content)
    listed = api.call("GET", f"/v1/applications/{api.app_id}/deliveries", api.admin).json()["data"]
    detail = api.call(
        "GET", f"/v1/applications/{api.app_id}/deliveries/{listed[0]['id']}", api.admin
    ).json()
    assert detail["payload"] == {
        "content": content,
        "timestamp": int(api.context.clock.now()),
        "type": "item.account.updated",
    }


def test_operator_can_add_event_types(api: Api) -> None:
    r = api.call(
        "POST",
        "/v1/event-types",
        api.operator,
        json={"name": "invoice.paid", "description": "Paid."},
    )
    assert r.status_code == 201
    names = [t["name"] for t in api.call("GET", "/v1/event-types", api.member).json()["data"]]
    assert "invoice.paid" in names
    assert (
        api.call("POST", "/v1/event-types", api.operator, json={"name": "invoice.paid"}).status_code
        == 409
    )
    api.create_webhook(events=["invoice.paid"])
    assert api.publish("invoice.paid", {}).json()["deliveries"] == 1


@pytest.mark.parametrize(
    "name", ["TEST_EVENT", "*", "Has Spaces", "UPPER.case", ".leading", "a..b", "x" * 101]
)
def test_bad_event_type_names_are_refused(api: Api, name: str) -> None:
    r = api.call("POST", "/v1/event-types", api.operator, json={"name": name})
    assert r.status_code == 422


def test_default_catalog_is_listed(api: Api) -> None:
    listed = api.call("GET", "/v1/event-types", api.admin).json()["data"]
    names = {t["name"] for t in listed}
    assert {
        "user.deleted",
        "item.created",
        "item.refreshed",
        "webhook.disabled",
        "payment.link.updated",
    } <= names
    assert "TEST_EVENT" not in names
    assert all(t["description"] for t in listed)
