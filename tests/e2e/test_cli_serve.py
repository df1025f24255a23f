"""End to end: `tidings serve` and `tidings api` as real server processes on a SQLite file."""

from __future__ import annotations

import re
import stat

import httpx2 as httpx

from tests.e2e.helpers import Server, StartServer, Workspace, bearer

OPERATOR_TOKEN = re.compile(r"\btdo_[A-Za-z0-9_-]{20,}")


def create_application(server: Server, token: str, name: str = "x") -> httpx.Response:
    with httpx.Client(base_url=server.base, timeout=10) as client:
        return client.post("/v1/applications", json={"name": name}, headers=bearer(token))


def assert_stopped_cleanly(server: Server) -> None:
    server.stop()
    # SIGTERM is a clean stop: in-flight work finishes, and the exit status is 0.
    assert server.proc.returncode == 0, server.stderr
    assert "Application shutdown complete" in server.stderr, server.stderr
    assert "Traceback" not in server.stderr, server.stderr


def test_serve_prints_an_operator_token_once_and_it_keeps_working(
    workspace: Workspace, start_server: StartServer
) -> None:
    first = start_server("serve")
    tokens = OPERATOR_TOKEN.findall(first.stderr)
    assert len(tokens) == 1, first.stderr
    token = tokens[0]
    assert "shown this once" in first.stderr

    created = create_application(first, token)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "x"
    assert created.json()["id"].startswith("app_")

    with httpx.Client(base_url=first.base, timeout=10) as client:
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/applications", json={"name": "y"}).status_code == 401
        wrong = client.post("/v1/applications", json={"name": "y"}, headers=bearer("tdo_wrong"))
        assert wrong.status_code == 401
        openapi = client.get("/openapi.json")
        assert openapi.status_code == 200
        assert "/v1/applications/{app_id}/webhooks" in openapi.json()["paths"]

    assert_stopped_cleanly(first)
    key_file = workspace.db_path.parent / "tidings.key"
    key_before = key_file.read_text()

    second = start_server("serve")
    assert "tdo_" not in second.stderr, second.stderr
    assert "shown this once" not in second.stderr
    again = create_application(second, token, name="again")
    assert again.status_code == 201, again.text
    assert_stopped_cleanly(second)
    assert key_file.read_text() == key_before


def test_serve_with_a_configured_operator_token_prints_none(
    workspace: Workspace, start_server: StartServer
) -> None:
    server = start_server("serve", env=workspace.env(TIDINGS_OPERATOR_TOKEN="mytoken"))
    assert "tdo_" not in server.stderr, server.stderr
    assert "shown this once" not in server.stderr

    created = create_application(server, "mytoken")
    assert created.status_code == 201, created.text
    assert create_application(server, "notmytoken").status_code == 401
    assert_stopped_cleanly(server)


def test_api_command_serves_healthz(workspace: Workspace, start_server: StartServer) -> None:
    server = start_server("api")
    with httpx.Client(base_url=server.base, timeout=10) as client:
        health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert_stopped_cleanly(server)


def test_serve_makes_an_encryption_key_file_beside_the_database(
    workspace: Workspace, start_server: StartServer
) -> None:
    # The database lives in a subdirectory, so "beside the database" differs from the cwd.
    data = workspace.root / "data"
    data.mkdir()
    ws = Workspace(workspace.root, data / "t.db")
    env = ws.env()
    assert "TIDINGS_ENCRYPTION_KEY" not in env

    server = start_server("serve", env=env)
    key_file = data / "tidings.key"
    assert key_file.is_file(), server.stderr
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip()
    assert not (workspace.root / "tidings.key").exists()
    assert_stopped_cleanly(server)
