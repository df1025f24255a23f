"""DESIGN.md §2-§4 walked through once against a real `tidings serve` on a fresh SQLite file,
over HTTP, with a real receiver on 127.0.0.1: every API path with the fields and id prefixes
it promises, a delivery verified by the outside `standardwebhooks` library and by
`tidings.verify`, the error shapes, the unauthenticated endpoints and a clean SIGTERM.

Each piece has its own tests elsewhere; this one is the contract as a user of the running
service meets it, end to end, in the order they would."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx2 as httpx
from standardwebhooks.webhooks import Webhook

from tests.e2e.helpers import Server, StartServer, Workspace, bearer
from tests.support.receiver import Receiver
from tidings.verify import verify

OPERATOR = "walkthrough-operator-token-0123456789"
WEBHOOK_FIELDS = {
    "id",
    "url",
    "name",
    "events",
    "enabled",
    "disabled_reason",
    "rate_limit",
    "headers",
    "ordering",
    "created_at",
    "updated_at",
}
ATTEMPT_FIELDS = {"at", "status_code", "duration_ms", "error", "response_body"}
PROBLEM_FIELDS = {"type", "title", "status", "detail"}


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_FIELDS and body["status"] == status, body
    return body


def _until(fetch: Any, done: Any, seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    value = fetch()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = fetch()
    return value


def test_the_contract_end_to_end_through_a_running_serve(
    workspace: Workspace, start_server: StartServer, receiver: Receiver
) -> None:
    server: Server = start_server(
        "serve",
        workspace.env(TIDINGS_OPERATOR_TOKEN=OPERATOR, TIDINGS_ALLOW_PRIVATE_TARGETS="1"),
    )
    op = bearer(OPERATOR)
    with httpx.Client(base_url=server.base, timeout=10) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200

        r = c.post("/v1/applications", json={"name": "acme"}, headers=op)
        assert r.status_code == 201, r.text
        assert r.json().keys() >= {"id", "name", "created_at"}
        app = r.json()["id"]
        assert app.startswith("app_")
        assert c.get(f"/v1/applications/{app}", headers=op).status_code == 200

        r = c.post(
            f"/v1/applications/{app}/api-keys", json={"name": "k", "role": "admin"}, headers=op
        )
        assert r.status_code == 201, r.text
        assert r.json().keys() >= {"id", "name", "role", "key"} and r.json()["id"].startswith(
            "key_"
        )
        admin = bearer(r.json()["key"])

        user = {"email": "ada@example.com", "password": "correct horse battery", "role": "admin"}
        r = c.post(f"/v1/applications/{app}/users", json=user, headers=admin)
        assert r.status_code == 201, r.text
        assert r.json()["id"].startswith("usr_") and r.json()["role"] == "admin"
        assert r.json()["email"] == "ada@example.com" and "password" not in r.json()

        r = c.get("/v1/event-types", headers=admin)
        assert r.status_code == 200
        names = {t["name"] for t in r.json()["data"]}
        assert {"item.created", "user.deleted", "webhook.disabled"} <= names
        assert "TEST_EVENT" not in names  # never subscribable

        hook = {"url": receiver.url("/ok"), "name": "orders", "events": ["item.created"]}
        r = c.post(f"/v1/applications/{app}/webhooks", json=hook, headers=admin)
        assert r.status_code == 201, r.text
        wh = r.json()
        assert wh.keys() >= WEBHOOK_FIELDS and wh["id"].startswith("wh_")
        assert wh["secret"].startswith("whsec_")
        listed = c.get(f"/v1/applications/{app}/webhooks", headers=admin).json()
        assert [w["id"] for w in listed["data"]] == [wh["id"]] and "next_cursor" in listed
        assert wh["secret"] not in json.dumps(listed)  # shown in full only when made
        r = c.patch(
            f"/v1/applications/{app}/webhooks/{wh['id']}", json={"name": "m"}, headers=admin
        )
        assert r.status_code == 200 and r.json()["name"] == "m"

        publish = {"type": "item.created", "content": {"x": 1}}
        keyed = {**op, "Idempotency-Key": "k1"}
        r = c.post(f"/v1/applications/{app}/events", json=publish, headers=keyed)
        assert r.status_code == 202, r.text
        event = r.json()
        assert event.keys() == {"id", "type", "deliveries"} and event["deliveries"] == 1
        assert event["id"].startswith("evt_")
        again = c.post(f"/v1/applications/{app}/events", json=publish, headers=keyed)
        assert again.status_code == 202 and again.json() == event  # the first answer, nothing new

        (arrived,) = receiver.wait_for(1)
        headers = {k.lower(): v for k, v in arrived.headers.items()}
        envelope = Webhook(wh["secret"]).verify(arrived.body, headers)
        assert envelope["content"] == {"x": 1}
        assert verify(arrived.body, headers, [wh["secret"]])["type"] == "item.created"
        assert set(json.loads(arrived.body)) == {"content", "timestamp", "type"}
        hex_signature = headers["tidings-signature"]
        assert hex_signature.startswith("v1=") and hex_signature[3:] == hex_signature[3:].upper()
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"].startswith("Tidings/")
        assert headers["webhook-id"].startswith("dlv_")

        deliveries = f"/v1/applications/{app}/deliveries"
        r = c.get(deliveries, headers=admin)
        assert r.status_code == 200 and "next_cursor" in r.json()
        (listed_delivery,) = r.json()["data"]
        dlv = listed_delivery["id"]
        assert dlv == headers["webhook-id"]
        detail = _until(
            lambda: c.get(f"{deliveries}/{dlv}", headers=admin).json(),
            lambda d: d["status"] == "succeeded",
        )
        assert detail["status"] == "succeeded", detail
        assert detail["attempts"] and detail["attempts"][0].keys() >= ATTEMPT_FIELDS
        filtered = c.get(
            deliveries,
            params={"status": "succeeded", "webhook_id": wh["id"], "event_type": "item.created"},
            headers=admin,
        ).json()["data"]
        assert [d["id"] for d in filtered] == [dlv]
        assert c.get(deliveries, params={"status": "failed"}, headers=admin).json()["data"] == []

        assert c.post(f"{deliveries}/{dlv}/retry", headers=admin).status_code == 202
        hook_path = f"/v1/applications/{app}/webhooks/{wh['id']}"
        assert c.post(f"{hook_path}/test", headers=admin).status_code == 202
        tested = receiver.wait_for(3)  # the retry and the test
        assert {json.loads(x.body)["type"] for x in tested[1:]} == {"item.created", "TEST_EVENT"}
        r = c.post(f"{hook_path}/rotate-secret", headers=admin)
        assert r.status_code == 200 and r.json()["secret"].startswith("whsec_")
        assert r.json()["secret"] != wh["secret"]
        r = c.post(f"{hook_path}/recover", json={"since": 0}, headers=admin)
        assert r.status_code == 202 and r.json() == {"requeued": 0}

        bad = c.post(
            f"/v1/applications/{app}/events", json={"type": "nope", "content": {}}, headers=op
        )
        assert bad.status_code in (400, 422)
        _problem(bad, bad.status_code)
        _problem(c.get(f"/v1/applications/{app}/webhooks"), 401)
        _problem(
            c.get("/v1/applications/app_01JAAAAAAAAAAAAAAAAAAAAAAA/webhooks", headers=admin), 404
        )
        huge = b'{"type":"item.created","content":{"a":"' + b"x" * 2_000_000 + b'"}}'
        too_big = c.post(
            f"/v1/applications/{app}/events",
            content=huge,
            headers={**op, "content-type": "application/json"},
        )
        _problem(too_big, 413)

        assert "tidings_" in c.get("/metrics").text
        assert "/v1/applications/{app_id}/events" in c.get("/openapi.json").json()["paths"]
        login = c.get("/login").text
        assert "Email" in login and "Password" in login and "Sign in" in login
        assert c.get("/", follow_redirects=False).status_code in (302, 303, 307)
        assert c.delete(hook_path, headers=admin).status_code in (200, 204)
        assert c.get(hook_path, headers=admin).status_code == 404

    server.stop()
    assert server.proc.returncode == 0, server.stderr
    assert "Traceback" not in server.stderr, server.stderr
    assert wh["secret"] not in server.stderr
