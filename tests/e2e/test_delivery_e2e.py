"""Real processes end to end: publish → a signed delivery arrives, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx2 as httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.e2e.helpers import Server, Workspace, bearer
from tests.support.receiver import Receiver

OPERATOR = "e2e-operator-token"
ENCRYPTION_KEY = "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtbG9uZy1rZXk="


@pytest.fixture
def env(workspace: Workspace, database_url: str) -> dict[str, str]:
    return workspace.env(
        TIDINGS_DATABASE_URL=database_url,
        TIDINGS_OPERATOR_TOKEN=OPERATOR,
        TIDINGS_ENCRYPTION_KEY=ENCRYPTION_KEY,
        TIDINGS_ALLOW_PRIVATE_TARGETS="1",
    )


@pytest.fixture
def processes() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def setup_webhook(client: httpx.Client, receiver: Receiver) -> tuple[str, str]:
    """An application with one webhook to the receiver: (application id, secret)."""
    app_id = client.post("/v1/applications", json={"name": "e2e"}, headers=bearer(OPERATOR)).json()[
        "id"
    ]
    key = client.post(
        f"/v1/applications/{app_id}/api-keys",
        json={"name": "k", "role": "admin"},
        headers=bearer(OPERATOR),
    ).json()["key"]
    response = client.post(
        f"/v1/applications/{app_id}/webhooks",
        json={"url": receiver.url("/ok"), "events": ["item.created"]},
        headers=bearer(key),
    )
    assert response.status_code == 201, response.text
    return app_id, response.json()["secret"]


def publish_and_time(client: httpx.Client, receiver: Receiver, app_id: str, n: int) -> float:
    before = len(receiver.requests)
    started = time.time()
    response = client.post(
        f"/v1/applications/{app_id}/events",
        json={"type": "item.created", "content": {"n": n}},
        headers=bearer(OPERATOR),
    )
    assert response.status_code == 202, response.text
    arrived = receiver.wait_for(before + 1, timeout=10)
    assert len(arrived) == before + 1, "the delivery did not arrive"
    return arrived[-1].at - started


def test_serve_delivers_a_published_event_in_under_a_second(
    workspace: Workspace, env: dict[str, str], receiver: Receiver, processes: list[Server]
) -> None:
    server = Server(workspace, "serve", env)
    processes.append(server)
    server.wait_ready()
    with httpx.Client(base_url=server.base, timeout=10) as client:
        app_id, secret = setup_webhook(client, receiver)
        latencies = [publish_and_time(client, receiver, app_id, n) for n in range(5)]
    print(f"serve latencies (s): {[round(x, 4) for x in latencies]}")
    assert max(latencies) < 1.0, latencies
    for n, request in enumerate(receiver.requests):
        envelope = Webhook(secret).verify(request.body, request.headers)
        assert envelope["content"] == {"n": n} and envelope["type"] == "item.created"
    server.stop()
    assert secret not in server.stderr and secret[6:] not in server.stderr  # not in the logs


def test_api_and_worker_processes_share_the_database(
    workspace: Workspace, env: dict[str, str], receiver: Receiver, processes: list[Server]
) -> None:
    api = Server(workspace, "api", env)
    processes.append(api)
    api.wait_ready()
    workers = [Server(workspace, "worker", env) for _ in range(2)]
    processes.extend(workers)
    for w in workers:
        w.wait_for_line("worker")
    with httpx.Client(base_url=api.base, timeout=10) as client:
        app_id, secret = setup_webhook(client, receiver)
        latencies = [publish_and_time(client, receiver, app_id, n) for n in range(5)]
        # Idle workers poll every 100 ms: a separate worker picks new work up promptly too.
        print(f"api+worker latencies (s): {[round(x, 4) for x in latencies]}")
        assert max(latencies) < 1.0, latencies
        time.sleep(0.5)
        assert len(receiver.requests) == 5  # two workers, no delivery sent twice
    for request in receiver.requests:
        Webhook(secret).verify(request.body, request.headers)
    for w in workers:
        w.proc.send_signal(15)
        assert w.proc.wait(timeout=15) == 0, w.stderr
        assert "stopped" in w.stderr
