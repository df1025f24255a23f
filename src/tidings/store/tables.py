"""The schema, as SQLAlchemy Core tables. Alembic migrations under `migrations/` build it.

Times are stored as unix seconds (double precision): one representation on both databases,
cheap to compare in the queue's claim query, and easy to drive from an injected clock.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

# On PostgreSQL the id columns and a delivery's status are COLLATE "C" (migration 0007), so
# they compare byte by byte as on SQLite; under the database's locale every index comparison
# went through strcoll. Like migration 0005's planner figures for SQLite, this is left to the
# migrations (Alembic's comparison does not look at collations). Declared here, as a
# PostgreSQL variant of the type, it changed the requests the stateful API fuzz test
# generated, and that test then failed as flaky (bench/README.md, session 6).
ID = String(40)

meta = Table(
    "meta",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

applications = Table(
    "applications",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", Double, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", ID, primary_key=True),
    Column("application_id", ID, ForeignKey("applications.id"), nullable=False, index=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("role", String(20), nullable=False),
    Column("created_at", Double, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True),
    Column("application_id", ID, ForeignKey("applications.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", Double, nullable=False),
)

event_types = Table(
    "event_types",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("description", Text, nullable=False),
    Column("created_at", Double, nullable=False),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", ID, primary_key=True),
    Column("application_id", ID, ForeignKey("applications.id"), nullable=False, index=True),
    Column("url", String(2048), nullable=False),
    Column("name", String(200), nullable=True),
    Column("events", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("disabled_reason", Text, nullable=True),
    Column("rate_limit", Double, nullable=True),
    Column("headers", JSON, nullable=False),
    Column("ordering", String(20), nullable=False),
    Column("secret", Text, nullable=False),  # encrypted
    Column("previous_secret", Text, nullable=True),  # encrypted
    Column("previous_secret_expires_at", Double, nullable=True),
    # Start of the current run of failed attempts (None after a success): auto-disable.
    Column("failing_since", Double, nullable=True),
    # Seconds per attempt for this webhook (None: the server's TIDINGS_TIMEOUT_S).
    Column("timeout_s", Double, nullable=True),
    # With a rate limit: the earliest time the next delivery may start, shared by all workers.
    Column("rate_next_at", Double, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", ID, primary_key=True),
    Column("application_id", ID, ForeignKey("applications.id"), nullable=False),
    Column("type", String(100), nullable=False),
    Column("content", JSON, nullable=False),
    Column("timestamp", Integer, nullable=False),
    Column("idempotency_key", String(255), nullable=True),
    Column("request_hash", String(64), nullable=True),
    Column("delivery_count", Integer, nullable=False),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("application_id", "idempotency_key"),
    Index("ix_events_application_id_id", "application_id", "id"),
)

# One row: a number that triggers raise whenever applications, event types or webhooks
# change (migration 0006), so publishing and claims can keep what they read of them.
catalog_version = Table(
    "catalog_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

# The queue. A row is due when status is pending and next_attempt_at has passed; a worker
# claims it by setting status delivering and lease_expires_at.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", ID, primary_key=True),
    Column("application_id", ID, ForeignKey("applications.id"), nullable=False),
    Column("event_id", ID, ForeignKey("events.id"), nullable=False),
    # No foreign key: the log of a deleted webhook's deliveries stays readable.
    Column("webhook_id", ID, nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempt_count", Integer, nullable=False),
    Column("next_attempt_at", Double, nullable=True),
    Column("lease_expires_at", Double, nullable=True),
    Column("leased_by", String(100), nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_duration_ms", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_attempt_at", Double, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("finished_at", Double, nullable=True),
    # What a claim reads, all in the index: due (status, next_attempt_at), for which webhook.
    Index("ix_deliveries_due", "status", "next_attempt_at", "webhook_id", "id"),
    Index("ix_deliveries_application_id_id", "application_id", "id"),
    Index("ix_deliveries_webhook_id_id", "webhook_id", "id"),
    # The head of a FIFO webhook's queue: min(id) of its pending or delivering deliveries.
    Index("ix_deliveries_webhook_id_status_id", "webhook_id", "status", "id"),
    Index("ix_deliveries_event_id", "event_id"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("delivery_id", ID, ForeignKey("deliveries.id"), nullable=False),
    Column("at", Double, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("duration_ms", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("request_headers", JSON, nullable=False),
    Index("ix_attempts_delivery_id_at", "delivery_id", "at"),
)

# Dashboard sign-ins: the cookie holds a random token, the table only its hash.
sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
)

# Failed sign-ins per account and per client address, to slow down password guessing.
login_failures = Table(
    "login_failures",
    metadata,
    Column("key", String(400), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("window_start", Double, nullable=False),
    Column("blocked_until", Double, nullable=True),
)
