"""The receiver examples in docs/receivers.md run, verify, refuse forgeries and drop duplicates.

Each example is a file under docs/receivers/ that docs/receivers.md shows whole; the
deliveries are signed by the outside `standardwebhooks` package, as Tidings signs them.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from standardwebhooks.webhooks import Webhook

from tidings.domain.signing import generate_secret

DOCS = Path(__file__).resolve().parents[2] / "docs"
OLD, NEW = generate_secret(), generate_secret()
BODY = json.dumps({"content": {"item_id": 7}, "timestamp": 1, "type": "item.created"})


def load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("WEBHOOK_SECRETS", f"{NEW},{OLD}")
    spec = importlib.util.spec_from_file_location(name, DOCS / "receivers" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def signed(secret: str, msg_id: str = "dlv_1", body: str = BODY) -> dict[str, str]:
    now = datetime.fromtimestamp(int(time.time()), UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
        "content-type": "application/json",
    }


def test_the_guide_shows_every_example_whole() -> None:
    guide = (DOCS / "receivers.md").read_text()
    for example in sorted((DOCS / "receivers").glob("*.py")):
        assert example.read_text().strip() in guide, example.name


def test_flask(monkeypatch: pytest.MonkeyPatch) -> None:
    module = load("flask_receiver", monkeypatch)
    handled: list[tuple[str, dict]] = []
    monkeypatch.setattr(module, "handle", lambda t, c: handled.append((t, c)))
    client = module.app.test_client()
    for secret in (NEW, OLD):  # either secret during a rotation
        assert (
            client.post(
                "/webhooks/tidings", data=BODY, headers=signed(secret, f"dlv_{secret[-6:]}")
            ).status_code
            == 204
        )
    assert (
        client.post("/webhooks/tidings", data=BODY, headers=signed(generate_secret())).status_code
        == 401
    )
    assert client.post("/webhooks/tidings", data=BODY + " ", headers=signed(NEW)).status_code == 401
    assert (
        client.post("/webhooks/tidings", data=BODY, headers=signed(NEW, "dlv_same")).status_code
        == 204
    )
    assert (
        client.post("/webhooks/tidings", data=BODY, headers=signed(NEW, "dlv_same")).status_code
        == 204
    )
    assert handled == [("item.created", {"item_id": 7})] * 3  # the duplicate was dropped


def test_fastapi(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    module = load("fastapi_receiver", monkeypatch)
    handled: list[str] = []
    monkeypatch.setattr(module, "handle", lambda t, c: handled.append(t))
    with TestClient(module.app) as client:
        assert (
            client.post("/webhooks/tidings", content=BODY, headers=signed(OLD)).status_code == 204
        )
        assert (
            client.post("/webhooks/tidings", content=BODY, headers=signed(OLD)).status_code == 204
        )
        assert (
            client.post(
                "/webhooks/tidings", content=BODY, headers=signed(generate_secret(), "x")
            ).status_code
            == 401
        )
        stale = signed(NEW, "dlv_old") | {"webhook-timestamp": str(int(time.time()) - 600)}
        assert client.post("/webhooks/tidings", content=BODY, headers=stale).status_code == 401
    assert handled == ["item.created"]


def test_django(monkeypatch: pytest.MonkeyPatch) -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False, ALLOWED_HOSTS=["testserver"], ROOT_URLCONF=__name__, SECRET_KEY="test"
        )
        django.setup()
    from django.test import RequestFactory

    module = load("django_receiver", monkeypatch)
    handled: list[str] = []
    monkeypatch.setattr(module, "handle", lambda t, c: handled.append(t))
    factory = RequestFactory()

    def post(headers: dict[str, str], body: str = BODY) -> int:
        request = factory.post(
            "/webhooks/tidings", data=body, content_type="application/json", headers=headers
        )
        return int(module.tidings_webhook(request).status_code)

    assert post(signed(NEW)) == 204
    assert post(signed(generate_secret(), "dlv_2")) == 403
    assert handled == ["item.created"]


urlpatterns: list[object] = []
