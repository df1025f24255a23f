"""A version number for what publishing reads: applications, event types and webhooks.

`catalog_version` holds one row. Triggers add 1 to it whenever any of those three tables
changes, whatever process or tool changes it. A webhook's `failing_since` and
`rate_next_at` are left out: the worker writes them all the time, and publishing does not
read them. The publish writer keeps what it read of the three tables from one batch to the
next while the number stays the same (`store.events.Catalog`). Reading them again was
300 to 490 µs of every batch.

A later migration that rebuilds one of these tables on SQLite (`batch_alter_table` copies it
into a new table) drops its triggers and must create them again:
`tests/integration/test_catalog_version.py` fails if one is missing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 03:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The webhook columns whose change matters to publishing (all but failing_since, rate_next_at).
WEBHOOK_COLUMNS = (
    "id, application_id, url, name, events, enabled, disabled_reason, rate_limit, headers, "
    "ordering, secret, previous_secret, previous_secret_expires_at, timeout_s, created_at, "
    "updated_at"
)
BUMP = "UPDATE catalog_version SET version = version + 1 WHERE id = 1"
# (table, UPDATE OF what: None for every column)
WATCHED = (("applications", None), ("event_types", None), ("webhooks", WEBHOOK_COLUMNS))


def upgrade() -> None:
    op.create_table(
        "catalog_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO catalog_version (id, version) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION tidings_bump_catalog_version() RETURNS trigger AS $$ "
            f"BEGIN {BUMP}; RETURN NULL; END $$ LANGUAGE plpgsql"
        )
        # Deferred to the commit: the version row is locked last, after every row the
        # transaction changed, so two transactions cannot wait for each other through it.
        for table, columns in WATCHED:
            update = f"UPDATE OF {columns}" if columns else "UPDATE"
            op.execute(
                f"CREATE CONSTRAINT TRIGGER tr_{table}_catalog_version "
                f"AFTER INSERT OR {update} OR DELETE ON {table} "
                "DEFERRABLE INITIALLY DEFERRED "
                "FOR EACH ROW EXECUTE FUNCTION tidings_bump_catalog_version()"
            )
        return
    for table, columns in WATCHED:
        for action in ("INSERT", "UPDATE", "DELETE"):
            on = f"UPDATE OF {columns}" if action == "UPDATE" and columns else action
            op.execute(
                f"CREATE TRIGGER tr_{table}_{action.lower()}_catalog_version "
                f"AFTER {on} ON {table} BEGIN {BUMP}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, _columns in WATCHED:
            op.execute(f"DROP TRIGGER tr_{table}_catalog_version ON {table}")
        op.execute("DROP FUNCTION tidings_bump_catalog_version()")
    else:
        for table, _columns in WATCHED:
            for action in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER tr_{table}_{action}_catalog_version")
    op.drop_table("catalog_version")
