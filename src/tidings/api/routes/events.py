"""Publishing events: the operator's side of Tidings."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

from fastapi import APIRouter, Header, Response

from tidings.api.auth import Caller, require_operator
from tidings.api.deps import Context, Ctx
from tidings.api.problems import COMMON_ERRORS, responses
from tidings.api.schemas import EventAccepted, EventIn
from tidings.domain.catalog import TEST_EVENT
from tidings.errors import InvalidInput
from tidings.store import events

router = APIRouter(
    prefix="/v1/applications/{app_id}/events", tags=["events"], responses=responses(*COMMON_ERRORS)
)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="The same key again returns the first answer and creates nothing.",
    ),
]


def request_hash(body: EventIn, idempotency_key: str | None) -> str | None:
    """What a replay under the same Idempotency-Key must match. None without a key: an event
    published without one is never looked up again (and hashing was ~3% of a publish)."""
    if idempotency_key is None:
        return None
    canonical = json.dumps([body.type, body.content], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@router.post(
    "",
    status_code=202,
    response_model=EventAccepted,
    responses=responses(400, 403, 404, 409),
)
async def publish(
    app_id: str,
    body: EventIn,
    caller: Caller,
    ctx: Ctx,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> EventAccepted:
    require_operator(caller, "publish events")
    if body.type == TEST_EVENT:
        raise InvalidInput("TEST_EVENT is sent only by 'send a test' on one webhook")
    if idempotency_key is not None and not idempotency_key.strip():
        raise InvalidInput("Idempotency-Key must not be blank")
    accepted = await submit(ctx, app_id, body, idempotency_key)
    if not accepted.created:
        response.headers["Idempotent-Replayed"] = "true"
    event = accepted.event
    return EventAccepted(id=event["id"], type=event["type"], deliveries=event["delivery_count"])


async def submit(
    ctx: Context, app_id: str, body: EventIn, idempotency_key: str | None
) -> events.Accepted:
    """Write the event; answered once committed (`Context.published` has then counted it
    and passed its deliveries on)."""
    request = events.PublishRequest(
        app_id, body.type, body.content, idempotency_key, request_hash(body, idempotency_key)
    )
    return await ctx.publishes.submit(request)
