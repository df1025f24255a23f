"""The per-credential token bucket."""

from __future__ import annotations

from tidings.api.ratelimit import RateLimiter, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_allows_the_burst_then_refuses_with_the_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.take("k") for _ in range(3)] == [0, 0, 0]
    wait = limiter.take("k")
    assert wait == 0.5
    assert retry_after_header(wait) == 1
    clock.t += 0.5
    assert limiter.take("k") == 0
    assert limiter.take("other") == 0  # keys are separate


def test_refills_up_to_the_burst_only() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=2, clock=clock)
    limiter.take("k")
    clock.t += 60
    assert [limiter.take("k") for _ in range(3)][2] > 0


def test_zero_rate_means_unlimited() -> None:
    limiter = RateLimiter(rate=0, burst=1)
    assert all(limiter.take("k") == 0 for _ in range(1000))
