"""Request and response bodies of the API (pydantic v2)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Role = Literal["admin", "member"]
Ordering = Literal["unordered", "fifo"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]
EventTypeName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
HeaderValue = Annotated[str, StringConstraints(max_length=1000)]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

MAX_EVENTS_PER_WEBHOOK = 100
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
    email: Annotated[str, StringConstraints(strip_whitespace=True, max_length=320)]
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
    description: Annotated[str, StringConstraints(max_length=1000)] = ""


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


class WebhookFields(Strict):
    """What a webhook's owner sets; shared by create and update."""

    url: Url | None = None
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    events: Annotated[list[EventTypeName], Field(max_length=MAX_EVENTS_PER_WEBHOOK)] | None = None
    enabled: bool | None = None
    rate_limit: Annotated[float, Field(gt=0, le=10_000)] | None = Field(
        default=None, description="Deliveries per second at most; null for no limit."
    )
    headers: dict[str, HeaderValue] | None = Field(
        default=None, description="Custom request headers added to every delivery."
    )
    ordering: Ordering | None = None

    _headers = field_validator("headers")(_check_headers)


class WebhookIn(WebhookFields):
    url: Url
    events: Annotated[list[EventTypeName], Field(max_length=MAX_EVENTS_PER_WEBHOOK)]
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


class EventIn(Strict):
    type: EventTypeName
    content: dict[str, Any] = Field(description="Any JSON object; delivered as it is.")

    @field_validator("content", mode="before")
    @classmethod
    def _object(cls, value: object) -> object:
        if not isinstance(value, dict):
            raise ValueError('content must be a JSON object, such as {"item_id": 1}')
        return value


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
    status: Literal["pending", "delivering", "succeeded", "failed"]
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


class RecoverIn(Strict):
    since: datetime = Field(
        description="ISO 8601 time (or unix seconds): the failed deliveries created since then "
        "are queued again."
    )


class Recovered(BaseModel):
    requeued: int


class ApplicationList(BaseModel):
    data: list[ApplicationOut]
    next_cursor: str | None
