"""The publish fast path answers exactly as FastAPI's route does, and leaves it the rest."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tidings.api.app import create_app
from tidings.api.fast_publish import FastPublish

from .conftest import Api


@pytest.fixture
def plain(api: Api) -> Iterator[TestClient]:
    """The same API on the same database, with every publish left to FastAPI's route."""
    with TestClient(create_app(api.context, fast_publish=False)) as client:
        yield client


def _fast_path(client: TestClient) -> FastPublish:
    app: Any = client.app
    assert isinstance(app.fast_publish, FastPublish)
    return app.fast_publish


CASES: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("new event", {"json": {"type": "item.created", "content": {"n": 1}}}, {}),
    ("no content", {"json": {"type": "item.created"}}, {}),
    ("unknown type", {"json": {"type": "item.nope", "content": {}}}, {}),
    ("TEST_EVENT", {"json": {"type": "TEST_EVENT", "content": {}}}, {}),
    ("extra field", {"json": {"type": "item.created", "content": {}, "x": 1}}, {}),
    ("not JSON", {"content": b"{nope"}, {}),
    ("empty body", {"content": b""}, {}),
    ("a list", {"json": [1, 2]}, {}),
    ("NaN", {"content": b'{"type": "item.created", "content": {"x": NaN}}'}, {}),
    ("blank key", {"json": {"type": "item.created", "content": {}}}, {"Idempotency-Key": " "}),
    ("long key", {"json": {"type": "item.created", "content": {}}}, {"Idempotency-Key": "k" * 256}),
    (
        "too large",
        {"content": b'{"type": "item.created", "content": {"x": "%s"}}' % (b"a" * 10**6)},
        {},
    ),
]


@pytest.mark.parametrize(("label", "body", "headers"), CASES, ids=[c[0] for c in CASES])
def test_the_fast_path_answers_as_the_route_does(
    api: Api, plain: TestClient, label: str, body: dict[str, Any], headers: dict[str, str]
) -> None:
    path = f"/v1/applications/{api.app_id}/events"
    auth = {"Authorization": f"Bearer {api.operator}", **headers}
    fast = _fast_path(api.client)
    before = fast.answered
    a = api.client.post(path, headers=auth, **body)
    b = plain.post(path, headers=auth, **body)
    assert a.status_code == b.status_code, (label, a.text, b.text)
    assert a.headers["content-type"] == b.headers["content-type"]
    assert set(a.headers) - {"date"} == set(b.headers) - {"date"}
    ja, jb = a.json(), b.json()
    if a.status_code == 202:
        assert fast.answered == before + 1
        assert ja.keys() == jb.keys() and ja["type"] == jb["type"]
        assert ja["deliveries"] == jb["deliveries"]
    else:
        assert fast.answered == before  # left to FastAPI
        assert ja == jb


def test_a_body_without_a_declared_length_goes_to_the_route(api: Api) -> None:
    """Chunked: the size is not known before reading, so the body limit's layer reads it."""
    fast = _fast_path(api.client)
    before = fast.answered
    chunks = iter([b'{"type": "item.created", ', b'"content": {"n": 1}}'])
    answer = api.client.post(
        f"/v1/applications/{api.app_id}/events",
        headers={"Authorization": f"Bearer {api.operator}"},
        content=chunks,
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["type"] == "item.created"
    assert fast.answered == before


def test_replays_and_other_credentials_and_apps(api: Api, plain: TestClient) -> None:
    api.create_webhook(events=["item.created"])
    path = f"/v1/applications/{api.app_id}/events"
    body = {"type": "item.created", "content": {"n": 1}}
    key = {"Authorization": f"Bearer {api.operator}", "Idempotency-Key": "once"}
    fast = _fast_path(api.client)
    first = api.client.post(path, json=body, headers=key)
    again_fast = api.client.post(path, json=body, headers=key)
    again_plain = plain.post(path, json=body, headers=key)
    assert first.status_code == again_fast.status_code == again_plain.status_code == 202
    assert first.json() == again_fast.json() == again_plain.json()
    assert "idempotent-replayed" not in first.headers
    assert again_fast.headers["idempotent-replayed"] == again_plain.headers["idempotent-replayed"]
    other_body = api.client.post(path, json={**body, "content": {"n": 2}}, headers=key)
    assert other_body.status_code == 409  # from FastAPI's route, after the fast path's refusal
    answered = fast.answered
    for token in (api.admin, "nope"):
        fast_r = api.client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        plain_r = plain.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        assert fast_r.status_code == plain_r.status_code in (401, 403)
        assert fast_r.json() == plain_r.json()
    missing = api.client.post(
        "/v1/applications/app_missing/events",
        json=body,
        headers={"Authorization": key["Authorization"]},
    )
    assert missing.status_code == 404 and missing.json()["status"] == 404
    assert fast.answered == answered  # none of those was answered by the fast path


def test_only_a_plain_declared_length_within_the_limit_is_read_here(api: Api) -> None:
    """Anything else goes on to the stack's own body limit (an HTTP parser refuses most of
    these before they reach the application; none of them may raise here)."""
    fast = _fast_path(api.client)
    limit = fast.max_bytes
    assert fast._small(str(limit)) and fast._small("0") and fast._small("007")
    for declared in (None, "", str(limit + 1), "²", "1e3", "-1", " 5", "٣"):
        assert not fast._small(declared), declared
