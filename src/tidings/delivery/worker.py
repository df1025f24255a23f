"""The delivery worker: claim due deliveries, send them concurrently, record the outcomes.

Steps, each small and named: claim a batch (store.queue), sign and build the request
(domain.signing), make the call (delivery.sender), decide what next (domain.retry), record
(store.queue, in batches), and, now and then, release expired leases and disable webhooks
that have failed for days.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy import Connection

from tidings import __version__, metrics
from tidings.clock import Clock
from tidings.config import Settings
from tidings.crypto import SecretBox
from tidings.delivery.sender import Response, Sender
from tidings.domain import retry
from tidings.domain.catalog import envelope_json
from tidings.domain.signing import delivery_headers
from tidings.errors import Unavailable
from tidings.store import queue, retention
from tidings.store.db import Database
from tidings.store.webhooks import disable_webhook, live_secrets

log = logging.getLogger(__name__)
T = TypeVar("T")

# The labelled counters, looked up once rather than on every attempt.
_ATTEMPT_OK = metrics.ATTEMPTS.labels("success")
_ATTEMPT_FAILED = metrics.ATTEMPTS.labels("failure")
_FINISHED_OK = metrics.DELIVERIES_FINISHED.labels("succeeded")
_FINISHED_FAILED = metrics.DELIVERIES_FINISHED.labels("failed")

LEASE_MARGIN_S = 20.0
MAX_WEBHOOK_TIMEOUT_S = 30.0
CLAIM_BATCH = 200
POLL_INTERVAL_S = 0.1
DEEP_CLAIM_INTERVAL_S = 1.0
# The most a worker spaces two sends to a rate-limited webhook itself (`_spaced`); slower
# rates are kept by the slots the claim reserves.
SPACING_CAP_S = 1.0
# A send to a rate-limited webhook this late for its slot is given back, for a new slot.
LATE_SLOT_S = 0.05
# A PostgreSQL call in the loop that takes longer than this sends the worker's calls to a
# thread from then on (see `_db_write`).
SLOW_IN_LOOP_S = 0.1
RECORD_DELAY_S = 0.02  # how long finished attempts wait for a claim to record them
HOUSEKEEPING_INTERVAL_S = 5.0
PURGE_INTERVAL_S = 3600.0
PURGE_BATCHES_PER_RUN = 200  # at most 100,000 deliveries an hour from one worker


class Worker:
    """One worker; `tidings serve` runs one beside the API, `tidings worker` runs one alone."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        box: SecretBox,
        clock: Clock,
        *,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        poll_interval_s: float = POLL_INTERVAL_S,
        db_in_loop: bool | None = None,
    ) -> None:
        self.db = db
        # Claims and records on SQLite run right in the event loop, pausing it for their
        # millisecond or two: in a thread, the GIL passing back and forth between the two
        # cost more (drain, alternating runs: 290-410 µs of CPU per delivery in the loop
        # against 360-450 µs in a thread). On PostgreSQL, `tidings worker` runs them in its
        # loop too (the pg case, 13 alternating pairs: the two workers' CPU per delivery
        # 230 against 299 µs, median), and falls back to a thread if PostgreSQL turns slow
        # (`_db_write`); `tidings serve` keeps a thread, so that its API never waits for
        # PostgreSQL's round trips.
        self.db_in_loop = db.is_sqlite if db_in_loop is None else db_in_loop
        self.settings = settings
        self.box = box
        self.clock = clock
        self.host = socket.gethostname()
        self.worker_id = worker_id or f"{self.host}:{os.getpid()}:{id(self):x}"
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self.poll_interval_s = poll_interval_s
        self.concurrency = settings.worker_concurrency
        self.per_webhook = settings.webhook_concurrency or max(1, self.concurrency // 2)
        # Claimed deliveries wait here for a slot, so that a finished delivery's slot is
        # taken at once, without a database round trip: up to `concurrency` of them, and
        # per webhook up to `_claim_cap` in flight or waiting (below).
        self._ready: collections.deque[queue.Job] = collections.deque()
        # Per webhook, a claim waits for half its cap of room and holds up to two caps (in
        # flight or waiting). On PostgreSQL a claim waits for a whole cap and holds up to
        # three: twice the rows per claim, so half the statements per delivery
        # (bench/README.md, session 6). On SQLite, whose claims run in the event loop, a
        # claim that long holds up the sends meanwhile.
        caps = 2 if db.is_sqlite else 3
        self._batch_at = max(1, min(self.concurrency, self.per_webhook) * (caps - 1) // 2)
        self._claim_cap = caps * self.per_webhook
        # Long enough for a claimed delivery to wait for a slot behind the slowest attempts
        # (a webhook may have its own timeout) of the caps before it, then make its own; a
        # dead worker's deliveries come back after this.
        slowest = max(settings.timeout_s, MAX_WEBHOOK_TIMEOUT_S)
        self.lease_s = caps * slowest + LEASE_MARGIN_S
        self._busy: dict[str, int] = {}  # in flight, per webhook
        self._held: dict[str, int] = {}  # in flight or waiting in `_ready`, per webhook
        self._capped: set[str] = set()  # at their cap when a claim last came back short
        self._more_due = True  # the last claim got all it asked for
        self._last_deep = 0.0
        self._claimed_with: dict[str, int] = {}  # `_held` as the last claim counted it
        self._kept_webhooks = queue.KeptWebhooks()  # what claims read of webhooks, kept
        self._active_sender: Sender | None = None
        self._stopping = False
        self.handed_over = 0  # deliveries a publish gave this worker without a claim
        self._tasks: set[asyncio.Future[Any]] = set()
        self._secret_cache: dict[tuple[str, str, str | None], list[str]] = {}
        # Per rate-limited webhook, when this worker last sent to it (or will: monotonic).
        self._last_send: dict[str, float] = {}
        self._given_back: set[str] = set()  # deliveries late for their slot, given back once
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outcomes: list[queue.Outcome] = []
        self._outcomes_ready = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._slot_free = asyncio.Event()
        self._user_agent = f"Tidings/{__version__}"

    # -- waking up -------------------------------------------------------------------

    def wake(self) -> None:
        """Tell the worker there is new work; safe to call from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed in between
            loop.call_soon_threadsafe(self._wake.set)

    # -- the loop --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set, then finish what is in flight and give back the rest."""
        self._loop = asyncio.get_running_loop()
        log.info("worker %s started", self.worker_id)
        async with self._sender() as sender:
            flusher = asyncio.create_task(self._flush_forever())
            housekeeper = asyncio.create_task(self._housekeeping_forever())
            try:
                await self._claim_forever(sender, stop)
            finally:
                await self._drain(timeout_s=self.settings.timeout_s)
                housekeeper.cancel()
                flusher.cancel()
                await asyncio.gather(flusher, housekeeper, return_exceptions=True)
                await self._flush()
        log.info(
            "worker %s stopped; %d deliveries were handed over by publishes without a claim",
            self.worker_id,
            self.handed_over,
        )

    async def run_once(self) -> int:
        """Claim one batch, deliver it and record it (for tests and the CLI's one-shot)."""
        self._loop = asyncio.get_running_loop()
        async with self._sender() as sender:
            jobs = await self._claim(CLAIM_BATCH)
            await asyncio.gather(*(self._deliver(sender, job) for job in jobs))
            await self._flush()
            return len(jobs)

    def _sender(self) -> Sender:
        s = self.settings
        return Sender(
            timeout_s=s.timeout_s,
            allow_private=s.allow_private_targets,
            require_https=s.require_https,
            pool_size=s.worker_concurrency,
        )

    async def _claim_forever(self, sender: Sender, stop: asyncio.Event) -> None:
        self._active_sender = sender
        timed_out = True
        while not stop.is_set():
            self._slot_free.clear()  # before counting: a slot freed from now on wakes the wait
            if self._wake.is_set():  # new events: worth a claim as soon as there is room
                self._wake.clear()
                self._more_due = True
            room = 2 * self.concurrency - len(self._inflight) - len(self._ready)
            # Claim when a batch fits, when nothing is held, or when the poll interval passed;
            # not for every delivery that finishes (measured: a claim per delivery halved
            # the drain rate).
            if room > 0 and (room >= self._batch_at or not self._inflight or timed_out):
                limit = min(room, CLAIM_BATCH)
                try:
                    jobs = await self._claim(limit)
                except Unavailable as exc:
                    log.warning("cannot claim deliveries: %s", exc.__cause__ or exc)
                    await _wait_any(stop, seconds=1.0)
                    continue
                self._hold(jobs)
                self._more_due = len(jobs) == limit
                if self._more_due:
                    timed_out = True  # look again as soon as there is room
                    continue
                # Less came than asked: nothing more is due, or what is due is held back by
                # a per-webhook cap as the claim counted (deliveries went on finishing while
                # it ran). Look again at once if such a webhook has a batch of room by now;
                # otherwise when it has, when woken (new events), or after the poll interval
                # (retries come due).
                self._capped = self._capped_in_claim(jobs)
                if any(
                    self._held.get(w, 0) <= self._claim_cap - self._batch_at for w in self._capped
                ):
                    self._capped.clear()
                    timed_out = True
                    continue
            timed_out = not await _wait_any(
                stop, self._wake, self._slot_free, seconds=self.poll_interval_s
            )

    def _hold(self, jobs: Iterable[queue.Job]) -> None:
        """Queue leased deliveries for a slot (counted per webhook), and start what fits."""
        for job in jobs:
            webhook_id = _webhook_id(job)
            self._held[webhook_id] = self._held.get(webhook_id, 0) + 1
            self._ready.append(job)
        self._pump()

    def _pump(self) -> None:
        """Start waiting deliveries while slots are free, oldest first, skipping those whose
        webhook has its share in flight already.

        It stops as soon as every delivery still waiting belongs to such a webhook (`_held`
        less `_busy` is what waits, per webhook): a webhook at its cap with a cap's worth
        waiting used to be scanned through, job by job, at every finished delivery."""
        sender = self._active_sender
        if sender is None or not self._ready or len(self._inflight) >= self.concurrency:
            return
        busy, held = self._busy, self._held
        skipped: collections.deque[queue.Job] = collections.deque()
        blocked: set[str] = set()  # webhooks at their cap met so far
        blocked_waiting = 0  # their deliveries waiting, skipped or still in `_ready`
        while self._ready and len(self._inflight) < self.concurrency:
            job = self._ready.popleft()
            webhook_id = _webhook_id(job)
            in_flight = busy.get(webhook_id, 0)
            if in_flight >= self.per_webhook:
                skipped.append(job)
                if webhook_id not in blocked:
                    blocked.add(webhook_id)
                    blocked_waiting += held.get(webhook_id, 0) - in_flight
                if blocked_waiting - len(skipped) >= len(self._ready):
                    break  # all that is left waits for its webhook
                continue
            task = asyncio.create_task(self._deliver(sender, job))
            self._inflight[job.delivery_id] = task
            busy[webhook_id] = in_flight + 1
            fifo = job.webhook is not None and job.webhook.get("ordering") == "fifo"
            task.add_done_callback(functools.partial(self._done, job.delivery_id, webhook_id, fifo))
        if skipped:  # put the skipped ones back in front, in their order
            skipped.extend(self._ready)
            self._ready = skipped

    def _done(
        self, delivery_id: str, webhook_id: str, fifo: bool, _task: asyncio.Task[None]
    ) -> None:
        self._inflight.pop(delivery_id, None)
        _decrement(self._busy, webhook_id)
        held = _decrement(self._held, webhook_id)
        self._pump()
        if webhook_id in self._capped:
            if held > self._claim_cap - self._batch_at:
                return  # its freed room is of no use to a claim yet
            self._capped.discard(webhook_id)
            self._slot_free.set()
        elif self._more_due or fifo:  # a FIFO webhook's next delivery is due now
            self._slot_free.set()

    # -- new deliveries handed over by the API in the same process (`tidings serve`) --------

    def taker(self) -> _Taker | None:
        """For the publish writer thread: takes new deliveries that can start at once (slots
        free, the webhook under its cap), so they need no claim. None when not running."""
        if self._active_sender is None or self._stopping:
            return None
        return _Taker(self, self.concurrency - len(self._inflight) - len(self._ready))

    def accept(self, jobs: tuple[queue.Job, ...]) -> None:
        """Start the deliveries a publish leased to this worker (on the event loop)."""
        if self._stopping:  # too late to send them: give them back at once
            ids = [job.delivery_id for job in jobs]
            self._background(asyncio.to_thread(self._release, ids))
            return
        self._hold(jobs)
        self.handed_over += len(jobs)

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def busy(self, webhook_id: str) -> int:
        """Deliveries in flight to `webhook_id` (safe to read from another thread)."""
        return self._busy.get(webhook_id, 0)

    def _capped_in_claim(self, jobs: list[queue.Job]) -> set[str]:
        """The webhooks that were at their cap in the last claim's count."""
        counts = dict(self._claimed_with)
        for job in jobs:
            webhook_id = _webhook_id(job)
            counts[webhook_id] = counts.get(webhook_id, 0) + 1
        return {w for w, n in counts.items() if n >= self._claim_cap}

    async def _claim(self, limit: int) -> list[queue.Job]:
        now = self.clock.now()
        # While a webhook is at its cap, look past the claim window once a second, so other
        # webhooks' deliveries never wait long behind its backlog.
        deep = bool(self._capped) and now - self._last_deep >= DEEP_CLAIM_INTERVAL_S
        if deep:
            self._last_deep = now
        held = self._claimed_with = dict(self._held)
        # Outcomes waiting to be recorded go in the claim's transaction: one transaction
        # (and one turn of SQLite's write lock) instead of two.
        outcomes, self._outcomes = self._outcomes, []
        durable = _durable(outcomes)

        def claim(conn: Connection) -> list[queue.Job]:
            if outcomes:
                self._record_in(outcomes, conn)
            return queue.claim(
                conn,
                self.worker_id,
                self.clock.now(),
                self.lease_s,
                limit,
                busy=held,
                per_webhook=self._claim_cap,
                deep=deep,
                kept_webhooks=self._kept_webhooks,
            )

        try:
            return await self._db_write(claim, durable=durable)
        except BaseException:
            self._outcomes[:0] = outcomes  # not recorded: keep them for the next try
            raise

    async def _db_write(
        self, body: Callable[[Connection], T], *, durable: bool = True, defer: bool = False
    ) -> T:
        """A claim, a record or a give-back (`body`, in one write transaction): in the loop
        or in a thread (see `db_in_loop`).

        On SQLite in the loop, the loop runs the statements and a thread the COMMIT
        (`Database.write_in_loop`): the loop sends meanwhile. The loop's other writes that
        wait at the same time (in `serve`, a publish batch; a record beside a claim) share
        the transaction; a thread holding SQLite's write turn is waited for without
        stopping the loop. (A claim or record that waited for the turn in a thread,
        statements and all, fought the loop for the GIL at every statement and held the
        turn ~3x as long: fanout, 16-23 ms against 5-7 ms in the loop, median;
        bench/README.md, session 7.) `defer`: what `body` gives `db.at_commit` runs in that
        thread too (a record's rows)."""
        if self.db_in_loop and self.db.is_sqlite:
            return await self.db.write_in_loop(body, durable=durable, defer=defer)

        def write() -> T:
            with self.db.write(durable=durable) as conn:
                return body(conn)

        if self.db_in_loop:
            return self._in_loop_while_quick(write)
        return await asyncio.to_thread(write)

    def _in_loop_while_quick(self, fn: Callable[..., T], *args: Any) -> T:
        """A PostgreSQL call in the loop; one that took longer than SLOW_IN_LOOP_S (a loaded
        or distant server, a lock) sends every later call to a thread. The loop stands still
        while it waits: the sends meanwhile are only read afterwards, and an attempt whose
        timeout passed in that time counts as timed out."""
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            took = time.perf_counter() - started
            if took > SLOW_IN_LOOP_S:
                self.db_in_loop = False
                log.warning(
                    "a database call took %.2f s; this worker waits for PostgreSQL in a thread"
                    " from now on",
                    took,
                )

    # -- one delivery ------------------------------------------------------------------

    async def _deliver(self, sender: Sender, job: queue.Job) -> None:
        webhook = job.webhook
        if webhook is None or not webhook["enabled"]:
            reason = "the webhook was deleted" if webhook is None else "the webhook is disabled"
            await asyncio.to_thread(self._finish_without_sending, job.delivery_id, reason)
            return
        wait = job.not_before - self.clock.now()
        if wait > 0:  # a rate-limited webhook's slot, at most a second away
            await asyncio.sleep(wait)
        rate = webhook.get("rate_limit")
        if rate:
            late = self.clock.now() - job.not_before
            if job.not_before and late > LATE_SLOT_S and await self._give_back_late(job, late):
                return
            await self._spaced(webhook["id"], rate)
        now = self.clock.now()
        body = envelope_json(job.event_type, job.content_json, job.timestamp)
        headers = delivery_headers(
            delivery_id=job.delivery_id,
            timestamp=int(now),
            body=body,
            secrets=self._secrets(webhook, now),
            signature_header=self.settings.signature_header,
            user_agent=self._user_agent,
            custom=webhook["headers"],
        )
        response = await sender.post(webhook["url"], body, headers, webhook.get("timeout_s"))
        self._outcomes.append(self._decide(job, webhook["id"], now, headers, response))
        self._outcomes_ready.set()

    async def _give_back_late(self, job: queue.Job, late: float) -> bool:
        """Give back a delivery whose slot passed while this worker was held up (a stall, a
        busy machine), so that the next claim reserves it a new one. Slots are reserved for
        every worker on the webhook's row; sent late, it would land among the slots other
        workers send in (two workers, one stalled for a second: 40 sends in one second at a
        rate of 20). Once per delivery: if it comes back late again, it is sent. False means
        send it now: it was given back once already, or the database cannot be reached."""
        if job.delivery_id in self._given_back:
            self._given_back.discard(job.delivery_id)
            return False
        try:
            await self._db_write(functools.partial(self._release_in, [job.delivery_id]))
        except Unavailable:
            return False
        if len(self._given_back) >= 10_000:
            self._given_back.clear()
        self._given_back.add(job.delivery_id)
        log.info(
            "a delivery to a rate-limited webhook was %d ms late for its slot: given back for a"
            " new one",
            late * 1000,
            extra={"delivery_id": job.delivery_id, "webhook_id": _webhook_id(job)},
        )
        self._wake.set()  # the claim loop looks again at once
        return True

    async def _spaced(self, webhook_id: str, rate: float) -> None:
        """At least 1/rate seconds (at most SPACING_CAP_S) after this worker's previous send
        to the webhook. Slots are reserved at the claim; a worker that fell behind them (a
        stalled process, a busy machine) would otherwise send every slot that passed at once.
        Each send takes the next free time here before it waits, so sends that wake together
        go one by one. The gap follows the webhook's rate now, and the cap keeps a rate just
        lowered (whose slots the claim still spaces) from holding a delivery near its lease."""
        gap = min(1.0 / rate, SPACING_CAP_S)
        now = time.monotonic()
        at = max(now, self._last_send.get(webhook_id, now - gap) + gap)
        if len(self._last_send) >= 10_000:
            self._last_send.clear()
        self._last_send[webhook_id] = at
        if at > now:
            await asyncio.sleep(at - now)

    def _secrets(self, webhook: dict[str, Any], now: float) -> list[str]:
        """The webhook's live secrets, decrypted once per version rather than per delivery."""
        expires = webhook["previous_secret_expires_at"]
        live_previous = bool(webhook["previous_secret"]) and expires is not None and now < expires
        key = (
            webhook["id"],
            webhook["secret"],
            webhook["previous_secret"] if live_previous else None,
        )
        secrets = self._secret_cache.get(key)
        if secrets is None:
            if len(self._secret_cache) > 10_000:
                self._secret_cache.clear()
            secrets = live_secrets(webhook, self.box, now)
            self._secret_cache[key] = secrets
        return secrets

    def _decide(
        self,
        job: queue.Job,
        webhook_id: str,
        at: float,
        headers: dict[str, str],
        response: Response,
    ) -> queue.Outcome:
        succeeded = retry.is_success(response.status_code)
        next_at: float | None = None
        if not succeeded and response.status_code != 410:
            delay = retry.next_delay(
                job.attempt_count + 1,
                self.settings.retry_schedule,
                status_code=response.status_code,
                retry_after=response.retry_after,
                now=at,
                rng=self.rng,
            )
            next_at = None if delay is None else at + delay
        (_ATTEMPT_OK if succeeded else _ATTEMPT_FAILED).inc()
        metrics.ATTEMPT_SECONDS.observe(response.duration_ms / 1000)
        if succeeded or next_at is None:
            (_FINISHED_OK if succeeded else _FINISHED_FAILED).inc()
        if not succeeded:
            log.info(
                "attempt failed",
                extra={
                    "delivery_id": job.delivery_id,
                    "webhook_id": webhook_id,
                    "status_code": response.status_code,
                    "error": response.error,
                    "next_attempt_in_s": None if next_at is None else round(next_at - at, 1),
                },
            )
        return queue.Outcome(
            delivery_id=job.delivery_id,
            webhook_id=webhook_id,
            at=at,
            status_code=response.status_code,
            duration_ms=response.duration_ms,
            error=response.error,
            response_body=response.body,
            request_headers=headers,
            succeeded=succeeded,
            next_attempt_at=next_at,
        )

    def _finish_without_sending(self, delivery_id: str, reason: str) -> None:
        with self.db.write() as conn:
            queue.finish_without_sending(conn, delivery_id, reason, self.clock.now())

    # -- recording ---------------------------------------------------------------------

    async def _flush_forever(self) -> None:
        while True:
            await self._outcomes_ready.wait()
            # A claim made meanwhile records them in its own transaction; what is left after
            # this short wait is recorded alone.
            await asyncio.sleep(RECORD_DELAY_S)
            self._outcomes_ready.clear()
            try:
                await self._flush()
            except Unavailable as exc:
                log.warning("cannot record attempts yet: %s", exc.__cause__ or exc)
                await asyncio.sleep(0.5)
                self._outcomes_ready.set()

    async def _flush(self) -> None:
        batch, self._outcomes = self._outcomes, []
        if not batch:
            return
        try:
            await self._db_write(
                functools.partial(self._record_in, batch),
                durable=_durable(batch),
                defer=True,
            )
        except BaseException:
            self._outcomes[:0] = batch  # keep them for the next try
            raise

    def _record_in(self, batch: list[queue.Outcome], conn: Connection) -> None:
        now = self.clock.now()
        queue.record(conn, self.worker_id, batch, now, kept_webhooks=self._kept_webhooks)
        for outcome in batch:
            if outcome.status_code == 410:
                disable_webhook(conn, outcome.webhook_id, "the receiver answered 410 Gone", now)

    # -- housekeeping --------------------------------------------------------------------

    async def _housekeeping_forever(self) -> None:
        next_purge = 0.0
        while True:
            try:
                await asyncio.to_thread(self.housekeeping)
                if self.clock.now() >= next_purge:
                    next_purge = self.clock.now() + PURGE_INTERVAL_S
                    await asyncio.to_thread(self.purge, PURGE_BATCHES_PER_RUN)
            except Unavailable as exc:
                log.warning("housekeeping skipped: %s", exc.__cause__ or exc)
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)

    def purge(self, max_batches: int = 1_000_000) -> dict[str, int]:
        """Delete what is older than the retention period (finished deliveries, old events)."""
        now = self.clock.now()
        cutoff = now - self.settings.retention_days * 86400
        counts = retention.purge(self.db, cutoff, now, max_batches)
        if any(counts.values()):
            log.info("purged old data", extra=counts)
        return counts

    def housekeeping(self) -> None:
        """Release expired leases and those of dead workers on this machine; disable webhooks
        that have only failed for too long."""
        now = self.clock.now()
        with self.db.write() as conn:
            released = queue.release_expired(conn, now)
            released += queue.release_orphans(conn, self.host, _pid_alive, now)
            cutoff = now - self.settings.auto_disable_days * 86400
            for webhook in queue.webhooks_failing_since(conn, cutoff):
                days = self.settings.auto_disable_days
                reason = f"every delivery failed for {days:g} days"
                disable_webhook(conn, webhook["id"], reason, now)
        if released:
            log.warning("took back %d deliveries from workers that died", released)

    async def _drain(self, timeout_s: float) -> None:
        """Let in-flight deliveries finish (up to `timeout_s`), then give back the rest."""
        self._stopping = True
        waiting = [job.delivery_id for job in self._ready]
        self._ready.clear()
        if waiting:
            await asyncio.to_thread(self._release, waiting)
        inflight = dict(self._inflight)
        if not inflight:
            return
        _done, pending = await asyncio.wait(inflight.values(), timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        leftover = [d for d, task in inflight.items() if task in pending]
        if leftover:
            await asyncio.to_thread(self._release, leftover)

    def _release(self, delivery_ids: list[str]) -> None:
        with self.db.write() as conn:
            self._release_in(delivery_ids, conn)

    def _release_in(self, delivery_ids: list[str], conn: Connection) -> None:
        queue.release(conn, self.worker_id, delivery_ids, self.clock.now())


class _Taker:
    """One publish batch's share of a worker's free slots (see `Worker.taker`)."""

    def __init__(self, worker: Worker, room: int) -> None:
        self.worker_id = worker.worker_id
        self.lease_s = worker.lease_s
        self._worker = worker
        self._room = room
        self._taken: dict[str, int] = {}

    def take(self, webhook: dict[str, Any]) -> bool:
        webhook_id = webhook["id"]
        taken = self._taken.get(webhook_id, 0)
        if self._room <= 0 or self._worker.busy(webhook_id) + taken >= self._worker.per_webhook:
            return False
        self._taken[webhook_id] = taken + 1
        self._room -= 1
        return True


def _durable(outcomes: Iterable[queue.Outcome]) -> bool:
    """Whether recording `outcomes` must wait for the flush to disk: a 410 disables a
    webhook, which must not be lost; an attempt's record may (it is only sent again)."""
    return any(o.status_code == 410 for o in outcomes)


def _webhook_id(job: queue.Job) -> str:
    return job.webhook["id"] if job.webhook else ""


def _decrement(counts: dict[str, int], key: str) -> int:
    left = counts.get(key, 1) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
    return max(left, 0)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _wait_any(*events: asyncio.Event, seconds: float) -> bool:
    """Wait until any of `events` is set (True), or `seconds` have passed (False)."""
    if any(e.is_set() for e in events):
        return True
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        done, _ = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
    return bool(done)
