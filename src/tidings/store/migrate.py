"""Create or upgrade the schema with Alembic, safely from several processes at once."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_ID = 7_240_113  # any constant; serialises concurrent `migrate` runs on PostgreSQL


def alembic_config(conn: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision (a no-op when it is there already)."""
    with engine.connect() as conn:
        conn = conn.execution_options(tidings_write=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_ID})")
            command.upgrade(alembic_config(conn), "head")
    # SQLite reads the planner's figures (sqlite_stat1) when a connection opens: pooled
    # connections opened before a migration wrote them would plan without them.
    engine.dispose()


def is_current(engine: Engine) -> bool:
    """Whether the database is at the newest revision (for /readyz)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head
