"""Event types, the delivery envelope and the test event."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

TEST_EVENT = "TEST_EVENT"
WEBHOOK_DISABLED = "webhook.disabled"
WILDCARD = "*"

DEFAULT_EVENT_TYPES: dict[str, str] = {
    "user.deleted": "A user was deleted, with everything attached to them.",
    "item.created": "A user connected a new item (a link to an institution).",
    "item.refreshed": "An item's data was refreshed from the institution.",
    "item.deleted": "An item was deleted.",
    "item.account.created": "A new account appeared on an item.",
    "item.account.updated": "An account's details or balance changed.",
    "item.account.deleted": "An account disappeared from an item.",
    "payment.transaction.created": "A payment transaction was created.",
    "payment.transaction.updated": "A payment transaction changed status.",
    "payment.link.updated": "A payment link changed status.",
    WEBHOOK_DISABLED: "Tidings disabled one of this application's webhooks (operational).",
}

# Lowercase dotted words, like the defaults; an operator adds types in the same shape.
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
MAX_TYPE_LENGTH = 100


def is_valid_type_name(name: str) -> bool:
    return len(name) <= MAX_TYPE_LENGTH and _TYPE_RE.fullmatch(name) is not None


def subscription_problem(events: list[str], known: Iterable[str]) -> str | None:
    """Why `events` is not a valid subscription, or None when it is."""
    if not events:
        return 'events must name at least one event type, or be ["*"] for all of them'
    if WILDCARD in events:
        return None if events == [WILDCARD] else '"*" subscribes to everything; list it alone'
    if TEST_EVENT in events:
        return "TEST_EVENT cannot be subscribed to: it is sent only by 'send a test'"
    catalog = set(known)
    unknown = [e for e in events if e not in catalog]
    if unknown:
        return f"unknown event type(s): {', '.join(sorted(set(unknown)))}; see GET /v1/event-types"
    if len(set(events)) != len(events):
        return "events lists a type more than once"
    return None


def subscribes(events: Iterable[str], event_type: str) -> bool:
    """Whether a webhook subscribed to `events` receives `event_type`."""
    if event_type == TEST_EVENT:
        return False
    return any(e in (WILDCARD, event_type) for e in events)


def envelope(event_type: str, content: Mapping[str, Any], timestamp: int) -> dict[str, Any]:
    """The body of every delivery, exactly these three keys."""
    return {"content": dict(content), "timestamp": timestamp, "type": event_type}


def compact_json(value: Any) -> str:
    """Compact UTF-8 JSON, as bodies are sent and JSON columns stored: orjson (~10x faster
    than `json` for a 1 KB body), or `json` for an integer beyond 64 bits, which orjson
    does not write (the output is the same either way)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def envelope_body(event_type: str, content: Mapping[str, Any], timestamp: int) -> bytes:
    """The exact bytes that are sent and signed: compact JSON, the same on every attempt."""
    return compact_json(envelope(event_type, content, timestamp)).encode()


def envelope_json(event_type: str, content_json: str, timestamp: int) -> bytes:
    """`envelope_body` from the content's stored JSON text, spliced in (no decode, no
    encode). Tidings stores content as `envelope_body` writes it (compact orjson), so the
    bytes are the same; older rows keep their stored spacing, the same on every attempt."""
    type_json = compact_json(event_type)
    return f'{{"content":{content_json},"timestamp":{int(timestamp)},"type":{type_json}}}'.encode()


def test_event_content(user_uuid: uuid.UUID | None = None) -> dict[str, Any]:
    """The content of the test event that 'send a test' delivers."""
    return {"item_id": 1234567890, "status": 0, "user_uuid": str(user_uuid or uuid.uuid4())}
