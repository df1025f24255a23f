"""Who may do what: operator, admin, member, another application's admin, and no token."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Api

# (caller, expected status) for each route; "wh" and "dlv" are filled in per test.
MATRIX = {
    ("POST", "/v1/applications", "app-create"): {
        "operator": 201,
        "admin": 403,
        "member": 403,
        "other": 403,
        "none": 401,
    },
    ("GET", "/v1/applications/{app}", None): {
        "operator": 200,
        "admin": 200,
        "member": 200,
        "other": 404,
        "none": 401,
    },
    ("POST", "/v1/applications/{app}/api-keys", "key"): {
        "operator": 201,
        "admin": 201,
        "member": 403,
        "other": 404,
        "none": 401,
    },
    ("POST", "/v1/applications/{app}/users", "user"): {
        "operator": 201,
        "admin": 201,
        "member": 403,
        "other": 404,
        "none": 401,
    },
    ("GET", "/v1/event-types", None): {
        "operator": 200,
        "admin": 200,
        "member": 200,
        "other": 200,
        "none": 401,
    },
    ("POST", "/v1/event-types", "event-type"): {
        "operator": 201,
        "admin": 403,
        "member": 403,
        "other": 403,
        "none": 401,
    },
    ("POST", "/v1/applications/{app}/webhooks", "webhook"): {
        "operator": 201,
        "admin": 201,
        "member": 403,
        "other": 404,
        "none": 401,
    },
    ("GET", "/v1/applications/{app}/webhooks", None): {
        "operator": 200,
        "admin": 200,
        "member": 200,
        "other": 404,
        "none": 401,
    },
    ("GET", "/v1/applications/{app}/webhooks/{wh}", None): {
        "operator": 200,
        "admin": 200,
        "member": 200,
        "other": 404,
        "none": 401,
    },
    ("PATCH", "/v1/applications/{app}/webhooks/{wh}", "patch"): {
        "operator": 200,
        "admin": 200,
        "member": 403,
        "other": 404,
        "none": 401,
    },
    ("POST", "/v1/applications/{app}/webhooks/{wh}/rotate-secret", None): {
        "operator": 200,
        "admin": 200,
        "member": 403,
        "other": 404,
        "none": 401,
    },
    ("POST", "/v1/applications/{app}/webhooks/{wh}/test", None): {
        "operator": 202,
        "admin": 202,
        "member": 403,
        "other": 404,
        "none": 401,
    },
    ("POST", "/v1/applications/{app}/webhooks/{wh}/recover", "recover"): {
        "operator": 202,
        "admin": 202,
        "member": 403,
        "other": 404,
        "none": 401,
    },
    ("DELETE", "/v1/applications/{app}/webhooks/{wh}", None): {
        "operator": 204,
        "admin": 204,
        "member": 403,
        "other": 404,
        "none": 401,
    },
    ("POST", "/v1/applications/{app}/events", "event"): {
        "operator": 202,
        "admin": 403,
        "member": 403,
        "other": 403,
        "none": 401,
    },
    ("GET", "/v1/applications/{app}/deliveries", None): {
        "operator": 200,
        "admin": 200,
        "member": 200,
        "other": 404,
        "none": 401,
    },
    ("GET", "/v1/applications/{app}/deliveries/{dlv}", None): {
        "operator": 200,
        "admin": 200,
        "member": 200,
        "other": 404,
        "none": 401,
    },
    ("POST", "/v1/applications/{app}/deliveries/{dlv}/retry", None): {
        "operator": 202,
        "admin": 202,
        "member": 403,
        "other": 404,
        "none": 401,
    },
}

_counter = iter(range(10_000))
OPERATOR_ONLY = {"app-create", "event-type", "event"}


def _body(kind: str | None) -> dict[str, object] | None:
    n = next(_counter)
    return {
        None: None,
        "app-create": {"name": f"app {n}"},
        "key": {"name": f"k{n}", "role": "member"},
        "user": {"email": f"u{n}@example.com", "password": "correct horse", "role": "member"},
        "event-type": {"name": f"custom.t{n}", "description": "x"},
        "webhook": {"url": "https://hooks.example.com/x", "events": ["*"]},
        "patch": {"name": f"renamed {n}"},
        "recover": {"since": "2020-01-01T00:00:00Z"},
        "event": {"type": "item.created", "content": {"n": n}},
    }[kind]


CASES = [
    pytest.param(method, path, kind, who, status, id=f"{who}-{method}-{path}")
    for (method, path, kind), by_caller in MATRIX.items()
    for who, status in by_caller.items()
]


def _failed_delivery(api: Api, webhook_id: str) -> str:
    """A finished delivery that a retry can queue again."""
    from sqlalchemy import update

    from tidings.store.tables import deliveries

    api.publish("item.created", {"x": 1})
    listed = api.call("GET", f"/v1/applications/{api.app_id}/deliveries", api.admin).json()
    delivery_id = listed["data"][0]["id"]
    with api.context.db.write() as conn:
        conn.execute(
            update(deliveries).where(deliveries.c.id == delivery_id).values(status="failed")
        )
    return str(delivery_id)


@pytest.mark.parametrize(("method", "path", "kind", "who", "status"), CASES)
def test_role_matrix(
    api: Api, method: str, path: str, kind: str | None, who: str, status: int
) -> None:
    webhook = api.create_webhook(events=["item.created"])
    delivery_id = _failed_delivery(api, webhook["id"])
    token = {
        "operator": api.operator,
        "admin": api.admin,
        "member": api.member,
        "other": api.other_admin,
        "none": None,
    }[who]
    url = path.format(app=api.app_id, wh=webhook["id"], dlv=delivery_id)
    body = _body(kind)
    response = (
        api.call(method, url, token, json=body)
        if body is not None
        else api.call(method, url, token)
    )
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == status
        assert problem["detail"]
    if status == 403:
        assert ("operator" if kind in OPERATOR_ONLY else "admin") in response.json()["detail"]


def test_bad_tokens_are_401(api: Api) -> None:
    url = f"/v1/applications/{api.app_id}"
    for header in ("Bearer", "Bearer ", "Basic abc", "Bearer nope", f"Token {api.admin}"):
        response = api.client.get(url, headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["www-authenticate"] == "Bearer"


def test_other_applications_objects_are_404_even_for_admins(api: Api) -> None:
    webhook = api.create_webhook()
    url = f"/v1/applications/{api.other_app_id}/webhooks/{webhook['id']}"
    assert api.call("GET", url, api.other_admin).status_code == 404
    # ... and through its own application's path with the other app's key too.
    assert api.call("GET", f"{api.webhooks()}/{webhook['id']}", api.other_admin).status_code == 404


def test_unknown_application_is_404_for_operator(api: Api) -> None:
    response = api.call("GET", "/v1/applications/app_01JD0000000000000000000000", api.operator)
    assert response.status_code == 404
