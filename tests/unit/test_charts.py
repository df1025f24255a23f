"""The 24-hour chart: hourly buckets, medians, and an SVG that says what it shows."""

from __future__ import annotations

from tidings.dashboard import charts

NOW = 1_800_000_000.0  # 08:00 UTC on the hour


def test_buckets_attempts_by_hour_with_the_median_latency() -> None:
    attempts = [
        (NOW - 10, 200, 10),
        (NOW - 20, 200, 30),
        (NOW - 30, 500, 200),
        (NOW - 3600 * 5, None, 10000),
        (NOW - 3600 * 30, 200, 1),  # older than 24 h: left out
    ]
    hours = charts.hourly(attempts, NOW)
    assert len(hours) == 24
    last = hours[-1]
    assert (last.succeeded, last.failed) == (0, 0)  # the current hour (08:00-09:00) is empty
    before = hours[-2]
    assert (before.succeeded, before.failed, before.median_ms) == (2, 1, 30)
    assert (hours[-6].succeeded, hours[-6].failed, hours[-6].median_ms) == (0, 1, 10000)
    assert sum(h.succeeded + h.failed for h in hours) == 4


def test_svg_has_an_accessible_summary_and_one_bar_per_non_empty_hour() -> None:
    hours = charts.hourly([(NOW - 10, 200, 10), (NOW - 7200, 503, 40)], NOW)
    svg = charts.svg(hours)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert (
        'aria-label="Last 24 hours: 1 succeeded and 1 failed attempts; median latency up to 40 ms"'
        in svg
    )
    assert svg.count('<rect class="ok"') == 1 and svg.count('<rect class="bad"') == 1
    assert "No attempts" not in svg


def test_empty_chart_says_so() -> None:
    svg = charts.svg(charts.hourly([], NOW))
    assert "No attempts in the last 24 hours" in svg
    assert "<rect" not in svg


def test_text_is_escaped() -> None:
    hours = [charts.Hour(NOW, 1, 0, None)] * 24
    assert "<script" not in charts.svg(hours)
