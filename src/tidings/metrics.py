"""Prometheus metrics: counters kept by each process, and queue gauges read from the database.

Counters and the latency histogram live in this process (the API counts what it accepts, a
worker what it sends); the queue's depth and age and the webhooks' failing streaks are read
from the database at scrape time, so any `/metrics` shows the whole queue.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from tidings.clock import Clock
from tidings.store.db import Database
from tidings.store.tables import deliveries, webhooks

EVENTS_PUBLISHED = Counter("tidings_events_published", "Events accepted for delivery.", ["type"])
DELIVERIES_CREATED = Counter("tidings_deliveries_created", "Deliveries created by fan-out.")
ATTEMPTS = Counter("tidings_attempts", "Delivery attempts made, by outcome.", ["outcome"])
DELIVERIES_FINISHED = Counter(
    "tidings_deliveries_finished", "Deliveries that reached a final state.", ["status"]
)
ATTEMPT_SECONDS = Histogram(
    "tidings_attempt_duration_seconds",
    "Time from request to response (or failure) of one attempt.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class QueueCollector(Collector):
    """Gauges computed from the `deliveries` and `webhooks` tables at scrape time."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock.now()
        with self.db.read() as conn:
            depth: dict[str, int] = dict(
                conn.execute(
                    select(deliveries.c.status, func.count())
                    .where(deliveries.c.status.in_(("pending", "delivering")))
                    .group_by(deliveries.c.status)
                ).all()
            )
            oldest = conn.execute(
                select(func.min(deliveries.c.created_at)).where(deliveries.c.status == "pending")
            ).scalar()
            lag = conn.execute(
                select(func.min(deliveries.c.next_attempt_at)).where(
                    deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now
                )
            ).scalar()
            failing = conn.execute(
                select(webhooks.c.id, webhooks.c.failing_since).where(
                    webhooks.c.failing_since.is_not(None), webhooks.c.enabled.is_(True)
                )
            ).all()
        queue = GaugeMetricFamily(
            "tidings_queue_depth", "Deliveries waiting or in flight.", labels=["status"]
        )
        for status in ("pending", "delivering"):
            queue.add_metric([status], float(depth.get(status, 0)))
        yield queue
        yield GaugeMetricFamily(
            "tidings_oldest_pending_age_seconds",
            "Age of the oldest delivery not yet delivered (0 when none).",
            value=0.0 if oldest is None else max(0.0, now - float(oldest)),
        )
        yield GaugeMetricFamily(
            "tidings_queue_lag_seconds",
            "How long the most overdue delivery has been due (0 when none is).",
            value=0.0 if lag is None else max(0.0, now - float(lag)),
        )
        streaks = GaugeMetricFamily(
            "tidings_webhook_failing_seconds",
            "Seconds since an enabled webhook's attempts started failing without a success.",
            labels=["webhook_id"],
        )
        for webhook_id, since in failing:
            streaks.add_metric([webhook_id], max(0.0, now - float(since)))
        yield streaks


def exposition(db: Database, clock: Clock) -> bytes:
    """The text for `/metrics`: this process's counters, then the queue's gauges."""
    queue = CollectorRegistry(auto_describe=False)
    queue.register(QueueCollector(db, clock))
    return generate_latest(REGISTRY) + generate_latest(queue)
