"""Request and response bodies of the API (pydantic v2)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

Role = Literal["admin", "member"]
Ordering = Literal["unordered", "fifo"]
DeliveryStatus = Literal["pending", "delivering", "succeeded", "failed"]


def _no_nul(value: str) -> str:
    # SQLite would store it, PostgreSQL refuses it: refused on both, for the same answers.
    if "\x00" in value:
        raise ValueError("must not contain a NUL (\\u0000) character")
    return value


def _strip(value: str) -> str:
    return _no_nul(value).strip()


def _strip_not_blank(value: str) -> str:
    value = _strip(value)
    if not value:
        raise ValueError("must not be blank")
    return value


# Lengths count the characters sent, as the OpenAPI document says; surrounding whitespace is
# dropped afterwards. (Stripping first would accept 201 characters where 200 are documented.)
Name = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(_strip_not_blank)
]
OptionalName = Annotated[str, StringConstraints(max_length=200), AfterValidator(_strip)]
Url = Annotated[
    str, StringConstraints(min_length=1, max_length=2048), AfterValidator(_strip_not_blank)
]
Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(_strip)]
EventTypeName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
HeaderValue = Annotated[str, StringConstraints(max_length=1000)]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

MAX_EVENTS_PER_WEBHOOK = 100
MIN_RATE_LIMIT = 0.001
MAX_CUSTOM_HEADERS = 20


def iso(ts: float) -> str:
    """Unix seconds as ISO 8601 in UTC, e.g. 2026-11-26T18:20:00.123Z."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_or_none(ts: float | None) -> str | None:
    return None if ts is None else iso(ts)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApplicationIn(Strict):
    name: Name


class ApplicationOut(BaseModel):
    id: str
    name: str
    created_at: str


class ApiKeyIn(Strict):
    name: Name
    role: Role


class ApiKeyOut(BaseModel):
    id: str
    name: str
    role: Role
    key: str = Field(description="Shown once: keep it now.")
    created_at: str


class UserIn(Strict):
    email: Email
    password: Annotated[str, StringConstraints(min_length=8, max_length=1024)]
    role: Role

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError("is not an email address")
        return value.lower()


class UserOut(BaseModel):
    id: str
    email: str
    role: Role
    created_at: str


class EventTypeIn(Strict):
    name: EventTypeName
    description: Annotated[str, StringConstraints(max_length=1000), AfterValidator(_no_nul)] = ""


class EventTypeOut(BaseModel):
    name: str
    description: str


class EventTypeList(BaseModel):
    data: list[EventTypeOut]


def _check_headers(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return value
    if len(value) > MAX_CUSTOM_HEADERS:
        raise ValueError(f"at most {MAX_CUSTOM_HEADERS} custom headers")
    for name, header_value in value.items():
        if not _HEADER_NAME.match(name) or len(name) > 100:
            raise ValueError(f"{name!r} is not a valid header name")
        if any(c in header_value for c in "\r\n\0"):
            raise ValueError(f"the value of {name} contains a line break or NUL")
    return value


# Documented only: the empty list and repeated types are refused by `subscription_problem`,
# which says why in words.
_EVENTS_DOC = {"minItems": 1, "uniqueItems": True}
Events = Annotated[
    list[EventTypeName],
    Field(
        max_length=MAX_EVENTS_PER_WEBHOOK,
        description='Event types from the catalog, or ["*"] for all of them.',
        json_schema_extra=_EVENTS_DOC,
    ),
]


class WebhookFields(Strict):
    """What a webhook's owner sets; shared by create and update."""

    url: Url | None = None
    name: OptionalName | None = None
    events: Events | None = None
    enabled: bool | None = None
    # A floor: the queue spaces a limited webhook's deliveries 1/rate seconds apart, and a
    # vanishing rate put them past the year 9999 (which no timestamp can show).
    rate_limit: Annotated[float, Field(ge=MIN_RATE_LIMIT, le=10_000)] | None = Field(
        default=None,
        description="Deliveries per second at most, from 0.001 (one every 1000 s) to 10000; "
        "null for no limit.",
    )
    headers: dict[str, HeaderValue] | None = Field(
        default=None, description="Custom request headers added to every delivery."
    )
    ordering: Ordering | None = None
    timeout_s: Annotated[float, Field(ge=1, le=30)] | None = Field(
        default=None,
        description="Seconds per attempt for this webhook, 1 to 30; null for the server's default.",
    )

    _headers = field_validator("headers")(_check_headers)


class WebhookIn(WebhookFields):
    url: Url
    events: Events
    enabled: bool = True
    ordering: Ordering = "unordered"


class WebhookPatch(WebhookFields):
    pass


class WebhookOut(BaseModel):
    id: str
    url: str
    name: str | None
    events: list[str]
    enabled: bool
    disabled_reason: str | None
    rate_limit: float | None
    timeout_s: float | None
    headers: dict[str, str]
    ordering: Ordering
    secret: str = Field(description="In full only when created or rotated; masked afterwards.")
    created_at: str
    updated_at: str


class WebhookList(BaseModel):
    data: list[WebhookOut]
    next_cursor: str | None


class SecretOut(BaseModel):
    secret: str


MAX_CONTENT_DEPTH = 64


def _depth_over(value: object, limit: int) -> bool:
    """Whether JSON `value` nests arrays and objects more than `limit` levels deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


class EventIn(Strict):
    type: EventTypeName
    content: dict[str, Any] = Field(
        description="Any JSON object, delivered as it is: at most "
        f"{MAX_CONTENT_DEPTH} levels deep, no NaN or Infinity, Unicode text only."
    )

    @field_validator("content", mode="before")
    @classmethod
    def _object(cls, value: object) -> object:
        if not isinstance(value, dict):
            raise ValueError('content must be a JSON object, such as {"item_id": 1}')
        # What we accept must be deliverable: the worker serialises it as strict UTF-8 JSON,
        # and the API shows it back in the delivery's payload.
        if _depth_over(value, MAX_CONTENT_DEPTH):
            raise ValueError(f"content is nested more than {MAX_CONTENT_DEPTH} levels deep")
        if _plainly_strict(value):
            return value
        try:
            json.dumps(value, allow_nan=False, ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:
            raise ValueError(
                "content holds an unpaired surrogate (such as \\ud800), which is not text"
            ) from exc
        except ValueError as exc:
            raise ValueError("content must be strict JSON, without NaN or Infinity") from exc
        return value


# orjson also writes datetimes, dataclasses and subclasses of str, int, dict and list, which
# the full check refuses or writes otherwise: these it leaves to it.
_ONLY_JSON_TYPES = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _plainly_strict(value: dict[str, Any]) -> bool:
    """A quick yes for the common content, else the full check above decides (5.6 µs for
    a 1 KB body against 0.3 µs here). orjson refuses what is not UTF-8 text (an unpaired
    surrogate), an integer beyond 64 bits and nesting past 255 levels, and writes NaN and
    Infinity as `null`: a text without `null` in it had none of them."""
    try:
        text = orjson.dumps(value, option=_ONLY_JSON_TYPES)
    except orjson.JSONEncodeError:
        return False
    return b"null" not in text


class EventAccepted(BaseModel):
    id: str
    type: str
    deliveries: int


class AttemptOut(BaseModel):
    at: str
    status_code: int | None
    duration_ms: int
    error: str | None
    response_body: str | None
    request_headers: dict[str, str]


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    webhook_id: str
    event_type: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_duration_ms: int | None
    last_error: str | None
    created_at: str
    updated_at: str


class DeliveryDetail(DeliveryOut):
    payload: dict[str, Any]
    attempts: list[AttemptOut]


class DeliveryList(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None


# pydantic reads a datetime from ISO 8601 text or from a number (unix seconds): say both.
Since = Annotated[
    datetime,
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]}),
]


class RecoverIn(Strict):
    since: Since = Field(
        description="ISO 8601 time (or unix seconds): the failed deliveries created since then "
        "are queued again."
    )


class Recovered(BaseModel):
    requeued: int


class ApplicationList(BaseModel):
    data: list[ApplicationOut]
    next_cursor: str | None
