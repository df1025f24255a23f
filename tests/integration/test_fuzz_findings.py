"""What fuzzing found (tests/fuzz), pinned down on both databases.

Each of these was a 500 or an answer the OpenAPI document did not describe.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import Api

PROBLEM = "application/problem+json"


def _raw(api: Api, method: str, path: str, body: str, **headers: str) -> object:
    headers = {"content-type": "application/json", **headers}
    return api.call(method, path, api.operator, content=body.encode(), headers=headers)


def _events(api: Api) -> str:
    return f"/v1/applications/{api.app_id}/events"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        # Stored, then a 500 on GET .../deliveries/{id} and a worker that could not encode it.
        pytest.param('{"a": "\\ud800"}', "surrogate", id="unpaired-surrogate-value"),
        pytest.param('{"\\udfff": 1}', "surrogate", id="unpaired-surrogate-key"),
        # Stored, then sent to receivers as `NaN` / `Infinity`: not JSON.
        pytest.param('{"n": NaN}', "NaN", id="nan"),
        pytest.param('{"n": -Infinity}', "NaN", id="infinity"),
        pytest.param('{"n": 1e999}', "NaN", id="float-overflow"),
        # Stored, then a 500 on GET .../deliveries/{id} (pydantic's serialiser gives up).
        pytest.param('{"a": ' + "[" * 64 + "]" * 64 + "}", "levels deep", id="65-levels"),
    ],
)
def test_event_content_that_cannot_be_delivered_is_refused(
    api: Api, content: str, fragment: str
) -> None:
    api.create_webhook(events=["*"])
    response = _raw(api, "POST", _events(api), f'{{"type": "item.created", "content": {content}}}')
    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"]
    listed = api.call("GET", f"/v1/applications/{api.app_id}/deliveries", api.admin)
    assert listed.json()["data"] == []


def test_event_content_64_levels_deep_is_delivered_and_shown(api: Api) -> None:
    api.create_webhook(events=["*"])
    content = '{"a": ' + "[" * 63 + "]" * 63 + "}"
    response = _raw(api, "POST", _events(api), f'{{"type": "item.created", "content": {content}}}')
    assert response.status_code == 202, response.text
    listed = api.call("GET", f"/v1/applications/{api.app_id}/deliveries", api.admin).json()
    detail = api.call(
        "GET", f"/v1/applications/{api.app_id}/deliveries/{listed['data'][0]['id']}", api.admin
    )
    assert detail.status_code == 200, detail.text


def test_lengths_count_what_was_sent_before_trimming(api: Api) -> None:
    # Schemathesis: " ÷" + 199 characters (201 sent, 200 documented) was accepted.
    too_long = api.call("POST", "/v1/applications", api.operator, json={"name": " ÷" + "*" * 199})
    assert too_long.status_code == 422, too_long.text
    padded = api.call("POST", "/v1/applications", api.operator, json={"name": "  Acme  "})
    assert padded.status_code == 201 and padded.json()["name"] == "Acme"
    blank = api.call("POST", "/v1/applications", api.operator, json={"name": "   "})
    assert blank.status_code == 422
    url = " https://hooks.example.com/in "
    hook = api.create_webhook(url=url, name=" Orders ")
    assert (hook["url"], hook["name"]) == (url.strip(), "Orders")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/v1/applications", {"name": "a\x00b"}, id="application-name"),
        pytest.param("/v1/event-types", {"name": "a.b", "description": "\x00"}, id="description"),
        pytest.param("{app}/api-keys", {"name": "k\x00", "role": "admin"}, id="key-name"),
        pytest.param(
            "{app}/users",
            {"email": "a\x00@example.com", "password": "long enough", "role": "admin"},
            id="email",
        ),
        pytest.param(
            "{app}/webhooks",
            {"url": "https://hooks.example.com/", "events": ["*"], "name": "\x00"},
            id="webhook-name",
        ),
    ],
)
def test_nul_characters_are_refused_on_both_databases(
    api: Api, path: str, body: dict[str, object]
) -> None:
    # PostgreSQL cannot store NUL in text: these were 500s there (and stored on SQLite).
    path = path.replace("{app}", f"/v1/applications/{api.app_id}")
    response = api.call("POST", path, api.operator, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        pytest.param("/v1/applications/a%00b", {}, id="application-id"),
        pytest.param("{app}/webhooks/wh%00", {}, id="webhook-id"),
        pytest.param("{app}/deliveries?webhook_id=%00", {}, id="filter"),
        pytest.param("{app}/deliveries?event_type=a%00", {}, id="event-type-filter"),
    ],
)
def test_nul_characters_in_lookups_are_not_server_errors(
    api: Api, path: str, headers: dict[str, str]
) -> None:
    path = path.replace("{app}", f"/v1/applications/{api.app_id}")
    response = api.call("GET", path, api.operator, headers=headers)
    assert response.status_code < 500, response.text  # 422 on PostgreSQL, 404 or 200 on SQLite


def test_nul_in_idempotency_key_is_not_a_server_error(api: Api) -> None:
    response = api.call(
        "POST",
        _events(api),
        api.operator,
        json={"type": "item.created", "content": {}},
        headers={"Idempotency-Key": "k\x00"},
    )
    assert response.status_code in (202, 422), response.text


@pytest.mark.parametrize(
    ("rate", "status"), [(1e-300, 422), (0.0009, 422), (0.001, 201), (10_000, 201)]
)
def test_rate_limit_has_a_floor(api: Api, rate: float, status: int) -> None:
    # 1e-300 spaced queued deliveries past year 9999: GET .../deliveries then answered 500.
    body = {"url": "https://hooks.example.com/in", "events": ["*"], "rate_limit": rate}
    response = api.call("POST", api.webhooks(), api.admin, json=body)
    assert response.status_code == status, response.text


def test_a_body_that_is_not_text_is_a_malformed_request(api: Api) -> None:
    response = api.call(
        "POST",
        "/v1/applications",
        api.operator,
        content=b"V\xc4\xe3<\xf6\xf9\x07u",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "urn:tidings:problem:malformed-request"


def test_openapi_documents_error_answers_as_problem_json(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec.get("components", {}).get("schemas", {})
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"401", "422", "429", "500"} <= set(responses), (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    assert set(response["content"]) == {PROBLEM}, (method, path, status)


def test_openapi_documents_the_delivery_status_filter_and_cursors(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    parameters = {
        p["name"]: p["schema"]
        for p in spec["paths"]["/v1/applications/{app_id}/deliveries"]["get"]["parameters"]
    }
    assert parameters["status"]["anyOf"][0]["enum"] == [
        "pending",
        "delivering",
        "succeeded",
        "failed",
    ]
    assert parameters["cursor"]["pattern"].startswith("^dlv_")
    response = api.call(
        "GET", f"/v1/applications/{api.app_id}/deliveries", api.admin, params={"status": "lost"}
    )
    assert response.status_code == 422
