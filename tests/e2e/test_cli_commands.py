"""End to end: the one-shot `tidings` commands, run as real subprocesses on a SQLite file."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.e2e.helpers import Workspace, assert_readable_failure
from tidings import __version__

APP_ID = re.compile(r"\bapp_[0-9A-Z]{26}\b")
EVENT_ID = re.compile(r"\bevt_[0-9A-Z]{26}\b")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, str]]:
    """A migrated workspace shared by this module, with one application `Shop`."""
    root = tmp_path_factory.mktemp("shop")
    ws = Workspace(root, root / "t.db")
    app_id = ws.ok("apps", "create", "Shop", "-q").stdout.strip()
    assert APP_ID.fullmatch(app_id), app_id
    yield ws, app_id


# 1. version and help


def test_version_prints_the_version(workspace: Workspace) -> None:
    result = workspace.run("--version")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert result.stdout.strip() == f"tidings {__version__}"
    assert not workspace.db_path.exists()


def test_help_lists_the_commands(workspace: Workspace) -> None:
    result = workspace.ok("--help")
    for command in ("serve", "api", "migrate", "apps", "keys", "users", "publish"):
        assert re.search(rf"\b{command}\b", result.stdout), (command, result.stdout)
    assert not workspace.db_path.exists()


def test_python_dash_m_tidings_help(workspace: Workspace) -> None:
    result = workspace.run("--help", module=True)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "publish" in result.stdout
    assert "serve" in result.stdout


# 2. migrate


def test_migrate_creates_the_database_and_can_run_twice(workspace: Workspace) -> None:
    assert not workspace.db_path.exists()
    first = workspace.ok("migrate")
    assert workspace.db_path.is_file()
    assert "up to date" in first.stdout + first.stderr
    assert "NOT up to date" not in first.stdout + first.stderr

    second = workspace.ok("migrate")
    assert "up to date" in second.stdout + second.stderr
    assert "NOT up to date" not in second.stdout + second.stderr


# 3. apps, keys, users


def test_apps_create_quiet_prints_only_the_id(workspace: Workspace) -> None:
    result = workspace.ok("apps", "create", "Shop", "-q")
    assert APP_ID.fullmatch(result.stdout.strip()), result.stdout
    assert len(result.stdout.strip().splitlines()) == 1


def test_apps_create_prints_a_human_line(workspace: Workspace) -> None:
    result = workspace.ok("apps", "create", "Shop")
    match = APP_ID.search(result.stdout)
    assert match, result.stdout
    assert "Shop" in result.stdout
    assert "Created application" in result.stdout
    assert f"tidings keys create {match.group()}" in result.stdout


def test_keys_create_quiet_prints_the_key(shop: tuple[Workspace, str]) -> None:
    ws, app_id = shop
    result = ws.ok("keys", "create", app_id, "--role", "admin", "-q")
    key = result.stdout.strip()
    assert key.startswith("tdk_"), result.stdout
    assert len(key.splitlines()) == 1
    assert len(key) > len("tdk_") + 20


def test_keys_create_with_role_owner_fails_readably(shop: tuple[Workspace, str]) -> None:
    ws, app_id = shop
    result = ws.run("keys", "create", app_id, "--role", "owner")
    assert_readable_failure(result, "role")
    assert "tdk_" not in result.stdout


def test_keys_create_for_an_unknown_app_fails_readably(shop: tuple[Workspace, str]) -> None:
    ws, _ = shop
    result = ws.run("keys", "create", "app_00000000000000000000000000", "--role", "admin")
    assert_readable_failure(result, "app_00000000000000000000000000")
    assert "tdk_" not in result.stdout


def test_users_create_then_duplicate_email_fails_readably(shop: tuple[Workspace, str]) -> None:
    ws, app_id = shop
    args = ("users", "create", app_id, "a@b.co", "--role", "admin", "--password", "longenough1")
    created = ws.ok(*args)
    assert "a@b.co" in created.stdout
    assert "usr_" in created.stdout

    again = ws.run(*args)
    assert_readable_failure(again, "a@b.co")


def test_users_create_with_a_short_password_fails_readably(shop: tuple[Workspace, str]) -> None:
    ws, app_id = shop
    result = ws.run(
        "users", "create", app_id, "short@b.co", "--role", "admin", "--password", "short"
    )
    assert_readable_failure(result, "password")


def test_users_create_for_an_unknown_app_fails_readably(shop: tuple[Workspace, str]) -> None:
    ws, _ = shop
    result = ws.run(
        "users",
        "create",
        "app_00000000000000000000000000",
        "x@b.co",
        "--password",
        "longenough1",
    )
    assert_readable_failure(result, "app_00000000000000000000000000")


# 4. publish


def test_publish_prints_the_event_id_and_zero_webhooks(shop: tuple[Workspace, str]) -> None:
    ws, app_id = shop
    result = ws.ok("publish", app_id, "item.created", '{"a":1}')
    assert EVENT_ID.search(result.stdout), result.stdout
    assert "0 webhook(s)" in result.stdout
    assert "replayed" not in result.stdout


def test_publish_quiet_prints_only_the_event_id(shop: tuple[Workspace, str]) -> None:
    ws, app_id = shop
    result = ws.ok("publish", app_id, "item.created", '{"a":1}', "-q")
    assert EVENT_ID.fullmatch(result.stdout.strip()), result.stdout


@pytest.mark.parametrize(
    ("event_type", "content", "needle"),
    [
        pytest.param("item.created", '{"a":', "JSON", id="invalid-json"),
        pytest.param("item.created", "[1, 2]", "content", id="json-array"),
        pytest.param("no.such.type", "{}", "no.such.type", id="unknown-type"),
        pytest.param("TEST_EVENT", "{}", "TEST_EVENT", id="test-event"),
    ],
)
def test_publish_refuses_bad_input_readably(
    shop: tuple[Workspace, str], event_type: str, content: str, needle: str
) -> None:
    ws, app_id = shop
    result = ws.run("publish", app_id, event_type, content)
    assert_readable_failure(result, needle)
    assert not EVENT_ID.search(result.stdout), result.stdout


def test_publish_to_an_unknown_app_fails_readably(shop: tuple[Workspace, str]) -> None:
    ws, _ = shop
    result = ws.run("publish", "app_00000000000000000000000000", "item.created", "{}")
    assert_readable_failure(result, "app_00000000000000000000000000")


def test_publish_with_an_idempotency_key_replays_the_second_time(
    shop: tuple[Workspace, str],
) -> None:
    ws, app_id = shop
    args = ("publish", app_id, "item.created", '{"a":1}', "--idempotency-key", "k")
    first = ws.ok(*args)
    assert "replayed" not in first.stdout
    first_id = EVENT_ID.search(first.stdout)
    assert first_id, first.stdout

    second = ws.ok(*args)
    assert "replayed" in second.stdout
    second_id = EVENT_ID.search(second.stdout)
    assert second_id, second.stdout
    assert second_id.group() == first_id.group()


def test_rotate_key_reencrypts_secrets_under_the_new_key(workspace) -> None:
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    env_old = workspace.env(TIDINGS_ENCRYPTION_KEY=old)
    app_id = workspace.run("apps", "create", "Shop", "-q", env=env_old).stdout.strip()
    # A webhook needs the API; store one through the library with the old key.
    from tidings.api.schemas import WebhookIn
    from tidings.crypto import SecretBox
    from tidings.store import webhooks
    from tidings.store.db import Database

    db = Database.from_url(f"sqlite:///{workspace.db_path}")
    with db.write() as conn:
        body = WebhookIn(url="https://h.example.com", events=["*"])
        row = webhooks.create_webhook(
            conn,
            app_id,
            body.model_dump(),
            "whsec_" + "A" * 43 + "=",
            SecretBox(old),
            limit=10,
            now=1.0,
        )
    result = workspace.run("rotate-key", env=workspace.env(TIDINGS_ENCRYPTION_KEY=f"{new},{old}"))
    assert result.returncode == 0, result.stderr
    assert "1 webhook(s)" in result.stdout
    with db.read() as conn:
        stored = webhooks.get_webhook(conn, app_id, row["id"])
    db.dispose()
    assert SecretBox(new).decrypt(stored["secret"]) == "whsec_" + "A" * 43 + "="


def test_webhooks_create_list_update(workspace) -> None:
    app_id = workspace.ok("apps", "create", "Shop", "-q").stdout.strip()
    created = workspace.ok(
        "webhooks",
        "create",
        app_id,
        "https://hooks.example.com/in",
        "--event",
        "item.created",
        "--name",
        "Orders",
        "--rate-limit",
        "5",
        "--header",
        "X-Team: pay",
    )
    assert "whsec_" in created.stdout
    listed = workspace.ok("webhooks", "list", app_id).stdout
    assert "Orders" in listed and "rate_limit=5.0" in listed and "enabled" in listed
    webhook_id = listed.split()[0]
    updated = workspace.ok(
        "webhooks", "update", app_id, webhook_id, "--disable", "--ordering", "fifo"
    ).stdout
    assert "DISABLED" in updated and "fifo" in updated
    refused = workspace.run("webhooks", "create", app_id, "http://127.0.0.1/x", "--event", "*")
    assert_readable_failure(refused, "loopback")
    bad_header = workspace.run(
        "webhooks", "create", app_id, "https://h.example.com", "--event", "*", "--header", "nocolon"
    )
    assert_readable_failure(bad_header, "Name: value")
