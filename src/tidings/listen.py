"""`tidings listen`: a local receiver that verifies and pretty-prints each delivery.

For developers wiring their handler: point a webhook at it, watch what Tidings sends, make it
answer with a chosen status to see the retries, or `--forward` each delivery to your own
local handler and answer with whatever it answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from tidings.domain import signing

Printer = Callable[[str], None]


def describe(
    body: bytes, headers: dict[str, str], secrets: Sequence[str], hex_header: str, now: float
) -> tuple[bool, str]:
    """(verified, a readable block about one delivery)."""
    lines = []
    verified = False
    if secrets:
        try:
            signing.verify(body, headers, secrets, now=now, hex_header=hex_header)
            verified = True
            lines.append(
                "signature   verified (Standard Webhooks"
                + (f" and {hex_header})" if _get(headers, hex_header) else ")")
            )
        except signing.InvalidSignature as exc:
            lines.append(f"signature   NOT VERIFIED: {exc}")
    else:
        lines.append("signature   not checked (no --secret given)")
    try:
        envelope: Any = json.loads(body)
        pretty = json.dumps(envelope, indent=2, ensure_ascii=False)
        event_type = envelope.get("type", "?") if isinstance(envelope, dict) else "?"
    except ValueError:
        pretty, event_type = body.decode("utf-8", errors="replace"), "?"
    head = [
        f"── {event_type}  {_get(headers, 'webhook-id') or '(no webhook-id)'}",
        f"timestamp   {_get(headers, 'webhook-timestamp') or '-'}",
    ]
    return verified, "\n".join([*head, *lines, pretty, ""])


def _get(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def make_app(
    secrets: Sequence[str],
    *,
    status: int,
    forward: str | None,
    hex_header: str,
    echo: Printer,
) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        verified, text = describe(body, headers, secrets, hex_header, time.time())
        echo(text)
        if secrets and not verified:
            return web.Response(status=401, text="signature not verified\n")
        if forward:
            return await _forward(forward, body, headers, echo)
        return web.Response(status=status, text=f"tidings listen answered {status}\n")

    app = web.Application(client_max_size=10 * 1024 * 1024)
    app.router.add_route("POST", "/{tail:.*}", receive)
    return app


async def _forward(url: str, body: bytes, headers: dict[str, str], echo: Printer) -> web.Response:
    keep = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers=keep, allow_redirects=False) as response,
        ):
            text = await response.text()
            echo(f"forwarded   {url} → {response.status}\n")
            return web.Response(status=response.status, text=text)
    except aiohttp.ClientError as exc:
        echo(f"forwarded   {url} → failed: {exc}\n")
        return web.Response(status=502, text=f"forward failed: {exc}\n")
