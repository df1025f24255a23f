"""Settings: the only module that reads the environment (`TIDINGS_*`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_RETRY_SCHEDULE = (10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 43200)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIDINGS_", extra="ignore")

    database_url: str = "sqlite:///tidings.db"
    # PostgreSQL: prepare the queue's hot statements on each connection. Off behind a
    # connection pooler in transaction mode (PgBouncer before 1.21), which cannot keep them.
    database_prepared_statements: bool = True
    operator_token: str | None = None
    encryption_key: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    allow_private_targets: bool = False
    require_https: bool = False
    signature_header: str = "Tidings-Signature"
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    retry_schedule: Annotated[tuple[Annotated[int, Field(gt=0, le=30 * 86400)], ...], NoDecode] = (
        DEFAULT_RETRY_SCHEDULE
    )
    worker_concurrency: int = Field(default=128, ge=1, le=10_000)
    # Deliveries in flight to one webhook from one worker (0: half of worker_concurrency).
    webhook_concurrency: int = Field(default=0, ge=0, le=10_000)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    webhooks_per_application: int = Field(default=10, ge=1)
    auto_disable_days: float = Field(default=5.0, gt=0)
    retention_days: float = Field(default=30.0, gt=0)
    # Requests a second per API key or dashboard user (0: unlimited), and the burst allowed.
    api_rate_limit: float = Field(default=100.0, ge=0)
    api_rate_burst: float = Field(default=200.0, ge=1)
    operator_rate_limit: float = Field(default=0.0, ge=0)
    run_worker: bool = True  # `tidings serve` runs a worker in-process; `tidings api` does not

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @field_validator("retry_schedule")
    @classmethod
    def _check_schedule(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(v <= 0 for v in value):
            raise ValueError("TIDINGS_RETRY_SCHEDULE is a comma-separated list of positive seconds")
        return value

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with the driver we ship (psycopg 3 for PostgreSQL)."""
        url = self.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def key_file(self) -> Path:
        """Where a generated encryption key is kept: beside the SQLite file, else in `.`."""
        if self.is_sqlite:
            path = self.database_url.split("///", 1)[-1]
            if path and path != ":memory:":
                return Path(path).resolve().parent / "tidings.key"
        return Path("tidings.key").resolve()


def log_format() -> str:
    """`TIDINGS_LOG_FORMAT`: `text` (default) or `json`. Read before any command's settings."""
    value = os.environ.get("TIDINGS_LOG_FORMAT", "text").strip().lower()
    return value if value in ("text", "json") else "text"
