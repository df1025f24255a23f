"""What every route needs, from `app.state`, as `Annotated` dependencies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from tidings import metrics
from tidings.api.ratelimit import RateLimiter
from tidings.clock import Clock
from tidings.config import Settings
from tidings.crypto import SecretBox
from tidings.store import events
from tidings.store.db import Database
from tidings.store.events import Accepted, PublishRequest
from tidings.store.group_commit import GroupCommit
from tidings.store.queue import Job


@dataclass
class Context:
    settings: Settings
    db: Database
    box: SecretBox
    clock: Clock
    operator_token_hash: str | None = field(default=None)
    # Called after a commit that made deliveries due now (wakes an in-process worker).
    notify: Callable[[], None] = field(default=lambda: None)
    # An in-process worker (`tidings serve`) takes new deliveries as they are written
    # (`taker`, in the publish batch's transaction) and is handed them after its commit
    # (`handoff`, in the loop, see `published`).
    taker: Callable[[], events.Taker | None] = field(default=lambda: None)
    handoff: Callable[[tuple[Job, ...]], None] = field(default=lambda _jobs: None)
    limiter: RateLimiter | None = None
    operator_limiter: RateLimiter | None = None
    # Publishes are written in batches by one thread, or by `serve`'s loop on SQLite (see
    # store.group_commit).
    publishes: GroupCommit[PublishRequest, Accepted] = field(init=False)

    def __post_init__(self) -> None:
        # One batch at a time uses it: the writer thread's, or in `serve` on SQLite the
        # loop's, under the same write turn (store.group_commit).
        catalog = events.Catalog()
        self.publishes = GroupCommit(
            self.db,
            lambda conn, requests: events.publish_many(
                conn, requests, self.clock.now(), self.taker(), catalog
            ),
            lambda conn, request: events.publish(conn, request, self.clock.now()),
            name="publish-writer",
            committed=self.published,
        )
        s = self.settings
        self.limiter = self.limiter or RateLimiter(s.api_rate_limit, s.api_rate_burst)
        self.operator_limiter = self.operator_limiter or RateLimiter(
            s.operator_rate_limit, max(s.api_rate_burst, s.operator_rate_limit * 2)
        )

    def published(self, accepted: Accepted) -> None:
        """After the commit of a publish, in the loop, even if its client went away: count
        it, hand the deliveries leased in its transaction to the worker of this process
        (otherwise they would wait for their lease to expire), wake it for the others."""
        if not accepted.created:  # an Idempotency-Key replay: nothing new
            return
        event = accepted.event
        metrics.EVENTS_PUBLISHED.labels(event["type"]).inc()
        metrics.DELIVERIES_CREATED.inc(event["delivery_count"])
        if accepted.jobs:
            self.handoff(accepted.jobs)
        if event["delivery_count"] > len(accepted.jobs):
            self.notify()


async def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


Ctx = Annotated[Context, Depends(get_context)]
