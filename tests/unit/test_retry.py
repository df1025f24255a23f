"""The retry rules: schedule, jitter, Retry-After, giving up."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from tidings.config import DEFAULT_RETRY_SCHEDULE
from tidings.domain import retry

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        (200, True),
        (201, True),
        (204, True),
        (299, True),
        (199, False),
        (300, False),
        (302, False),
        (304, False),
        (400, False),
        (410, False),
        (429, False),
        (500, False),
        (None, False),
    ],
)
def test_only_2xx_is_success(code: int | None, ok: bool) -> None:
    assert retry.is_success(code) is ok


def test_default_schedule_is_twelve_attempts_over_about_forty_hours() -> None:
    delays = [retry.base_delay(n, DEFAULT_RETRY_SCHEDULE) for n in range(1, 13)]
    assert delays[:11] == [10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 43200]
    assert delays[11] is None  # the 12th attempt is the last
    total = sum(d for d in delays if d)
    assert 39 * 3600 < total < 41 * 3600
    # with ±20% jitter the span stays within one to two days
    assert total * 0.8 > 86400 and total * 1.2 < 2 * 86400


@pytest.mark.parametrize("attempts", [0, -1, 12, 100])
def test_no_base_delay_outside_the_schedule(attempts: int) -> None:
    assert retry.base_delay(attempts, DEFAULT_RETRY_SCHEDULE) is None


def test_jitter_stays_within_twenty_percent_and_varies() -> None:
    rng = random.Random(3)
    values = [retry.jittered(100.0, rng) for _ in range(2000)]
    assert min(values) >= 80.0 and max(values) <= 120.0
    assert min(values) < 85.0 and max(values) > 115.0


def test_next_delay_gives_up_after_the_last_attempt() -> None:
    assert retry.next_delay(11, DEFAULT_RETRY_SCHEDULE, rng=random.Random(1)) is not None
    assert retry.next_delay(12, DEFAULT_RETRY_SCHEDULE, rng=random.Random(1)) is None


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        pytest.param(429, "90", 90.0, id="429-within-range"),
        pytest.param(503, "90", 90.0, id="503-within-range"),
        pytest.param(429, "5", 60.0, id="429-too-soon-clamped-up"),
        pytest.param(503, "100000", 120.0, id="503-too-late-clamped-down"),
        pytest.param(429, formatdate(NOW + 100, usegmt=True), 100.0, id="http-date"),
        pytest.param(429, formatdate(NOW - 100, usegmt=True), 60.0, id="http-date-in-the-past"),
    ],
)
def test_retry_after_is_honoured_within_one_to_two_times_the_schedule(
    status: int, header: str, expected: float
) -> None:
    delay = retry.next_delay(
        2, DEFAULT_RETRY_SCHEDULE, status_code=status, retry_after=header, now=NOW
    )
    assert delay == pytest.approx(expected, abs=1)


@pytest.mark.parametrize(
    ("status", "header"),
    [
        pytest.param(500, "90", id="500-ignores-retry-after"),
        pytest.param(429, "soon", id="429-garbage-header"),
        pytest.param(429, None, id="429-no-header"),
        pytest.param(429, "-5", id="429-negative"),
    ],
)
def test_retry_after_ignored_falls_back_to_the_jittered_schedule(
    status: int, header: str | None
) -> None:
    delay = retry.next_delay(
        2,
        DEFAULT_RETRY_SCHEDULE,
        status_code=status,
        retry_after=header,
        now=NOW,
        rng=random.Random(5),
    )
    assert delay is not None and 48 <= delay <= 72


def test_parse_retry_after() -> None:
    assert retry.parse_retry_after("120", NOW) == 120.0
    assert retry.parse_retry_after(" 7 ", NOW) == 7.0
    assert retry.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", NOW) == 0.0
    assert retry.parse_retry_after("", NOW) is None
    assert retry.parse_retry_after("1.5", NOW) is None
