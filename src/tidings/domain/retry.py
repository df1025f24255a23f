"""When to try a delivery again: the schedule, its jitter, `Retry-After`, and giving up."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime

JITTER = 0.2  # ±20%


def is_success(status_code: int | None) -> bool:
    """Any 2xx is a success; everything else (redirects included) is a failed attempt."""
    return status_code is not None and 200 <= status_code < 300


def base_delay(attempts_made: int, schedule: Sequence[int]) -> float | None:
    """The scheduled delay after `attempts_made` attempts, or None when retries are exhausted.

    The schedule lists the delays between attempts, so it allows `len(schedule) + 1`
    attempts in all (12 with the default schedule).
    """
    if attempts_made < 1 or attempts_made > len(schedule):
        return None
    return float(schedule[attempts_made - 1])


def jittered(delay: float, rng: random.Random | None = None) -> float:
    """`delay` moved by up to ±20%, so that a burst of failures does not retry in lockstep."""
    return delay * (rng or random).uniform(1 - JITTER, 1 + JITTER)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds a `Retry-After` header asks for (seconds or an HTTP date), or None."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # "²".isdigit() is True too
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def next_delay(
    attempts_made: int,
    schedule: Sequence[int],
    *,
    status_code: int | None = None,
    retry_after: str | None = None,
    now: float = 0.0,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next attempt after a failed one, or None to give up.

    A `Retry-After` on a 429 or 503 is honoured, clamped to between 1 and 2 times the
    scheduled delay, so a receiver can slow us down but not stall or hurry us.
    """
    base = base_delay(attempts_made, schedule)
    if base is None:
        return None
    asked = parse_retry_after(retry_after, now) if status_code in (429, 503) else None
    if asked is not None:
        return min(max(asked, base), 2 * base)
    return jittered(base, rng)
