"""Cursor pagination over sortable ids: `?limit=&cursor=` → `{data, next_cursor}`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Connection, Select


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None


def fetch_page(
    conn: Connection,
    query: Select[Any],
    id_column: Column[str],
    *,
    limit: int,
    cursor: str | None,
    newest_first: bool,
) -> Page:
    """One page of `query`, ordered by id; the cursor is the last id of the previous page."""
    if cursor is not None:
        query = query.where(id_column < cursor if newest_first else id_column > cursor)
    order = id_column.desc() if newest_first else id_column.asc()
    rows = [dict(r) for r in conn.execute(query.order_by(order).limit(limit + 1)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1]["id"] if more and rows else None)
