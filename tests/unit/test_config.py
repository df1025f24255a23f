"""Settings (tidings.config): defaults from DESIGN §5, the environment, derived values."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tidings.config import DEFAULT_RETRY_SCHEDULE, Settings

DESIGN_SCHEDULE = (10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 43200)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TIDINGS_* variable from the outside, and an empty working directory."""
    for name in list(os.environ):
        if name.upper().startswith("TIDINGS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------------------ defaults


def test_defaults_match_design() -> None:
    s = Settings()
    assert s.port == 8000
    assert s.timeout_s == 10
    assert s.database_url == "sqlite:///tidings.db"
    assert s.retry_schedule == DESIGN_SCHEDULE
    assert s.allow_private_targets is False
    assert s.require_https is False
    assert s.signature_header == "Tidings-Signature"
    assert s.webhooks_per_application == 10
    assert s.operator_token is None
    assert s.encryption_key is None


def test_default_schedule_constant_matches_design() -> None:
    assert DEFAULT_RETRY_SCHEDULE == DESIGN_SCHEDULE


def test_default_schedule_is_twelve_attempts_over_about_40_hours() -> None:
    assert len(DESIGN_SCHEDULE) + 1 == 12
    hours = sum(DESIGN_SCHEDULE) / 3600
    assert 38 < hours < 42
    # DESIGN §2: with ±20% jitter the whole span stays between one and two days' worth.
    assert hours * 0.8 >= 24 and hours * 1.2 <= 48


def test_default_is_sqlite() -> None:
    assert Settings().is_sqlite is True


# ----------------------------------------------------------------------------- environment


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("10,20,30", (10, 20, 30), id="plain"),
        pytest.param(" 5 , 15 ,45 ", (5, 15, 45), id="spaces-around-values"),
        pytest.param("7", (7,), id="one-value"),
        pytest.param("10,20,", (10, 20), id="trailing-comma"),
        pytest.param("1,1,1", (1, 1, 1), id="repeated-values"),
        pytest.param("3600,60", (3600, 60), id="not-increasing-is-allowed"),
        pytest.param(
            "10,60,300,900,1800,3600,7200,14400,28800,43200,43200", DESIGN_SCHEDULE, id="design"
        ),
    ],
)
def test_retry_schedule_from_env(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: tuple[int, ...]
) -> None:
    monkeypatch.setenv("TIDINGS_RETRY_SCHEDULE", raw)
    assert Settings().retry_schedule == expected


INVALID_SCHEDULES = [
    pytest.param("", id="empty"),
    pytest.param(" ", id="blank"),
    pytest.param(",", id="only-comma"),
    pytest.param("0", id="zero"),
    pytest.param("10,0,30", id="zero-in-the-middle"),
    pytest.param("10,-5", id="negative"),
    pytest.param("0.5", id="below-one-second"),
    pytest.param("abc", id="letters"),
    pytest.param("10,abc", id="letters-after-a-number"),
    pytest.param("10;20", id="semicolon-separator"),
    pytest.param("10 20", id="space-separator"),
    pytest.param("[10, 20]", id="json-list"),
    pytest.param("nan", id="nan"),
]


@pytest.mark.parametrize("raw", INVALID_SCHEDULES)
def test_invalid_retry_schedule_from_env_is_rejected(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("TIDINGS_RETRY_SCHEDULE", raw)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize("raw", ["10,inf", "10,1.5", "10,nan", "10,99999999999"])
def test_non_integer_or_huge_retry_schedule_is_a_validation_error(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("TIDINGS_RETRY_SCHEDULE", raw)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("10,20", (10, 20), id="string"),
        pytest.param([5, 6], (5, 6), id="list"),
        pytest.param((1,), (1,), id="tuple"),
    ],
)
def test_retry_schedule_from_arguments(value: object, expected: tuple[int, ...]) -> None:
    assert Settings(retry_schedule=value).retry_schedule == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [pytest.param([], id="empty-list"), pytest.param([10, 0], id="list-with-zero")],
)
def test_invalid_retry_schedule_from_arguments(value: object) -> None:
    with pytest.raises(ValidationError):
        Settings(retry_schedule=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "raw", "field", "expected"),
    [
        pytest.param("TIDINGS_PORT", "9000", "port", 9000, id="port"),
        pytest.param("TIDINGS_TIMEOUT_S", "2.5", "timeout_s", 2.5, id="timeout"),
        pytest.param("TIDINGS_HOST", "0.0.0.0", "host", "0.0.0.0", id="host"),
        pytest.param(
            "TIDINGS_DATABASE_URL",
            "postgresql://u:p@db/tidings",
            "database_url",
            "postgresql://u:p@db/tidings",
            id="database-url",
        ),
        pytest.param(
            "TIDINGS_ALLOW_PRIVATE_TARGETS",
            "true",
            "allow_private_targets",
            True,
            id="allow-private-true",
        ),
        pytest.param(
            "TIDINGS_ALLOW_PRIVATE_TARGETS",
            "1",
            "allow_private_targets",
            True,
            id="allow-private-1",
        ),
        pytest.param("TIDINGS_REQUIRE_HTTPS", "yes", "require_https", True, id="require-https-yes"),
        pytest.param(
            "TIDINGS_REQUIRE_HTTPS", "false", "require_https", False, id="require-https-false"
        ),
        pytest.param(
            "TIDINGS_SIGNATURE_HEADER",
            "X-Bank-Signature",
            "signature_header",
            "X-Bank-Signature",
            id="signature-header",
        ),
        pytest.param("TIDINGS_OPERATOR_TOKEN", "tok", "operator_token", "tok", id="operator-token"),
        pytest.param("TIDINGS_WORKER_CONCURRENCY", "8", "worker_concurrency", 8, id="concurrency"),
        pytest.param("tidings_port", "9001", "port", 9001, id="lowercase-variable-name"),
    ],
)
def test_settings_from_env(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, field: str, expected: object
) -> None:
    monkeypatch.setenv(name, raw)
    assert getattr(Settings(), field) == expected


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        pytest.param("TIDINGS_PORT", "0", id="port-0"),
        pytest.param("TIDINGS_PORT", "65536", id="port-65536"),
        pytest.param("TIDINGS_PORT", "http", id="port-not-a-number"),
        pytest.param("TIDINGS_TIMEOUT_S", "0", id="timeout-0"),
        pytest.param("TIDINGS_TIMEOUT_S", "-1", id="timeout-negative"),
        pytest.param("TIDINGS_WORKER_CONCURRENCY", "0", id="concurrency-0"),
        pytest.param("TIDINGS_ALLOW_PRIVATE_TARGETS", "maybe", id="allow-private-maybe"),
    ],
)
def test_invalid_env_values_are_rejected(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(ValidationError):
        Settings()


def test_unrelated_env_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "1234")
    monkeypatch.setenv("TIDINGS_NOT_A_SETTING", "x")
    assert Settings().port == 8000


# ------------------------------------------------------------------------------ sqlalchemy_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "postgresql://u:p@db:5432/tidings",
            "postgresql+psycopg://u:p@db:5432/tidings",
            id="postgresql://",
        ),
        pytest.param(
            "postgres://u:p@db/tidings", "postgresql+psycopg://u:p@db/tidings", id="postgres://"
        ),
        pytest.param(
            "postgresql:///tidings?host=/run/postgresql",
            "postgresql+psycopg:///tidings?host=/run/postgresql",
            id="postgresql-unix-socket",
        ),
        pytest.param(
            "postgresql+psycopg://u@db/t", "postgresql+psycopg://u@db/t", id="already-psycopg"
        ),
        pytest.param("sqlite:///tidings.db", "sqlite:///tidings.db", id="sqlite-relative"),
        pytest.param("sqlite:////var/lib/t.db", "sqlite:////var/lib/t.db", id="sqlite-absolute"),
        pytest.param("sqlite:///:memory:", "sqlite:///:memory:", id="sqlite-memory"),
    ],
)
def test_sqlalchemy_url(url: str, expected: str) -> None:
    assert Settings(database_url=url).sqlalchemy_url == expected


def test_sqlalchemy_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_DATABASE_URL", "postgres://u:p@db/t")
    s = Settings()
    assert s.sqlalchemy_url == "postgresql+psycopg://u:p@db/t"
    assert s.is_sqlite is False


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("sqlite:///tidings.db", True, id="sqlite"),
        pytest.param("sqlite+pysqlite:///t.db", True, id="sqlite+pysqlite"),
        pytest.param("postgresql://db/t", False, id="postgresql"),
        pytest.param("postgres://db/t", False, id="postgres"),
    ],
)
def test_is_sqlite(url: str, expected: bool) -> None:
    assert Settings(database_url=url).is_sqlite is expected


# ------------------------------------------------------------------------------------ key_file


def test_key_file_default_is_beside_tidings_db(clean_env: Path) -> None:
    assert Settings().key_file == clean_env.resolve() / "tidings.key"


@pytest.mark.parametrize(
    ("relative_db", "relative_key"),
    [
        pytest.param("tidings.db", "tidings.key", id="in-cwd"),
        pytest.param("data/tidings.db", "data/tidings.key", id="subdirectory"),
        pytest.param("a/b/other-name.sqlite", "a/b/tidings.key", id="nested-other-name"),
    ],
)
def test_key_file_beside_relative_sqlite_file(
    clean_env: Path, relative_db: str, relative_key: str
) -> None:
    s = Settings(database_url=f"sqlite:///{relative_db}")
    assert s.key_file == clean_env.resolve() / relative_key
    assert s.key_file.is_absolute()


def test_key_file_beside_absolute_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere").resolve()
    s = Settings(database_url=f"sqlite:///{elsewhere}/db/tidings.db")
    assert s.key_file == elsewhere / "db" / "tidings.key"


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("sqlite:///:memory:", id="sqlite-memory"),
        pytest.param("postgresql://u:p@db/tidings", id="postgresql"),
        pytest.param("postgres://u:p@db/tidings", id="postgres"),
    ],
)
def test_key_file_without_a_sqlite_file_is_in_cwd(clean_env: Path, url: str) -> None:
    assert Settings(database_url=url).key_file == clean_env.resolve() / "tidings.key"


# ------------------------------------------------------------------------ the CLI's help

# DESIGN §5: "Configuration comes from environment variables (and the same names as flags)".
DESIGN_SETTINGS = (
    "DATABASE_URL",
    "OPERATOR_TOKEN",
    "ENCRYPTION_KEY",
    "HOST",
    "PORT",
    "ALLOW_PRIVATE_TARGETS",
    "REQUIRE_HTTPS",
    "SIGNATURE_HEADER",
    "TIMEOUT_S",
    "RETRY_SCHEDULE",
    "WORKER_CONCURRENCY",
)


def _serve_options() -> dict[str, str]:
    """`tidings serve`'s flags by the TIDINGS_* variable their help names, with that help."""
    from typer.main import get_command

    from tidings import cli

    command: Any = get_command(cli.app)
    options: dict[str, str] = {}
    for param in command.commands["serve"].params:
        help_text = getattr(param, "help", None) or ""
        for name in re.findall(r"env: TIDINGS_(\w+)", help_text):
            options[name] = help_text
    return options


def test_every_design_setting_is_a_setting_and_a_flag_of_serve() -> None:
    options = _serve_options()
    for name in DESIGN_SETTINGS:
        assert name.lower() in Settings.model_fields, name
        assert name in options, name


def test_the_defaults_the_help_gives_are_the_settings_defaults() -> None:
    defaults = Settings()
    told = {
        name: re.search(r"; default ([^\]]+)\]", text) for name, text in _serve_options().items()
    }
    checked = 0
    for name, match in told.items():
        if match is not None:
            actual = getattr(defaults, name.lower())
            assert match.group(1) in (
                str(actual),
                f"{actual:g}" if isinstance(actual, float) else "",
            ), name
            checked += 1
    assert checked >= 5
