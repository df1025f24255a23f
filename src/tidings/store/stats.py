"""Numbers for the dashboard: success rates and the last 24 hours of attempts per webhook."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, and_, case, func, select

from tidings.store.tables import attempts, deliveries

DAY_S = 24 * 3600
MAX_ATTEMPTS_CHARTED = 100_000


@dataclass(frozen=True)
class Rate:
    attempts: int
    succeeded: int

    @property
    def percent(self) -> float | None:
        return None if self.attempts == 0 else 100.0 * self.succeeded / self.attempts


def _ok() -> object:
    return case((and_(attempts.c.status_code >= 200, attempts.c.status_code < 300), 1), else_=0)


def success_rates(conn: Connection, app_id: str, now: float) -> dict[str, Rate]:
    """Per webhook of the application: attempts in the last 24 hours and how many were 2xx."""
    query = (
        select(deliveries.c.webhook_id, func.count(), func.sum(_ok()))
        .select_from(attempts.join(deliveries, deliveries.c.id == attempts.c.delivery_id))
        .where(deliveries.c.application_id == app_id, attempts.c.at >= now - DAY_S)
        .group_by(deliveries.c.webhook_id)
    )
    return {wh: Rate(int(n), int(ok or 0)) for wh, n, ok in conn.execute(query)}


def recent_attempts(
    conn: Connection, webhook_id: str, now: float
) -> list[tuple[float, int | None, int]]:
    """(at, status_code, duration_ms) of the webhook's attempts in the last 24 hours."""
    query = (
        select(attempts.c.at, attempts.c.status_code, attempts.c.duration_ms)
        .select_from(attempts.join(deliveries, deliveries.c.id == attempts.c.delivery_id))
        .where(deliveries.c.webhook_id == webhook_id, attempts.c.at >= now - DAY_S)
        .limit(MAX_ATTEMPTS_CHARTED)
    )
    return [(float(a), c, int(d)) for a, c, d in conn.execute(query)]
