"""The delivery log: newest first, filters, pagination, detail with attempts, retry, recover."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, update

from tests.integration.conftest import Api
from tidings.domain.ids import new_id
from tidings.store.tables import attempts, deliveries


def _path(api: Api, suffix: str = "") -> str:
    return f"/v1/applications/{api.app_id}/deliveries{suffix}"


def _set(api: Api, delivery_id: str, **values) -> None:
    with api.context.db.write() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(**values))


def test_newest_first_and_paginated(api: Api) -> None:
    api.create_webhook(events=["*"])
    for n in range(5):
        api.publish("item.created", {"n": n})
    first = api.call("GET", _path(api), api.member, params={"limit": 2}).json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    rest = api.call(
        "GET", _path(api), api.member, params={"limit": 10, "cursor": first["next_cursor"]}
    ).json()
    ids = [d["id"] for d in first["data"] + rest["data"]]
    assert len(ids) == 5 and ids == sorted(ids, reverse=True)
    assert rest["next_cursor"] is None


def test_filters(api: Api) -> None:
    a = api.create_webhook(events=["item.created"])
    b = api.create_webhook(events=["*"])
    api.publish("item.created")
    api.publish("item.deleted")
    by_hook = api.call("GET", _path(api), api.admin, params={"webhook_id": a["id"]}).json()["data"]
    assert [d["webhook_id"] for d in by_hook] == [a["id"]]
    by_type = api.call("GET", _path(api), api.admin, params={"event_type": "item.deleted"}).json()[
        "data"
    ]
    assert [(d["webhook_id"], d["event_type"]) for d in by_type] == [(b["id"], "item.deleted")]
    _set(api, by_type[0]["id"], status="failed")
    failed = api.call("GET", _path(api), api.admin, params={"status": "failed"}).json()["data"]
    assert [d["id"] for d in failed] == [by_type[0]["id"]]
    both = api.call(
        "GET", _path(api), api.admin, params={"status": "pending", "webhook_id": b["id"]}
    ).json()["data"]
    assert [d["event_type"] for d in both] == ["item.created"]


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"status": "lost"}, id="unknown-status"),
        pytest.param({"limit": -1}, id="negative-limit"),
        pytest.param({"cursor": "evt_01JD0000000000000000000000"}, id="cursor-of-events"),
        pytest.param({"webhook_id": "w" * 500}, id="webhook-id-too-long"),
    ],
)
def test_bad_filters_are_422(api: Api, params: dict) -> None:
    response = api.call("GET", _path(api), api.admin, params=params)
    assert response.status_code == 422


def test_detail_lists_attempts_in_order(api: Api, clock) -> None:
    api.create_webhook(events=["*"])
    api.publish("item.created", {"k": "v"})
    delivery_id = api.call("GET", _path(api), api.admin).json()["data"][0]["id"]
    now = clock.now()
    with api.context.db.write() as conn:
        conn.execute(
            insert(attempts),
            [
                {
                    "id": new_id("att"),
                    "delivery_id": delivery_id,
                    "at": now + 10,
                    "status_code": 200,
                    "duration_ms": 12,
                    "error": None,
                    "response_body": "ok",
                    "request_headers": {"webhook-id": delivery_id},
                },
                {
                    "id": new_id("att"),
                    "delivery_id": delivery_id,
                    "at": now,
                    "status_code": None,
                    "duration_ms": 10000,
                    "error": "timed out after 10 s",
                    "response_body": None,
                    "request_headers": {},
                },
            ],
        )
    detail = api.call("GET", _path(api, f"/{delivery_id}"), api.member).json()
    assert [(a["status_code"], a["error"]) for a in detail["attempts"]] == [
        (None, "timed out after 10 s"),
        (200, None),
    ]
    assert detail["attempts"][1] == {
        "at": detail["attempts"][1]["at"],
        "status_code": 200,
        "duration_ms": 12,
        "error": None,
        "response_body": "ok",
        "request_headers": {"webhook-id": delivery_id},
    }
    assert detail["payload"]["content"] == {"k": "v"}


def test_unknown_or_foreign_delivery_is_404(api: Api) -> None:
    api.create_webhook(events=["*"])
    api.publish("item.created")
    delivery_id = api.call("GET", _path(api), api.admin).json()["data"][0]["id"]
    assert api.call("GET", _path(api, "/dlv_nope"), api.admin).status_code == 404
    foreign = f"/v1/applications/{api.other_app_id}/deliveries/{delivery_id}"
    assert api.call("GET", foreign, api.other_admin).status_code == 404
    assert api.call("POST", foreign + "/retry", api.other_admin).status_code == 404


def test_retry_requeues_a_finished_delivery_and_refuses_a_pending_one(api: Api, clock) -> None:
    api.create_webhook(events=["*"])
    api.publish("item.created")
    delivery_id = api.call("GET", _path(api), api.admin).json()["data"][0]["id"]
    assert api.call("POST", _path(api, f"/{delivery_id}/retry"), api.admin).status_code == 409
    _set(api, delivery_id, status="failed", next_attempt_at=None, finished_at=clock.now())
    clock.advance(100)
    response = api.call("POST", _path(api, f"/{delivery_id}/retry"), api.admin)
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    detail = api.call("GET", _path(api, f"/{delivery_id}"), api.admin).json()
    assert detail["status"] == "pending" and detail["id"] == delivery_id


def test_recover_requeues_failed_deliveries_since_a_time(api: Api, clock) -> None:
    wh = api.create_webhook(events=["*"])
    api.publish("item.created")
    clock.advance(3600)
    api.publish("item.created")
    old, new = sorted(d["id"] for d in api.call("GET", _path(api), api.admin).json()["data"])
    for d in (old, new):
        _set(api, d, status="failed")
    since = clock.now() - 60
    response = api.call(
        "POST", f"{api.webhooks()}/{wh['id']}/recover", api.admin, json={"since": since}
    )
    assert response.status_code == 202
    assert response.json() == {"requeued": 1}
    statuses = {d["id"]: d["status"] for d in api.call("GET", _path(api), api.admin).json()["data"]}
    assert statuses == {old: "failed", new: "pending"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="missing-since"),
        pytest.param({"since": "yesterday"}, id="since-not-a-time"),
    ],
)
def test_recover_with_bad_since_is_422(api: Api, body: dict) -> None:
    wh = api.create_webhook()
    assert (
        api.call("POST", f"{api.webhooks()}/{wh['id']}/recover", api.admin, json=body).status_code
        == 422
    )
