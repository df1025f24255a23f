"""HTTP surface: problem+json everywhere, body limits, health, OpenAPI."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Api


def test_unknown_route_is_problem_json_404(api: Api) -> None:
    response = api.call("GET", "/v1/nothing-here", api.admin)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


def test_wrong_method_is_problem_json_405(api: Api) -> None:
    response = api.call("PUT", "/v1/event-types", api.admin, json={})
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"


def test_body_over_the_limit_is_413_and_creates_nothing(api: Api) -> None:
    big = {"type": "item.created", "content": {"blob": "x" * 1_100_000}}
    response = api.publish("item.created", big["content"])
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    listed = api.call("GET", f"/v1/applications/{api.app_id}/deliveries", api.admin).json()
    assert listed["data"] == []


def test_chunked_body_over_the_limit_is_413(api: Api) -> None:
    def chunks():
        for _ in range(30):
            yield b"x" * 50_000

    response = api.call(
        "POST",
        f"/v1/applications/{api.app_id}/events",
        api.operator,
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(b"", "application/json", id="empty-body"),
        pytest.param(b"null", "application/json", id="json-null"),
        pytest.param(b"[]", "application/json", id="json-array"),
        pytest.param(b"\xff\xfe\x00", "application/json", id="not-utf8"),
        pytest.param(b"name=x", "application/x-www-form-urlencoded", id="form-body"),
    ],
)
def test_odd_bodies_are_4xx_never_500(api: Api, content: bytes, content_type: str) -> None:
    response = api.call(
        "POST",
        "/v1/applications",
        api.operator,
        content=content,
        headers={"Content-Type": content_type},
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_health_and_readiness(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"


def test_readiness_fails_when_database_is_unreachable(api: Api) -> None:
    from tidings.store.db import Database

    working = api.context.db
    api.context.db = Database.from_url("postgresql+psycopg://nobody:x@127.0.0.1:1/none")
    try:
        assert api.client.get("/readyz").status_code == 503
        response = api.call("GET", f"/v1/applications/{api.app_id}/webhooks", api.admin)
        assert response.status_code == 503
        assert response.headers["retry-after"]
    finally:
        api.context.db.dispose()
        api.context.db = working


def test_openapi_describes_every_route(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        "/v1/applications": {"post"},
        "/v1/applications/{app_id}": {"get"},
        "/v1/applications/{app_id}/api-keys": {"post"},
        "/v1/applications/{app_id}/users": {"post"},
        "/v1/event-types": {"get", "post"},
        "/v1/applications/{app_id}/webhooks": {"get", "post"},
        "/v1/applications/{app_id}/webhooks/{webhook_id}": {"get", "patch", "delete"},
        "/v1/applications/{app_id}/webhooks/{webhook_id}/rotate-secret": {"post"},
        "/v1/applications/{app_id}/webhooks/{webhook_id}/test": {"post"},
        "/v1/applications/{app_id}/webhooks/{webhook_id}/recover": {"post"},
        "/v1/applications/{app_id}/events": {"post"},
        "/v1/applications/{app_id}/deliveries": {"get"},
        "/v1/applications/{app_id}/deliveries/{delivery_id}": {"get"},
        "/v1/applications/{app_id}/deliveries/{delivery_id}/retry": {"post"},
        "/healthz": {"get"},
        "/readyz": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path


def test_users_validation(api: Api) -> None:
    url = f"/v1/applications/{api.app_id}/users"
    ok = api.call(
        "POST",
        url,
        api.admin,
        json={"email": "Ann@Example.com", "password": "long enough", "role": "admin"},
    )
    assert ok.status_code == 201
    assert ok.json()["email"] == "ann@example.com"
    assert "password" not in ok.json() and "password_hash" not in ok.json()
    dup = api.call(
        "POST",
        url,
        api.admin,
        json={"email": "ann@example.com", "password": "long enough", "role": "member"},
    )
    assert dup.status_code == 409
    for bad in (
        {"email": "not-an-email", "password": "long enough", "role": "admin"},
        {"email": "a@b.co", "password": "short", "role": "admin"},
        {"email": "a@b.co", "password": "long enough", "role": "owner"},
    ):
        assert api.call("POST", url, api.admin, json=bad).status_code == 422


def test_api_keys_are_shown_once_and_work(api: Api) -> None:
    r = api.call(
        "POST",
        f"/v1/applications/{api.app_id}/api-keys",
        api.admin,
        json={"name": "ci", "role": "member"},
    )
    assert r.status_code == 201
    key = r.json()["key"]
    assert key.startswith("tdk_") and r.json()["role"] == "member"
    assert api.call("GET", api.webhooks(), key).status_code == 200
    assert (
        api.call(
            "POST", api.webhooks(), key, json={"url": "https://x.example.com", "events": ["*"]}
        ).status_code
        == 403
    )


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_json_sent_without_a_json_content_type_is_read_as_json(
    api: Api, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.call(
        "POST", "/v1/applications", api.operator, content=b'{"name": "curl -d"}', headers=headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "curl -d"


def test_api_key_over_its_rate_limit_gets_429_with_retry_after(settings, clock) -> None:
    from fastapi.testclient import TestClient

    from tests.integration.conftest import OPERATOR
    from tidings.api.app import build_context, create_app

    limited = settings.model_copy(update={"api_rate_limit": 1.0, "api_rate_burst": 3.0})
    with TestClient(create_app(build_context(limited, clock=clock))) as client:
        op = {"Authorization": f"Bearer {OPERATOR}"}
        app_id = client.post("/v1/applications", json={"name": "x"}, headers=op).json()["id"]
        key = client.post(
            f"/v1/applications/{app_id}/api-keys", json={"name": "k", "role": "admin"}, headers=op
        ).json()["key"]
        codes = [
            client.get(
                f"/v1/applications/{app_id}/webhooks", headers={"Authorization": f"Bearer {key}"}
            ).status_code
            for _ in range(5)
        ]
        assert codes[:3] == [200, 200, 200] and codes[3] == 429
        refused = client.get(
            f"/v1/applications/{app_id}/webhooks", headers={"Authorization": f"Bearer {key}"}
        )
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == "application/problem+json"
        # The operator is not limited by default.
        assert all(
            client.get(f"/v1/applications/{app_id}", headers=op).status_code == 200
            for _ in range(20)
        )
