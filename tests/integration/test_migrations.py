"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

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
