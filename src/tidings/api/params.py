"""Query parameters shared by the list routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from tidings.domain.ids import is_id
from tidings.errors import InvalidInput

Limit = Annotated[int, Query(ge=1, le=250, description="Page size, 1 to 250.")]


def _cursor_query(prefix: str) -> object:
    # The pattern is documented only: `check_cursor` enforces it with a clearer message.
    return Query(
        max_length=64,
        description="next_cursor from the previous page.",
        json_schema_extra={"pattern": f"^{prefix}_[0-9A-HJKMNP-TV-Z]{{26}}$"},
    )


AppCursor = Annotated[str | None, _cursor_query("app")]
WebhookCursor = Annotated[str | None, _cursor_query("wh")]
DeliveryCursor = Annotated[str | None, _cursor_query("dlv")]


def check_cursor(cursor: str | None, prefix: str) -> None:
    if cursor is not None and not is_id(cursor, prefix):
        raise InvalidInput("cursor is not one this API returned; pass next_cursor as it came")
