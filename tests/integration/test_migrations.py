"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from tidings.config import Settings
from tidings.store.db import make_engine
from tidings.store.migrate import is_current, upgrade
from tidings.store.tables import metadata


def test_migrations_match_the_tables(database_url: str) -> None:
    engine = make_engine(Settings(database_url=database_url).sqlalchemy_url)
    try:
        assert is_current(engine)
        upgrade(engine)  # a second run is a no-op
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), metadata
            )
        assert diff == []
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_identifiers_compare_bytewise_on_postgresql(database_url: str) -> None:
    """Migration 0007: COLLATE "C" on every identifier and on a delivery's status, and the
    webhooks trigger made again around the change (it names its columns)."""
    engine = make_engine(Settings(database_url=database_url).sqlalchemy_url)
    try:
        with engine.connect() as conn:
            collations = dict(
                conn.execute(
                    text(
                        "SELECT table_name || '.' || column_name, collation_name "
                        "FROM information_schema.columns WHERE table_schema = 'public' "
                        "AND table_name IN ('deliveries', 'attempts', 'webhooks', 'events')"
                    )
                ).all()
            )
            triggers = conn.execute(
                text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'webhooks'::regclass")
            ).scalars()
            assert "tr_webhooks_catalog_version" in set(triggers)
        for column in (
            "deliveries.id",
            "deliveries.status",
            "deliveries.webhook_id",
            "attempts.delivery_id",
            "webhooks.id",
            "events.id",
        ):
            assert collations[column] == "C", column
        assert collations["webhooks.url"] is None  # the database's own, as before
        assert collations["deliveries.event_type"] is None
    finally:
        engine.dispose()
