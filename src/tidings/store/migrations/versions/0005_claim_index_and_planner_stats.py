"""The claim index covers what a claim reads; SQLite's planner is told the queue's shape.

`ix_deliveries_due` becomes (status, next_attempt_at, webhook_id, id), so choosing which due
deliveries to claim reads the index alone. On SQLite, `sqlite_stat1` gets figures for a
large deliveries table: without them the planner guessed that `status = ?` picks a few
rows and walked every pending delivery to update 16 of them by id (measured: 3.3 ms instead
of 0.3 ms with 10,000 pending). A later `ANALYZE` replaces them with real figures.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 22:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (index, stat): rows in the table, then rows per distinct prefix of the index's columns.
SQLITE_STATS = (
    (None, "1000000"),
    ("sqlite_autoindex_deliveries_1", "1000000 1"),
    ("ix_deliveries_due", "1000000 250000 2 2 1"),
    ("ix_deliveries_application_id_id", "1000000 10000 1"),
    ("ix_deliveries_webhook_id_id", "1000000 1000 1"),
    ("ix_deliveries_webhook_id_status_id", "1000000 1000 250 1"),
    ("ix_deliveries_event_id", "1000000 2"),
)


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_due")
        batch_op.create_index(
            "ix_deliveries_due", ["status", "next_attempt_at", "webhook_id", "id"], unique=False
        )
    if op.get_bind().dialect.name == "sqlite":
        write_sqlite_stats()


def write_sqlite_stats() -> None:
    op.execute("ANALYZE webhooks")  # creates sqlite_stat1 if it is not there yet
    op.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'deliveries'")
    stat1 = sa.table("sqlite_stat1", sa.column("tbl"), sa.column("idx"), sa.column("stat"))
    op.bulk_insert(
        stat1, [{"tbl": "deliveries", "idx": idx, "stat": stat} for idx, stat in SQLITE_STATS]
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'deliveries'")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_due")
        batch_op.create_index("ix_deliveries_due", ["status", "next_attempt_at"], unique=False)
