"""The event catalog: read by anyone authenticated, extended by the operator."""

from __future__ import annotations

from fastapi import APIRouter

from tidings.api.auth import Caller, require_operator
from tidings.api.deps import Ctx
from tidings.api.problems import COMMON_ERRORS, responses
from tidings.api.schemas import EventTypeIn, EventTypeList, EventTypeOut
from tidings.domain.catalog import TEST_EVENT, WILDCARD, is_valid_type_name
from tidings.errors import InvalidInput
from tidings.store import events

router = APIRouter(
    prefix="/v1/event-types", tags=["event types"], responses=responses(*COMMON_ERRORS)
)


@router.get("", response_model=EventTypeList)
def list_event_types(caller: Caller, ctx: Ctx) -> EventTypeList:
    with ctx.db.read() as conn:
        known = events.known_event_types(conn)
    return EventTypeList(
        data=[EventTypeOut(name=n, description=d) for n, d in sorted(known.items())]
    )


@router.post("", status_code=201, response_model=EventTypeOut, responses=responses(400, 403, 409))
def add_event_type(body: EventTypeIn, caller: Caller, ctx: Ctx) -> EventTypeOut:
    require_operator(caller, "add event types")
    if body.name in (TEST_EVENT, WILDCARD) or not is_valid_type_name(body.name):
        raise InvalidInput(
            "an event type name is lowercase dotted words such as 'invoice.paid' "
            "(TEST_EVENT and * are reserved)"
        )
    with ctx.db.write() as conn:
        events.add_event_type(conn, body.name, body.description, ctx.clock.now())
    return EventTypeOut(name=body.name, description=body.description)
