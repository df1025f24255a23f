"""Purging what is past its retention, in small batches that never hold the queue for long.

Only finished deliveries (succeeded or failed) older than the cutoff go, with their attempts;
then the events left without deliveries. Each batch is its own short transaction, and rows
are chosen by id through the indexes, so claims keep running between batches.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, exists, select

from tidings.store.db import Database
from tidings.store.sessions import purge_expired_sessions
from tidings.store.tables import attempts, deliveries, events, login_failures

BATCH = 500


def _purge_deliveries_batch(conn: Connection, cutoff: float) -> int:
    ids = list(
        conn.execute(
            select(deliveries.c.id)
            .where(
                deliveries.c.status.in_(("succeeded", "failed")),
                deliveries.c.finished_at < cutoff,
            )
            .limit(BATCH)
        ).scalars()
    )
    if not ids:
        return 0
    conn.execute(delete(attempts).where(attempts.c.delivery_id.in_(ids)))
    conn.execute(delete(deliveries).where(deliveries.c.id.in_(ids)))
    return len(ids)


def _purge_events_batch(conn: Connection, cutoff: float) -> int:
    orphan = ~exists().where(deliveries.c.event_id == events.c.id)
    ids = list(
        conn.execute(
            select(events.c.id).where(events.c.created_at < cutoff, orphan).limit(BATCH)
        ).scalars()
    )
    if ids:
        conn.execute(delete(events).where(events.c.id.in_(ids)))
    return len(ids)


def purge(db: Database, cutoff: float, now: float, max_batches: int = 1_000_000) -> dict[str, int]:
    """Delete finished deliveries (and attempts) and orphaned events older than `cutoff`."""
    counts = {"deliveries": 0, "events": 0}
    for key, step in (("deliveries", _purge_deliveries_batch), ("events", _purge_events_batch)):
        for _ in range(max_batches):
            with db.write() as conn:
                done = step(conn, cutoff)
            counts[key] += done
            if done < BATCH:
                break
    with db.write() as conn:
        purge_expired_sessions(conn, now)
        conn.execute(delete(login_failures).where(login_failures.c.window_start < now - 86400))
    return counts
