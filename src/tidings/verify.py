"""Signature verification for receivers: `from tidings.verify import verify`.

    envelope = verify(request_body, request_headers, ["whsec_…"])

`body` is the raw request body (bytes or str, exactly as received), `headers` any mapping
of the request headers (any case), `secrets` the webhook's live secrets (pass both during a
rotation). Returns the parsed envelope `{"content", "timestamp", "type"}`, or raises
`InvalidSignature` when no signature matches, the headers are missing, or the
`webhook-timestamp` is more than 5 minutes from now.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from tidings.domain import signing
from tidings.domain.signing import InvalidSignature

__all__ = ["InvalidSignature", "verify"]


def verify(
    body: bytes | str,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    *,
    tolerance_s: int = signing.DEFAULT_TOLERANCE_S,
    hex_header: str = "Tidings-Signature",
) -> dict[str, Any]:
    """Verify a delivery and return its envelope; raises `InvalidSignature`."""
    if isinstance(secrets, str):
        secrets = [secrets]
    try:
        return signing.verify(
            body, headers, secrets, now=time.time(), tolerance_s=tolerance_s, hex_header=hex_header
        )
    except ValueError as exc:  # a malformed secret: say so in the one exception receivers catch
        raise InvalidSignature(str(exc)) from exc
