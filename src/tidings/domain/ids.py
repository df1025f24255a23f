"""Prefixed, sortable identifiers such as `wh_01JD6…`.

The body is a ULID (48-bit millisecond time + 80 random bits, Crockford base32). Within one
process ids are strictly increasing even inside the same millisecond, so "newest first" and
cursor pagination follow creation order.
"""

from __future__ import annotations

import os
import re
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIXES = ("app", "wh", "evt", "dlv", "key", "usr", "att")
_ID_RE = re.compile(r"^(?P<prefix>[a-z]+)_[0-9A-HJKMNP-TV-Z]{26}$")

_lock = threading.Lock()
_last = (0, 0)


# Every pair of digits, by the 10 bits they spell: an id is 13 lookups, not 26 divisions.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def _encode(value: int, length: int) -> str:
    """`value` as `length` Crockford base32 digits (its low 5 * `length` bits)."""
    head = _ALPHABET[(value >> (5 * (length - 1))) & 31] if length % 2 else ""
    shifts = range(5 * (length - length % 2) - 10, -1, -10)
    return head + "".join([_PAIRS[(value >> shift) & 1023] for shift in shifts])


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
