"""The delivery queue is the `deliveries` table: claim due rows, hold a lease, record attempts.

A row is due when `status = 'pending'` and `next_attempt_at <= now`. `claim()` moves a batch
to `delivering` with a lease in one `UPDATE … RETURNING` (on PostgreSQL the inner select
takes `FOR UPDATE SKIP LOCKED`, so workers never wait on each other; SQLite has one writer at
a time, by `BEGIN IMMEDIATE`). A worker that dies leaves its rows `delivering` with a lease
that runs out; `release_expired()` puts them back, and another worker takes them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, Integer, Text, bindparam, cast, func, insert, select, update
from sqlalchemy.orm import aliased

from tidings.domain.ids import new_id
from tidings.store.db import (
    PREPARED,
    Statements,
    at_commit,
    execute_many,
    in_list,
    not_in_list,
)
from tidings.store.tables import attempts, catalog_version, deliveries, events, webhooks


class Job(NamedTuple):
    """One claimed delivery with everything needed to send it (a tuple: cheap to make)."""

    delivery_id: str
    application_id: str
    attempt_count: int  # attempts made before this one
    event_type: str
    content_json: str  # the event's content as stored: JSON text, spliced into the body
    timestamp: int
    webhook: dict[str, Any] | None  # None when the webhook is gone
    not_before: float = 0.0  # a rate-limited webhook's slot: do not start before this

    @property
    def content(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.content_json)
        return value


class Outcome(NamedTuple):
    """What became of one attempt, and what to do next."""

    delivery_id: str
    webhook_id: str
    at: float
    status_code: int | None
    duration_ms: int
    error: str | None
    response_body: str | None
    request_headers: dict[str, str]
    succeeded: bool
    next_attempt_at: float | None  # None: finished (succeeded, or failed for good)


# The content column as its JSON text: the worker splices it into the body rather than
# decoding and encoding it again (`catalog.envelope_json`).
_CONTENT_TEXT = cast(events.c.content, Text).label("content_json")

# A worker ends a webhook's failing streak at most this often (`KeptWebhooks.streaks_to_end`):
# a streak that must last days before the webhook is disabled, so one second does not matter.
STREAK_RECHECK_S = 1.0
# A rate-limited webhook's deliveries are claimed at most this far ahead of their slot.
RATE_HORIZON_S = 1.0
_RETURNED = (
    deliveries.c.id,
    deliveries.c.application_id,
    deliveries.c.event_id,
    deliveries.c.webhook_id,
    deliveries.c.attempt_count,
)


# A claim looks for due deliveries among the oldest this many (plus what it asks for), so
# that leaving out webhooks at their cap never walks a backlog of millions; a `deep` claim
# (the worker makes one a second while a webhook is capped) looks at all of them, so no
# webhook waits behind another's backlog for long.
CLAIM_WINDOW = 1000


def claim(
    conn: Connection,
    worker_id: str,
    now: float,
    lease_s: float,
    limit: int,
    *,
    busy: Mapping[str, int] | None = None,
    per_webhook: int = 0,
    deep: bool = False,
    kept_webhooks: KeptWebhooks | None = None,
) -> list[Job]:
    """Lease up to `limit` due deliveries to `worker_id` and load what sending them needs.

    `busy` counts this worker's deliveries in flight per webhook; with `per_webhook` set, no
    webhook gets more than that many in flight, so one slow receiver cannot take every slot.
    FIFO webhooks give only their head; rate-limited ones only what fits in their next second.
    Candidates are chosen first (a SELECT; `FOR UPDATE SKIP LOCKED` on PostgreSQL), then only
    those kept are leased, in one UPDATE. `kept_webhooks` carries what was read of webhooks
    from one claim to the next (a worker's own).
    """
    hooks = kept_webhooks or KeptWebhooks()
    hooks.check(conn)
    counts = dict(busy or {})
    chosen: list[str] = []
    if hooks.any_fifo(conn):
        heads = _lock_for(conn.dialect.name, _fifo_heads(now, limit))
        chosen += [row.id for row in conn.execute(heads)]
    windowed = not deep
    # With caps, ask first for no more than the enabled webhooks can take: asking for more
    # locked rows it then left, and made the next round look through a window of rows that
    # all belonged to a webhook at its cap (one webhook, drained by two workers on
    # PostgreSQL: 2.3x the server's CPU per delivery). A deep claim asks as before, so rows
    # of other webhooks (disabled or deleted since) are found past them within a second.
    first_room = _takeable(conn, hooks, counts, per_webhook) if per_webhook and not deep else None
    for round_ in range(4):  # a webhook that reaches its cap is left out, and the rest looked at
        room = limit - len(chosen)
        if round_ == 0 and first_room is not None:
            room = min(room, first_room)
        if room <= 0:
            break
        saturated = [w for w, n in counts.items() if per_webhook and n >= per_webhook]
        shape = "plain" if not windowed or not saturated else "windowed"
        params = {"now": now, "limit": room, "saturated": saturated, "chosen": chosen}
        if shape == "windowed":
            params["window"] = CLAIM_WINDOW + limit
        rows = conn.execute(_due(conn.dialect.name, shape), params).all()
        kept = 0
        for row in rows:
            if per_webhook and counts.get(row.webhook_id, 0) >= per_webhook:
                continue
            counts[row.webhook_id] = counts.get(row.webhook_id, 0) + 1
            chosen.append(row.id)
            kept += 1
        if kept == len(rows):
            break
    claimed = _lease(conn, chosen, worker_id, now, lease_s)
    if not claimed:
        return []
    webhook_rows = hooks.by_id(conn, {row.webhook_id for row in claimed})
    slots = _rate_slots(conn, claimed, webhook_rows, now)
    claimed = [row for row in claimed if row.id in slots]
    # (type, content_json, timestamp) by event id; rows unpacked as tuples, which is a few
    # microseconds a delivery cheaper than reading them by attribute name.
    event_rows = {
        event_id: rest
        for event_id, *rest in conn.execute(
            _EVENTS_BY_ID, {"ids": list({r.event_id for r in claimed})}
        )
    }
    jobs = []
    for delivery_id, application_id, event_id, webhook_id, attempt_count in sorted(claimed):
        event_type, content_json, timestamp = event_rows[event_id]
        webhook = webhook_rows.get(webhook_id)
        jobs.append(
            Job(
                delivery_id,
                application_id,
                attempt_count,
                event_type,
                content_json,
                timestamp,
                webhook,
                slots[delivery_id],
            )
        )
    return jobs


# The claim's statements are built once, with bound parameters (lists bound at execution,
# `in_list`): building a statement and its cache key on every call was a third of a claim's
# time.
_FIFO_IDS = select(webhooks.c.id).where(webhooks.c.ordering == "fifo")
_FIFO_EXISTS = _FIFO_IDS.limit(1)
# The enabled webhooks without ordering, up to OPEN_WEBHOOKS_KEPT of them (see `_takeable`).
OPEN_WEBHOOKS_KEPT = 100
_OPEN_WEBHOOKS = (
    select(webhooks.c.id)
    .where(webhooks.c.enabled.is_(True), webhooks.c.ordering != "fifo")
    .limit(OPEN_WEBHOOKS_KEPT + 1)
)
_EVENTS_BY_ID = (
    select(events.c.id, events.c.type, _CONTENT_TEXT, events.c.timestamp)
    .where(in_list(events.c.id, "ids"))
    .execution_options(**PREPARED)
)
# What is kept of a webhook: all but what the worker keeps writing, which does not raise
# catalog_version (see KeptWhileCatalogStays).
KEPT_WEBHOOK_COLUMNS = tuple(
    c for c in webhooks.c if c.name not in ("failing_since", "rate_next_at")
)
_WEBHOOKS_BY_ID = (
    select(*KEPT_WEBHOOK_COLUMNS).where(in_list(webhooks.c.id, "ids")).execution_options(**PREPARED)
)
# catalog_version (migration 0006): raised with every change to applications, event types
# and webhooks but the worker's own writes, so what was read of them can be kept meanwhile.
CATALOG_VERSION = (
    select(catalog_version.c.version).where(catalog_version.c.id == 1).execution_options(**PREPARED)
)
_LEASE = (
    update(deliveries)
    .where(in_list(deliveries.c.id, "ids"), deliveries.c.status == "pending")
    .values(
        status="delivering",
        lease_expires_at=bindparam("lease_expires_at"),
        leased_by=bindparam("worker_id"),
        updated_at=bindparam("now"),
    )
    .returning(*_RETURNED)
    .execution_options(**PREPARED)
)


def _takeable(
    conn: Connection, hooks: KeptWebhooks, counts: Mapping[str, int], per_webhook: int
) -> int | None:
    """How many more deliveries the enabled unordered webhooks can take under their cap, or
    None when that is unknown (more of them than are kept) or there are none (then only
    deliveries of webhooks disabled or deleted since can be due, and they are not capped)."""
    open_ids = hooks.open_ids(conn)
    if not open_ids:
        return None
    held = sum(min(n, per_webhook) for w, n in counts.items() if w in open_ids)
    return per_webhook * len(open_ids) - held


def _lock_for(dialect: str, query: Any) -> Any:
    if dialect == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


@functools.cache
def _due(dialect: str, shape: str) -> Any:
    """Due deliveries of unordered webhooks, oldest first, leaving out the `saturated`
    webhooks and the deliveries `chosen` already (bound at execution with `now` and `limit`).
    `shape` "windowed" looks only among the oldest `window` due ones (read from the index
    alone on SQLite); "plain" among all of them, which is the same when nothing is left out.
    """
    due = (
        deliveries.c.status == "pending",
        deliveries.c.next_attempt_at <= bindparam("now"),
        deliveries.c.webhook_id.not_in(_FIFO_IDS.scalar_subquery()),
    )
    limit = bindparam("limit", type_=Integer)
    if shape == "plain":
        query = select(deliveries.c.id, deliveries.c.webhook_id).where(
            *due, *_left_out(deliveries.c)
        )
        return _lock_for(dialect, query.order_by(deliveries.c.next_attempt_at).limit(limit))
    oldest = (
        select(deliveries.c.id, deliveries.c.webhook_id, deliveries.c.next_attempt_at)
        .where(*due)
        .order_by(deliveries.c.next_attempt_at)
        .limit(bindparam("window", type_=Integer))
    )
    if dialect == "postgresql":  # rows are locked in the outer query, as chosen
        query = select(deliveries.c.id, deliveries.c.webhook_id).where(
            deliveries.c.id.in_(oldest.with_only_columns(deliveries.c.id).scalar_subquery()),
            deliveries.c.status == "pending",
            *_left_out(deliveries.c),
        )
        return _lock_for(dialect, query.order_by(deliveries.c.next_attempt_at).limit(limit))
    w = oldest.subquery()
    query = select(w.c.id, w.c.webhook_id).where(*_left_out(w.c))
    return query.order_by(w.c.next_attempt_at).limit(limit)


def _left_out(columns: Any) -> list[Any]:
    """Conditions leaving out saturated webhooks and deliveries chosen already (bound lists;
    an empty one leaves nothing out)."""
    return [
        not_in_list(columns.webhook_id, "saturated"),
        not_in_list(columns.id, "chosen"),
    ]


def _lease(
    conn: Connection, ids: list[str], worker_id: str, now: float, lease_s: float
) -> list[Any]:
    if not ids:
        return []
    params = {"ids": ids, "lease_expires_at": now + lease_s, "worker_id": worker_id, "now": now}
    return list(conn.execute(_LEASE, params).all())


def _fifo_heads(now: float, limit: int) -> Any:
    """The oldest unfinished delivery of each FIFO webhook, when it is pending and due."""
    head = aliased(deliveries)
    first_open = (
        select(func.min(head.c.id))
        .where(
            head.c.webhook_id == deliveries.c.webhook_id,
            head.c.status.in_(("pending", "delivering")),
        )
        .scalar_subquery()
    )
    fifo = select(webhooks.c.id).where(webhooks.c.ordering == "fifo").scalar_subquery()
    return (
        select(deliveries.c.id)
        .where(
            deliveries.c.webhook_id.in_(fifo),
            deliveries.c.status == "pending",
            deliveries.c.next_attempt_at <= now,
            deliveries.c.id == first_open,
        )
        .limit(limit)
    )


def _unclaim(conn: Connection, ids: list[str], due_at: float) -> None:
    """Give back claimed deliveries that may not start yet, due again at `due_at`."""
    conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(ids))
        .values(status="pending", lease_expires_at=None, leased_by=None, next_attempt_at=due_at)
    )


def _rate_slots(
    conn: Connection, claimed: list[Any], webhook_rows: dict[str, dict[str, Any]], now: float
) -> dict[str, float]:
    """When each claimed delivery may start. A rate-limited webhook's slots are reserved on
    its row, which every worker shares; what does not fit in the next second goes back."""
    slots = {row.id: 0.0 for row in claimed}
    by_webhook: dict[str, list[Any]] = {}
    for row in sorted(claimed, key=lambda r: r.id):
        hook = webhook_rows.get(row.webhook_id)
        if hook is not None and hook["rate_limit"]:
            by_webhook.setdefault(row.webhook_id, []).append(row)
    for webhook_id, rows in by_webhook.items():
        rate = float(webhook_rows[webhook_id]["rate_limit"])
        query = select(webhooks.c.rate_next_at).where(webhooks.c.id == webhook_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        start = max(conn.execute(query).scalar() or now, now)
        room = (
            int((now + RATE_HORIZON_S - start) * rate) + 1 if start <= now + RATE_HORIZON_S else 0
        )
        keep = rows[: max(0, room)]
        for i, row in enumerate(keep):
            slots[row.id] = start + i / rate
        next_free = start + len(keep) / rate
        conn.execute(
            update(webhooks).where(webhooks.c.id == webhook_id).values(rate_next_at=next_free)
        )
        later = [row.id for row in rows[len(keep) :]]
        if later:
            _unclaim(conn, later, next_free)
            for delivery_id in later:
                del slots[delivery_id]
    return slots


class KeptWhileCatalogStays:
    """What was read of applications, event types or webhooks, kept from one transaction to
    the next while `catalog_version` stays the same: triggers raise it with every change to
    those tables, from any process (migration 0006), but not with the worker's own writes
    (`failing_since`, `rate_next_at`, left out of what is kept). `check` first, in each
    transaction: it forgets everything when the version moved, when there is no version row
    (never after the migrations), or past `MAX_KEPT` entries. What is read after the check,
    in the same transaction, is never older than the version it is kept under. For one
    thread at a time."""

    MAX_KEPT = 10_000

    def __init__(self) -> None:
        self._version: int | None = None
        self.forget()

    def forget(self) -> None:
        raise NotImplementedError

    def kept(self) -> int:
        raise NotImplementedError

    def check(self, conn: Connection) -> None:
        version = conn.execute(CATALOG_VERSION).scalar()
        if version is None or version != self._version or self.kept() > self.MAX_KEPT:
            self.forget()
            self._version = version


class KeptWebhooks(KeptWhileCatalogStays):
    """Webhook rows by id, whether any webhook is FIFO, and the enabled unordered webhooks
    (`_takeable`), kept from one claim to the next: per claim, one small read instead of two
    (the FIFO check and the claimed deliveries' webhooks were 190 µs of a 32-delivery claim
    on SQLite)."""

    def forget(self) -> None:
        self._rows: dict[str, dict[str, Any]] = {}
        self._fifo: bool | None = None
        self._open: frozenset[str] | None = None
        self._open_read = False
        self._streak_ended: dict[str, float] = {}  # webhook id: when this worker ended it

    def streaks_to_end(self, ids: Iterable[str], now: float) -> list[str]:
        """Of webhooks that just had a success, those whose failing streak (`failing_since`)
        this worker has not ended within STREAK_RECHECK_S: for the rest it is unset, unless
        another worker's failure set it since, which the next recheck ends. Ending it at
        every record was one more statement per transaction."""
        due = [
            i for i in ids if now - self._streak_ended.get(i, -STREAK_RECHECK_S) >= STREAK_RECHECK_S
        ]
        self._streak_ended.update((i, now) for i in due)
        return due

    def streaks_may_start(self, ids: Iterable[str]) -> None:
        for webhook_id in ids:
            self._streak_ended.pop(webhook_id, None)

    def kept(self) -> int:
        return len(self._rows)

    def any_fifo(self, conn: Connection) -> bool:
        if self._fifo is None:
            self._fifo = conn.execute(_FIFO_EXISTS).first() is not None
        return self._fifo

    def open_ids(self, conn: Connection) -> frozenset[str] | None:
        """The enabled webhooks without ordering; None when there are more than
        OPEN_WEBHOOKS_KEPT of them."""
        if not self._open_read:
            ids = conn.execute(_OPEN_WEBHOOKS).scalars().all()
            self._open = frozenset(ids) if len(ids) <= OPEN_WEBHOOKS_KEPT else None
            self._open_read = True
        return self._open

    def by_id(self, conn: Connection, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted = set(ids)
        missing = [i for i in wanted if i not in self._rows]
        if missing:
            found = conn.execute(_WEBHOOKS_BY_ID, {"ids": missing}).mappings()
            self._rows.update((row["id"], dict(row)) for row in found)
        return {i: self._rows[i] for i in wanted if i in self._rows}


def record(
    conn: Connection,
    worker_id: str,
    outcomes: Sequence[Outcome],
    now: float,
    *,
    kept_webhooks: KeptWebhooks | None = None,
) -> int | None:
    """Store attempts and move each delivery on; returns how many were still ours to move
    (None when that is written at the commit, `db.at_commit`).

    An outcome whose lease was lost (another worker took the delivery) still records its
    attempt, for the log, but leaves the delivery's state to its new owner. With
    `kept_webhooks` (the worker's own), a webhook's failing streak is ended at most once per
    STREAK_RECHECK_S by this worker.
    """
    if not outcomes:
        return 0
    moved: list[int] = []
    at_commit(conn, lambda c: moved.append(_store_attempts(c, worker_id, outcomes, now)))
    _track_failing_streaks(conn, outcomes, now, kept_webhooks)
    return moved[0] if moved else None


def _store_attempts(
    conn: Statements, worker_id: str, outcomes: Sequence[Outcome], now: float
) -> int:
    execute_many(
        conn,
        _INSERT_ATTEMPT,
        [
            {
                "id": new_id("att", o.at),
                "delivery_id": o.delivery_id,
                "at": o.at,
                "status_code": o.status_code,
                "duration_ms": o.duration_ms,
                "error": o.error,
                "response_body": o.response_body,
                "request_headers": o.request_headers,
            }
            for o in outcomes
        ],
    )
    changed = execute_many(
        conn,
        deliveries,
        [
            {
                "b_id": o.delivery_id,
                "b_status": _status(o),
                "b_next": o.next_attempt_at,
                "b_code": o.status_code,
                "b_duration": o.duration_ms,
                "b_error": o.error,
                "b_at": o.at,
                "b_finished": None if o.next_attempt_at is not None else now,
            }
            for o in outcomes
        ],
        {"b_worker": worker_id, "b_now": now},
        pg_sql=_PG_RECORD,
        sqlite_sql=_SQLITE_RECORD,
    )
    return changed


_INSERT_ATTEMPT = insert(attempts)
# The record's UPDATE, all rows in one statement: on PostgreSQL they come as one JSON
# document; on SQLite as a VALUES list (`execute_many`), with the shared values as columns.
_RECORD = """
        UPDATE deliveries AS d SET
            status = v.b_status,
            attempt_count = d.attempt_count + 1,
            next_attempt_at = v.b_next,
            lease_expires_at = NULL,
            leased_by = NULL,
            last_status_code = v.b_code,
            last_duration_ms = v.b_duration,
            last_error = v.b_error,
            last_attempt_at = v.b_at,
            updated_at = {now},
            finished_at = v.b_finished
        FROM {rows}
        WHERE d.id = v.b_id AND d.status = 'delivering' AND d.leased_by = {worker}
"""
_PG_RECORD = _RECORD.format(
    now="%(b_now)s",
    worker="%(b_worker)s",
    rows="""json_to_recordset(%(rows)s::json) AS v(
            b_id varchar, b_status varchar, b_next float8, b_code int, b_duration int,
            b_error text, b_at float8, b_finished float8
        )""",
)
_SQLITE_RECORD = _RECORD.format(now="v.b_now", worker="v.b_worker", rows="{rows} AS v")
_STREAK_ENDED = (
    update(webhooks)
    .where(in_list(webhooks.c.id, "ids"), webhooks.c.failing_since.is_not(None))
    .values(failing_since=None)
    .execution_options(**PREPARED)
)
# A failing streak starts for every webhook that failed and had none: one statement, like
# the record (the driver's executemany let go of SQLite's GIL once per webhook).
_STREAK_STARTED = """
        UPDATE webhooks AS w SET failing_since = v.b_since
        FROM {rows}
        WHERE w.id = v.b_id AND w.failing_since IS NULL
"""
_PG_STREAK_STARTED = _STREAK_STARTED.format(
    rows="json_to_recordset(%(rows)s::json) AS v(b_id varchar, b_since float8)"
)
_SQLITE_STREAK_STARTED = _STREAK_STARTED.format(rows="{rows} AS v")


def _status(outcome: Outcome) -> str:
    if outcome.succeeded:
        return "succeeded"
    return "pending" if outcome.next_attempt_at is not None else "failed"


def _track_failing_streaks(
    conn: Connection, outcomes: Sequence[Outcome], now: float, kept: KeptWebhooks | None
) -> None:
    succeeded = {o.webhook_id for o in outcomes if o.succeeded}
    failing: dict[str, float] = {}
    for o in outcomes:
        if not o.succeeded and o.webhook_id not in succeeded:
            failing[o.webhook_id] = min(o.at, failing.get(o.webhook_id, o.at))
    ending = list(succeeded) if kept is None else kept.streaks_to_end(succeeded, now)
    if ending:
        conn.execute(_STREAK_ENDED, {"ids": ending})
    if failing:
        if kept is not None:
            kept.streaks_may_start(failing)
        execute_many(
            conn,
            webhooks,
            [{"b_id": k, "b_since": v} for k, v in failing.items()],
            pg_sql=_PG_STREAK_STARTED,
            sqlite_sql=_SQLITE_STREAK_STARTED,
        )


def finish_without_sending(conn: Connection, delivery_id: str, reason: str, now: float) -> None:
    """Fail a claimed delivery that must not be sent (its webhook is gone or disabled)."""
    conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id)
        .values(
            status="failed",
            next_attempt_at=None,
            lease_expires_at=None,
            leased_by=None,
            last_error=reason,
            updated_at=now,
            finished_at=now,
        )
    )


def release(conn: Connection, worker_id: str, delivery_ids: Sequence[str], now: float) -> int:
    """Give back claimed deliveries that were not attempted (a worker shutting down)."""
    if not delivery_ids:
        return 0
    result = conn.execute(
        update(deliveries)
        .where(
            deliveries.c.id.in_(list(delivery_ids)),
            deliveries.c.status == "delivering",
            deliveries.c.leased_by == worker_id,
        )
        .values(status="pending", lease_expires_at=None, leased_by=None, updated_at=now)
    )
    return int(result.rowcount)


def release_expired(conn: Connection, now: float) -> int:
    """Put deliveries whose worker's lease ran out back in the queue, due now."""
    result = conn.execute(
        update(deliveries)
        .where(deliveries.c.status == "delivering", deliveries.c.lease_expires_at < now)
        .values(
            status="pending",
            next_attempt_at=now,
            lease_expires_at=None,
            leased_by=None,
            updated_at=now,
        )
    )
    return int(result.rowcount)


def release_orphans(
    conn: Connection, host: str, is_alive: Callable[[int], bool], now: float
) -> int:
    """Release leases held by dead workers of this machine (worker ids are `host:pid:…`).

    A worker killed outright (`kill -9`, a power cut) leaves leases that would otherwise
    keep its deliveries waiting until they expire; on the same machine we can tell it died.
    """
    holders = conn.execute(
        select(deliveries.c.leased_by)
        .where(deliveries.c.status == "delivering", deliveries.c.leased_by.like(f"{host}:%"))
        .distinct()
    ).scalars()
    dead = []
    for holder in holders:
        pid_text = holder.split(":")[1] if holder.count(":") >= 2 else ""
        if pid_text.isdigit() and not is_alive(int(pid_text)):
            dead.append(holder)
    if not dead:
        return 0
    result = conn.execute(
        update(deliveries)
        .where(deliveries.c.status == "delivering", deliveries.c.leased_by.in_(dead))
        .values(
            status="pending",
            next_attempt_at=now,
            lease_expires_at=None,
            leased_by=None,
            updated_at=now,
        )
    )
    return int(result.rowcount)


def webhooks_failing_since(conn: Connection, before: float) -> list[dict[str, Any]]:
    """Enabled webhooks whose every attempt has failed since before `before`."""
    query = select(webhooks).where(
        webhooks.c.enabled.is_(True),
        webhooks.c.failing_since.is_not(None),
        webhooks.c.failing_since <= before,
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def fifo_block(conn: Connection, webhook_id: str) -> dict[str, Any] | None:
    """For a FIFO webhook: its head when that head failed and waits for a retry, with how
    many deliveries wait behind it; None when nothing is held up."""
    head_id = conn.execute(
        select(func.min(deliveries.c.id)).where(
            deliveries.c.webhook_id == webhook_id,
            deliveries.c.status.in_(("pending", "delivering")),
        )
    ).scalar()
    if head_id is None:
        return None
    head = conn.execute(select(deliveries).where(deliveries.c.id == head_id)).mappings().one()
    if head["status"] != "pending" or head["attempt_count"] == 0:
        return None
    waiting = conn.execute(
        select(func.count()).where(
            deliveries.c.webhook_id == webhook_id,
            deliveries.c.status == "pending",
            deliveries.c.id > head_id,
        )
    ).scalar_one()
    return {"head": dict(head), "waiting": int(waiting)}
