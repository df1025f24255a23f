"""Identifiers (and a delivery's status) compare byte by byte on PostgreSQL: COLLATE "C".

With the database's own collation (en_US.UTF-8, C.UTF-8 and the like) every comparison in
the indexes on these columns went through the C library's strcoll: in a worker's claim and
record loop, about 9% of the server's CPU. The identifiers are ASCII, so their order does
not change; it is now the order SQLite has always used. SQLite is left as it is.

Only the collation changes, so PostgreSQL keeps the rows where they are and rebuilds the
indexes on these columns, under an exclusive lock (6.5 s with 1M deliveries on a 2-core
machine).
The trigger on `webhooks` (migration 0006) names its columns, so it is made again around
the change.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 07:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (table, ((column, length), ...)), as tables.py declares them at this revision
COLUMNS = (
    ("applications", (("id", 40),)),
    ("api_keys", (("id", 40), ("application_id", 40))),
    ("events", (("id", 40), ("application_id", 40))),
    ("users", (("id", 40), ("application_id", 40))),
    ("webhooks", (("id", 40), ("application_id", 40))),
    (
        "deliveries",
        (("id", 40), ("application_id", 40), ("event_id", 40), ("webhook_id", 40), ("status", 20)),
    ),
    ("sessions", (("user_id", 40),)),
    ("attempts", (("id", 40), ("delivery_id", 40))),
)
# As migration 0006 made it.
WEBHOOK_TRIGGER = (
    "CREATE CONSTRAINT TRIGGER tr_webhooks_catalog_version "
    "AFTER INSERT OR UPDATE OF id, application_id, url, name, events, enabled, "
    "disabled_reason, rate_limit, headers, ordering, secret, previous_secret, "
    "previous_secret_expires_at, timeout_s, created_at, updated_at OR DELETE ON webhooks "
    "DEFERRABLE INITIALLY DEFERRED "
    "FOR EACH ROW EXECUTE FUNCTION tidings_bump_catalog_version()"
)


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER tr_webhooks_catalog_version ON webhooks")
    for table, columns in COLUMNS:
        changes = ", ".join(
            f"ALTER COLUMN {name} TYPE varchar({length}) {collation}" for name, length in columns
        )
        op.execute(f"ALTER TABLE {table} {changes}")
    op.execute(WEBHOOK_TRIGGER)


def upgrade() -> None:
    _collate('COLLATE "C"')


def downgrade() -> None:
    _collate('COLLATE "default"')
