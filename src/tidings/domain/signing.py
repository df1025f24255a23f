"""Webhook secrets, the two signature styles, and verification for receivers.

Signatures (DESIGN §3), one entry per live secret:
- Standard Webhooks: `webhook-signature: v1,<b64 HMAC-SHA256(key, "{id}.{ts}.{body}")> …`
- hex: `Tidings-Signature: v1=<UPPERCASE hex HMAC-SHA256(key, body)>,…`
where key is the base64-decoded part of `whsec_<base64>`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
DEFAULT_TOLERANCE_S = 300


class InvalidSignature(Exception):
    """The request was not signed by any of the given secrets (or is too old or too new)."""


def generate_secret() -> str:
    """A new webhook secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_…` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


@functools.lru_cache(maxsize=4096)
def _key(secret: str) -> bytes:
    """`secret_key`, decoded once per secret rather than once per signature."""
    return secret_key(secret)


def mask_secret(secret: str) -> str:
    """What the API shows of a secret after its one showing: `whsec_…` and its last 4."""
    return f"{SECRET_PREFIX}…{secret[-4:]}"


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body


def standard_signature(
    msg_id: str, timestamp: int, body: bytes | str, secrets: Sequence[str]
) -> str:
    """The `webhook-signature` header value for these secrets."""
    signed = f"{msg_id}.{timestamp}.".encode() + _as_bytes(body)
    parts = []
    for secret in secrets:
        digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
        parts.append("v1," + base64.b64encode(digest).decode())
    return " ".join(parts)


def hex_signature(body: bytes | str, secrets: Sequence[str]) -> str:
    """The hex signature header value (`Tidings-Signature` by default) for these secrets."""
    raw = _as_bytes(body)
    digests = (hmac.new(_key(s), raw, hashlib.sha256).hexdigest().upper() for s in secrets)
    return ",".join(f"v1={d}" for d in digests)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _any_match(expected: Iterable[str], given: Iterable[str]) -> bool:
    found = False
    for want in expected:
        for got in given:
            # Compare every pair, so the time taken does not say which one matched.
            found |= hmac.compare_digest(want.encode(), got.encode())
    return found


def verify(
    body: bytes | str,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    *,
    now: float,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    hex_header: str = "Tidings-Signature",
) -> dict[str, Any]:
    """Check a delivery's signatures and return its parsed envelope.

    The Standard Webhooks headers are required: they carry the timestamp that stops replays
    (the hex signature alone has none). When the hex header is present it must match too.
    Any of `secrets` may have signed (the rotation overlap).
    """
    try:
        return _verify(body, headers, secrets, now, tolerance_s, hex_header)
    except UnicodeEncodeError as exc:  # a str body or header with unpaired surrogates
        raise InvalidSignature("the body or a header is not valid text") from exc


def _verify(
    body: bytes | str,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    now: float,
    tolerance_s: int,
    hex_header: str,
) -> dict[str, Any]:
    if not secrets:
        raise InvalidSignature("no secrets to verify with")
    raw = _as_bytes(body)
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    sig = _header(headers, "webhook-signature")
    if msg_id is None or stamp is None or sig is None:
        raise InvalidSignature("webhook-id, webhook-timestamp and webhook-signature are required")
    try:
        timestamp = int(stamp)
    except ValueError as exc:
        raise InvalidSignature("webhook-timestamp is not a number") from exc
    if abs(int(now) - timestamp) > tolerance_s:  # integers: a huge stamp cannot overflow
        raise InvalidSignature("webhook-timestamp is too far from now")
    expected = standard_signature(msg_id, timestamp, raw, secrets).split(" ")
    given = [p for p in sig.split(" ") if p.startswith("v1,")]
    if not _any_match(expected, given):
        raise InvalidSignature("no webhook-signature matches")
    hex_sig = _header(headers, hex_header)
    if hex_sig is not None:
        expected = hex_signature(raw, secrets).split(",")
        if not _any_match(expected, [p.strip() for p in hex_sig.split(",")]):
            raise InvalidSignature(f"no {hex_header} matches")
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise InvalidSignature("the body is not JSON") from exc
    if not isinstance(parsed, dict):
        raise InvalidSignature("the body is not a JSON object")
    return parsed


# Headers every delivery carries, which a webhook's custom headers may not replace.
RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "user-agent",
        "host",
        "connection",
    }
)


def reserved_header_problem(name: str, signature_header: str) -> str | None:
    """Why a custom header named `name` is refused, or None."""
    lowered = name.lower()
    if lowered in RESERVED_HEADERS or lowered == signature_header.lower():
        return f"the header {name} is set by Tidings on every delivery and cannot be overridden"
    return None


def delivery_headers(
    *,
    delivery_id: str,
    timestamp: int,
    body: bytes,
    secrets: Sequence[str],
    signature_header: str,
    user_agent: str,
    custom: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every header of one attempt: the webhook's own, then ours (which always win)."""
    headers = dict(custom or {})
    headers.update(
        {
            "content-type": "application/json",
            "user-agent": user_agent,
            "webhook-id": delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_signature(delivery_id, timestamp, body, secrets),
            signature_header: hex_signature(body, secrets),
        }
    )
    return headers
