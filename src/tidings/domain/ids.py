"""Prefixed, sortable identifiers such as `wh_01JD6…`.

The body is a ULID (48-bit millisecond time + 80 random bits, Crockford base32). Within one
process ids are strictly increasing even inside the same millisecond, so "newest first" and
cursor pagination follow creation order.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIXES = ("app", "wh", "evt", "dlv", "key", "usr", "att")
_ID_RE = re.compile(r"^(?P<prefix>[a-z]+)_[0-9A-HJKMNP-TV-Z]{26}$")

_lock = threading.Lock()
_last = (0, 0)


# base64's base32 alphabet, spelled in Crockford's: base32 in C instead of a Python loop.
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def _encode(value: int, length: int) -> str:
    """`value` as `length` Crockford base32 digits (its low 5 * `length` bits)."""
    digits = base64.b32encode(value.to_bytes(5 * ((length + 7) // 8), "big"))
    return digits[-length:].translate(_TO_CROCKFORD).decode()


def _next_ulid(now_ms: int) -> int:
    global _last
    with _lock:
        last_ms, last_rand = _last
        if now_ms <= last_ms:
            now_ms, rand = last_ms, last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # room to count up
        _last = (now_ms, rand)
    return (now_ms << 80) | rand


def new_id(prefix: str, now: float | None = None) -> str:
    """A new id with `prefix`, e.g. `new_id("wh")` → `wh_01JD…`."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    now_ms = int((time.time() if now is None else now) * 1000)
    return f"{prefix}_{_encode(_next_ulid(now_ms), 26)}"


def is_id(value: str, prefix: str) -> bool:
    """Whether `value` is shaped like an id with this prefix."""
    match = _ID_RE.fullmatch(value)
    return match is not None and match.group("prefix") == prefix
