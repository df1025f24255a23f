"""Re-encrypting stored webhook secrets under a new encryption key."""

from __future__ import annotations

from sqlalchemy import Connection, select, update

from tidings.crypto import SecretBox
from tidings.store.tables import webhooks


def reencrypt_secrets(conn: Connection, box: SecretBox) -> int:
    """Encrypt every webhook secret again with the first configured key; returns how many."""
    rows = conn.execute(select(webhooks.c.id, webhooks.c.secret, webhooks.c.previous_secret)).all()
    for row in rows:
        conn.execute(
            update(webhooks)
            .where(webhooks.c.id == row.id)
            .values(
                secret=box.rotate(row.secret),
                previous_secret=box.rotate(row.previous_secret) if row.previous_secret else None,
            )
        )
    return len(rows)
