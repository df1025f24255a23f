"""Group commit: many small writes from concurrent requests share one transaction.

Publishing one event on its own cost 1.8 ms of database work (two transactions, nine
statements, each ~0.1 ms of SQLAlchemy), behind SQLite's single writer: about 550 events/s
at best, and 200/s once 32 request threads fought over the write lock and the GIL. Here one
thread owns the writes: it takes every request waiting (up to `max_batch`), writes them all
with a handful of statements (`write_many`) in one transaction, commits once, and answers
each. Nothing waits on purpose: while one batch commits the next gathers, so a lone request
is written at once and a crowd is written together.

A request is answered only after the commit that holds it, so a 202 still means the event
is on disk. If the shared transaction fails on a data error (a concurrent request took the
same unique key first), each request of that batch is retried alone with `write_one`, so
one request cannot fail its neighbours; an unavailable database fails the whole batch.

In `tidings serve` on SQLite (`write_in_loop`), the requests of one event loop are written in
that loop instead, by one task: those submitted before the loop comes round again are one
batch (taking turns in the loop with the worker's claims and records). The driver
lets go of the GIL around every step of SQLite, so a writer thread beside a busy loop
waited for the GIL back at each of the ~10 steps of a batch (a batch of 14-17 publishes took
5.0 ms there, against 1.35 ms for 28 in `tidings api`), and every hand-over of the GIL cost
a context switch. Without it, `serve` used 2-25% less CPU per e2e delivery (set against
the ceiling's, seven alternating pairs, each lower; fanout: lower in four pairs of six;
bench/README.md, session 8). The loop runs a batch's statements; its COMMIT, one step
that needs no GIL, runs in a thread (`Database.write_committed_in_thread`), and the
requests that come meanwhile are the next batch: e2e's median ratio rose 9-17% in two
series of ten alternating pairs, better in 14 of 20 (bench/README.md, session 12). Since
session 14 a batch goes through `Database.write_in_loop`, whose transaction may carry the
worker's claim or record beside it; a batch that fails there is written one publish at a
time in the loop too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Connection

from tidings.errors import Conflict, InvalidInput
from tidings.store.db import Database

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 256


@dataclass
class _Pending(Generic[T, R]):
    item: T
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[R]


class GroupCommit(Generic[T, R]):
    """One writer thread (or one event loop) that commits what concurrent callers `submit`,
    in batches."""

    def __init__(
        self,
        db: Database,
        write_many: Callable[[Connection, Sequence[T]], Sequence[R | Exception]],
        write_one: Callable[[Connection, T], R],
        *,
        max_batch: int = MAX_BATCH,
        name: str = "group-commit",
        committed: Callable[[R], None] | None = None,
    ) -> None:
        self.db = db
        self.write_many = write_many
        self.write_one = write_one
        # Called with each committed result in its caller's loop, before the caller is
        # answered, and even when the caller went away meanwhile (a cancelled request).
        self.committed = committed
        self.max_batch = max_batch
        self.name = name
        self.batches = 0  # how many transactions, for tests and benchmarks
        self._queue: queue.SimpleQueue[_Pending[T, R] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None  # see `write_in_loop`
        self._gathered: list[_Pending[T, R]] = []  # submitted in that loop, not yet written
        self._loop_writer: asyncio.Task[None] | None = None  # writes them, while there are

    def write_in_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Write what is submitted in `loop` in that loop, rather than in the writer thread
        (None: every submit goes to the thread again). Only for SQLite, whose writes are
        short and local; a loop waiting for PostgreSQL would stop for every round trip."""
        self._loop = loop

    async def submit(self, item: T) -> R:
        """Write `item` in the next batch; returns its result once committed, or raises."""
        loop = asyncio.get_running_loop()
        pending: _Pending[T, R] = _Pending(item, loop, loop.create_future())
        if loop is self._loop:
            self._gathered.append(pending)
            if self._loop_writer is None:  # it starts after this turn of the loop
                self._loop_writer = loop.create_task(self._write_gathered())
        else:
            self._to_thread(pending)
        return await pending.future

    def _to_thread(self, pending: _Pending[T, R]) -> None:
        self._ensure_started()
        self._queue.put(pending)

    async def _write_gathered(self) -> None:
        """In the loop: write what its requests submitted since the last batch, as one batch
        (or several of `max_batch`), until none is left. The write turn is waited for
        without stopping the loop: behind the loop's other writes (the worker's claims and
        records, which may share the batch's transaction), and behind a thread of this
        process (see `Database.write_in_loop`). (Another process holding SQLite's lock is
        waited for in the loop, up to the busy timeout, as the worker's claims do.)"""
        try:
            while self._gathered:
                batch, self._gathered = self._gathered, []
                for start in range(0, len(batch), self.max_batch):
                    part = batch[start : start + self.max_batch]
                    results = await self._write_committed_in_thread(part)
                    _settle(list(zip(part, results, strict=True)), self.committed)
        finally:
            self._loop_writer = None

    async def finish_in_loop(self) -> None:
        """Stop writing in the loop (see `write_in_loop`), once what it gathered is written."""
        self.write_in_loop(None)
        writer = self._loop_writer
        if writer is not None:
            await asyncio.shield(writer)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what was submitted, then stop the thread (a later `submit` starts another)."""
        with self._start_lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
                thread.join(timeout_s)

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[_Pending[T, R]] = []
            while len(batch) < self.max_batch:
                try:  # wait for the first request only
                    pending = self._queue.get_nowait() if batch or stopping else self._queue.get()
                except queue.Empty:
                    break
                if pending is None:
                    stopping = True
                    continue  # still write what came before, and what is left behind it
                batch.append(pending)
            if batch:
                _answer(batch, self._write(batch), self.committed)

    def _write(self, batch: list[_Pending[T, R]]) -> Sequence[R | BaseException]:
        items = [p.item for p in batch]
        try:
            with self.db.write() as conn:
                results = self.write_many(conn, items)
            self.batches += 1
            return results
        except Exception as exc:
            if not self._each_alone(items, exc):
                return [exc] * len(items)
            return [self._write_alone(item) for item in items]

    async def _write_committed_in_thread(
        self, batch: list[_Pending[T, R]]
    ) -> Sequence[R | BaseException]:
        """`_write`, in the loop but for the COMMIT (`Database.write_in_loop`, which may
        write the worker's claims and records in the same transaction)."""
        items = [p.item for p in batch]
        try:
            results = await self.db.write_in_loop(
                lambda conn: self.write_many(conn, items), defer=True
            )
            self.batches += 1
            return results
        except Exception as exc:
            if not self._each_alone(items, exc):
                return [exc] * len(items)
            return [await self._write_alone_in_loop(item) for item in items]

    def _each_alone(self, items: list[T], exc: Exception) -> bool:
        """Whether to write each of a failed batch's `items` alone: when one of them may be
        what failed (a data error). Otherwise the database is unavailable, or it is a bug:
        everyone is answered with `exc`."""
        if isinstance(exc, Conflict | InvalidInput) and len(items) > 1:
            log.info("a batch of %d writes failed (%s); writing each alone", len(items), exc)
            return True
        return False

    def _write_alone(self, item: T) -> R | BaseException:
        try:
            with self.db.write() as conn:
                result = self.write_one(conn, item)
            self.batches += 1
            return result
        except Exception as exc:
            return exc

    async def _write_alone_in_loop(self, item: T) -> R | BaseException:
        try:
            result = await self.db.write_in_loop(lambda conn: self.write_one(conn, item))
            self.batches += 1
            return result
        except Exception as exc:
            return exc


def _answer(
    batch: list[_Pending[T, R]],
    results: Sequence[R | BaseException],
    committed: Callable[[R], None] | None,
) -> None:
    """Settle each caller's future in its own loop: one wake-up per loop for the whole batch,
    not one per request."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending[T, R], R | BaseException]]] = {}
    for pending, result in zip(batch, results, strict=True):
        by_loop.setdefault(pending.loop, []).append((pending, result))
    for loop, answers in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, answers, committed)


def _settle(
    answers: list[tuple[_Pending[T, R], R | BaseException]],
    committed: Callable[[R], None] | None,
) -> None:
    for pending, result in answers:
        if not isinstance(result, BaseException) and committed is not None:
            try:
                committed(result)
            except Exception:  # written all the same: its caller is answered below
                log.exception("after a commit")
        if pending.future.done():  # the caller went away (its request was cancelled)
            continue
        if isinstance(result, BaseException):
            pending.future.set_exception(result)
        else:
            pending.future.set_result(result)
