"""An API client over a real database, with a token for every role."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from tidings.api.app import build_context, create_app
from tidings.api.deps import Context
from tidings.clock import ManualClock
from tidings.config import Settings
from tidings.store.db import Database

OPERATOR = "test-operator-token"
ENCRYPTION_KEY = "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtbG9uZy1rZXk="


@dataclass
class Api:
    """A test client plus the tokens of each kind of caller."""

    client: TestClient
    context: Context
    app_id: str
    admin: str
    member: str
    other_app_id: str
    other_admin: str
    operator: str = OPERATOR

    def call(self, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.request(method, path, headers=headers, **kwargs)

    def webhooks(self, app_id: str | None = None) -> str:
        return f"/v1/applications/{app_id or self.app_id}/webhooks"

    def create_webhook(self, **fields: Any) -> dict[str, Any]:
        body = {"url": "https://hooks.example.com/in", "events": ["item.created"], **fields}
        response = self.call("POST", self.webhooks(), self.admin, json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def publish(
        self, event_type: str, content: dict[str, Any] | None = None, **kw: Any
    ) -> httpx.Response:
        return self.call(
            "POST",
            f"/v1/applications/{self.app_id}/events",
            self.operator,
            json={"type": event_type, "content": content or {}},
            **kw,
        )


class FirstCommitHeld:
    """Notes the thread of every COMMIT of `db` while `listening`, and holds the first (in
    the thread that commits it) until `proceed` is set."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.threads: list[str] = []
        self.started, self.proceed = threading.Event(), threading.Event()

    def _on_commit(self, _conn: Any) -> None:
        self.threads.append(threading.current_thread().name)
        if len(self.threads) == 1:
            self.started.set()
            self.proceed.wait(10)

    @contextmanager
    def listening(self) -> Iterator[None]:
        event.listen(self.db.engine, "commit", self._on_commit)
        try:
            yield
        finally:
            self.proceed.set()
            event.remove(self.db.engine, "commit", self._on_commit)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    return Settings(
        database_url=database_url,
        operator_token=OPERATOR,
        encryption_key=ENCRYPTION_KEY,
        **overrides,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def api(settings: Settings, clock: ManualClock) -> Iterator[Api]:
    context = build_context(settings, clock=clock)
    with TestClient(create_app(context), raise_server_exceptions=False) as client:

        def new_app(name: str) -> str:
            r = client.post(
                "/v1/applications",
                json={"name": name},
                headers={"Authorization": f"Bearer {OPERATOR}"},
            )
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        def new_key(app_id: str, role: str) -> str:
            r = client.post(
                f"/v1/applications/{app_id}/api-keys",
                json={"name": role, "role": role},
                headers={"Authorization": f"Bearer {OPERATOR}"},
            )
            assert r.status_code == 201, r.text
            return str(r.json()["key"])

        app_id, other = new_app("Shop"), new_app("Other")
        yield Api(
            client=client,
            context=context,
            app_id=app_id,
            admin=new_key(app_id, "admin"),
            member=new_key(app_id, "member"),
            other_app_id=other,
            other_admin=new_key(other, "admin"),
        )
