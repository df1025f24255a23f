"""What every route needs, from `app.state`, as `Annotated` dependencies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

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
    # (`taker`, in the publish writer thread) and is handed them after the commit (`handoff`).
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
        )
        s = self.settings
        self.limiter = self.limiter or RateLimiter(s.api_rate_limit, s.api_rate_burst)
        self.operator_limiter = self.operator_limiter or RateLimiter(
            s.operator_rate_limit, max(s.api_rate_burst, s.operator_rate_limit * 2)
        )


async def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


Ctx = Annotated[Context, Depends(get_context)]
