"""The common publish, answered without FastAPI's routing and dependency machinery.

Publishing is the one hot path of the API: the platform posts every event. Through FastAPI a
publish cost ~1 ms of the event loop (routing through every route, solving dependencies,
validating and serialising the response); `tidings serve` spends that same loop on
deliveries. This middleware answers the request that is by far the most common — the
operator's token, a valid body, a new or replayed event — itself: same validation
(`json.loads` then `EventIn`, as FastAPI does), same write (`routes.events.submit`), same
202 body and headers. Anything else (another path or method, another credential, a body or
header FastAPI would refuse, an error from the write) goes on to FastAPI unchanged, with the
body replayed, so every refusal keeps the one answer it always had. A refusal writes
nothing, so handing it on cannot publish twice.

It stands in front of the whole application (`api.app.TidingsAPI`), not inside FastAPI's
middleware stack: the seven layers it skips (error and telemetry wrappers, the body limit,
the JSON content type, the dashboard's headers) and a request hash nobody read were a fifth
of a publish's CPU (docs/decisions.md). What they would do to a publish it does itself: it
takes only a body whose declared Content-Length is within the limit (anything else goes on,
to be refused there), reads the body as JSON whatever its content type, and its 202 carries
no dashboard header, as an /v1/ answer never does.
"""

from __future__ import annotations

import json
import re

import orjson
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from tidings.api.auth import bearer_token, is_operator_token
from tidings.api.deps import Context
from tidings.api.limits import replay
from tidings.api.routes.events import submit
from tidings.api.schemas import EventIn
from tidings.domain.catalog import TEST_EVENT
from tidings.errors import Unauthenticated

PUBLISH_PATH = re.compile(r"/v1/applications/([^/]+)/events")
MAX_IDEMPOTENCY_KEY = 255  # as the route's Idempotency-Key header declares


class FastPublish:
    def __init__(self, app: ASGIApp, context: Context, max_bytes: int) -> None:
        self.app = app
        self.context = context
        self.max_bytes = max_bytes
        self.answered = 0  # publishes answered here (for tests)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST":
            match = PUBLISH_PATH.fullmatch(scope["path"])
        headers = _first_values(scope["headers"]) if match else {}
        if (
            match is None
            or not self._is_operator(headers.get("authorization"))
            or not self._small(headers.get("content-length"))
        ):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        if not await self._answer(match.group(1), headers, body, send):
            await self.app(scope, replay(body, receive), send)

    def _small(self, declared: str | None) -> bool:
        """A declared length within the limit: the body can be read whole here (a chunked
        or oversized body goes on, to `BodySizeLimit`, which answers it)."""
        if declared is None or not (declared.isascii() and declared.isdigit()):
            return False
        return int(declared) <= self.max_bytes

    def _is_operator(self, authorization: str | None) -> bool:
        try:
            token = bearer_token(authorization)
        except Unauthenticated:
            return False
        return is_operator_token(self.context, token)

    async def _answer(self, app_id: str, headers: dict[str, str], body: bytes, send: Send) -> bool:
        """Publish and answer 202; False (having sent nothing) to leave it to FastAPI."""
        key = headers.get("idempotency-key")
        if key is not None and (len(key) > MAX_IDEMPOTENCY_KEY or not key.strip()):
            return False
        try:
            event_in = EventIn.model_validate(json.loads(body))
        except (ValueError, ValidationError, RecursionError):
            return False
        if event_in.type == TEST_EVENT:
            return False
        limiter = self.context.operator_limiter
        if limiter is not None and limiter.take("operator") > 0:
            return False
        try:
            accepted = await submit(self.context, app_id, event_in, key)
        except Exception:  # refused, or failed: nothing was written; FastAPI answers
            return False
        event = accepted.event
        payload = orjson.dumps(  # as compact as the route's JSON, in 0.2 µs rather than 4.6
            {"id": event["id"], "type": event["type"], "deliveries": event["delivery_count"]}
        )
        response_headers = [
            (b"content-length", str(len(payload)).encode()),
            (b"content-type", b"application/json"),
        ]
        if not accepted.created:
            response_headers.append((b"idempotent-replayed", b"true"))
        await send({"type": "http.response.start", "status": 202, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})
        self.answered += 1
        return True


def _first_values(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header values as Starlette reads them: latin-1, the first of repeated names."""
    headers: dict[str, str] = {}
    for name, value in raw:
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
