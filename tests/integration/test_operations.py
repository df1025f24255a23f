"""Operations: /metrics, retention purge, orphaned leases, structured logs."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time

import pytest
from sqlalchemy import func, select, update

from tests.integration.conftest import Api, make_settings
from tests.support.receiver import Receiver
from tidings.clock import ManualClock
from tidings.config import Settings
from tidings.delivery.worker import Worker
from tidings.logs import JsonFormatter
from tidings.store import queue
from tidings.store.tables import attempts, deliveries, events


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=time.time())


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, allow_private_targets=True, timeout_s=1.0)


def worker_for(api: Api, clock: ManualClock) -> Worker:
    ctx = api.context
    return Worker(ctx.db, ctx.settings, ctx.box, clock, worker_id="w", rng=random.Random(1))


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = (
        re.escape(name)
        + (re.escape("{" + labels + "}") if labels else r"(\{\})?")
        + r" ([0-9.e+-]+)"
    )
    match = re.search("^" + pattern + "$", text, re.MULTILINE)
    assert match, f"{name}{{{labels}}} not in metrics"
    return float(match.group(2) if match.lastindex == 2 else match.group(1))


def test_metrics_report_queue_depth_age_and_counters(
    api: Api, receiver: Receiver, clock: ManualClock
) -> None:
    before = api.client.get("/metrics").text
    published_before = (
        metric(before, "tidings_events_published_total", 'type="item.created"')
        if 'tidings_events_published_total{type="item.created"}' in before
        else 0.0
    )
    api.create_webhook(url=receiver.url("/ok"), events=["*"])
    failing = api.create_webhook(url=receiver.url("/fail"), events=["item.deleted"])
    for _ in range(3):
        api.publish("item.created")
    api.publish("item.deleted")
    clock.advance(30)
    text = api.client.get("/metrics").text
    assert api.client.get("/metrics").headers["content-type"].startswith("text/plain")
    assert metric(text, "tidings_queue_depth", 'status="pending"') == 5
    assert metric(text, "tidings_oldest_pending_age_seconds") == pytest.approx(30, abs=1)
    assert metric(text, "tidings_queue_lag_seconds") == pytest.approx(30, abs=1)
    assert (
        metric(text, "tidings_events_published_total", 'type="item.created"')
        == published_before + 3
    )
    asyncio.run(worker_for(api, clock).run_once())
    text = api.client.get("/metrics").text
    assert metric(text, "tidings_queue_depth", 'status="pending"') == 1  # the failed one waits
    assert metric(text, "tidings_webhook_failing_seconds", f'webhook_id="{failing["id"]}"') >= 0
    assert "tidings_attempt_duration_seconds_bucket" in text
    assert 'tidings_attempts_total{outcome="success"}' in text


def test_purge_deletes_only_old_finished_deliveries_and_orphaned_events(
    api: Api, receiver: Receiver, clock: ManualClock
) -> None:
    api.create_webhook(url=receiver.url("/ok"), events=["*"])
    api.publish("item.created", {"old": True})
    worker = worker_for(api, clock)
    asyncio.run(worker.run_once())  # old and delivered
    api.publish("item.created", {"old": "but pending"})
    with api.context.db.write() as conn:  # keep this one waiting far in the future
        conn.execute(
            update(deliveries)
            .where(deliveries.c.status == "pending")
            .values(next_attempt_at=clock.now() + 10**9)
        )
    clock.advance(31 * 86400)
    api.context.clock = clock
    api.publish("item.created", {"old": False})
    asyncio.run(worker.run_once())
    counts = worker.purge()
    assert counts == {"deliveries": 1, "events": 1}
    with api.context.db.read() as conn:
        left = conn.execute(
            select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
        ).all()
        assert dict(left) == {"pending": 1, "succeeded": 1}
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 2
        assert conn.execute(select(func.count()).select_from(attempts)).scalar_one() == 1
    assert worker.purge() == {"deliveries": 0, "events": 0}


def test_leases_of_a_dead_worker_on_this_machine_are_taken_back(
    api: Api, clock: ManualClock
) -> None:
    api.create_webhook(events=["*"])
    for _ in range(3):
        api.publish("item.created")
    with api.context.db.write() as conn:
        queue.claim(conn, "thishost:999999:abc", clock.now(), 30, 2)  # a pid that is not running
        queue.claim(conn, "thishost:1:abc", clock.now(), 30, 1)  # pid 1 is alive
        queue.claim(conn, "otherhost:999999:abc", clock.now(), 30, 5)
        released = queue.release_orphans(conn, "thishost", lambda pid: pid == 1, clock.now())
    assert released == 2
    with api.context.db.read() as conn:
        by_holder = dict(
            conn.execute(
                select(deliveries.c.leased_by, func.count()).group_by(deliveries.c.leased_by)
            ).all()
        )
    assert by_holder == {None: 2, "thishost:1:abc": 1}


def test_json_logs_carry_the_delivery_id(
    api: Api, receiver: Receiver, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    api.create_webhook(url=receiver.url("/fail"), events=["*"])
    api.publish("item.created")
    with caplog.at_level(logging.INFO, logger="tidings.delivery.worker"):
        asyncio.run(worker_for(api, clock).run_once())
    (record,) = [r for r in caplog.records if r.getMessage() == "attempt failed"]
    line = json.loads(JsonFormatter().format(record))
    delivery_id = api.call("GET", f"/v1/applications/{api.app_id}/deliveries", api.admin).json()[
        "data"
    ][0]["id"]
    assert line["delivery_id"] == delivery_id
    assert (
        line["status_code"] == 500
        and line["level"] == "info"
        and line["message"] == "attempt failed"
    )
