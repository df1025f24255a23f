"""The 24-hour chart of a webhook, drawn as inline SVG on the server (no JavaScript)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

HOURS = 24


@dataclass(frozen=True)
class Hour:
    start: float
    succeeded: int
    failed: int
    median_ms: float | None


def hourly(attempts: list[tuple[float, int | None, int]], now: float) -> list[Hour]:
    """Bucket attempts into the 24 hours ending at the current hour's end."""
    end = (int(now) // 3600 + 1) * 3600
    start = end - HOURS * 3600
    ok = [0] * HOURS
    bad = [0] * HOURS
    latency: list[list[int]] = [[] for _ in range(HOURS)]
    for at, code, duration in attempts:
        i = int((at - start) // 3600)
        if not 0 <= i < HOURS:
            continue
        if code is not None and 200 <= code < 300:
            ok[i] += 1
        else:
            bad[i] += 1
        latency[i].append(duration)
    return [
        Hour(
            start + i * 3600,
            ok[i],
            bad[i],
            statistics.median(latency[i]) if latency[i] else None,
        )
        for i in range(HOURS)
    ]


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000):
        if value <= step:
            return float(step)
    magnitude = 10 ** len(str(int(value)))
    return float(magnitude)


def svg(hours: list[Hour], *, width: int = 720, height: int = 180) -> str:
    """Stacked bars of succeeded/failed attempts per hour, and a line of median latency."""
    left, right, top, bottom = 40, 52, 12, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    top_count = max(2.0, _nice_ceiling(max((h.succeeded + h.failed for h in hours), default=0)))
    latencies = [h.median_ms for h in hours if h.median_ms is not None]
    top_ms = _nice_ceiling(max(latencies, default=0))
    slot = plot_w / len(hours)
    bar_w = max(2.0, slot * 0.7)
    total_ok = sum(h.succeeded for h in hours)
    total_bad = sum(h.failed for h in hours)
    label = f"Last 24 hours: {total_ok} succeeded and {total_bad} failed attempts" + (
        f"; median latency up to {max(latencies):.0f} ms" if latencies else ""
    )
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
    ]
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{top_count * frac:g}</text>"
        )
        parts.append(
            f'<text class="axis latency-axis" x="{left + plot_w + 6}" y="{y + 4:.1f}">'
            f"{top_ms * frac:g} ms</text>"
        )
    points = []
    for i, h in enumerate(hours):
        x = left + i * slot + (slot - bar_w) / 2
        ok_h = plot_h * h.succeeded / top_count
        bad_h = plot_h * h.failed / top_count
        hour = datetime.fromtimestamp(h.start, UTC).strftime("%H:00")
        tip = f"{hour} UTC: {h.succeeded} succeeded, {h.failed} failed"
        if h.median_ms is not None:
            tip += f", median {h.median_ms:.0f} ms"
        parts.append(f"<g><title>{escape(tip)}</title>")
        if h.succeeded:
            y = top + plot_h - ok_h
            parts.append(_rect("ok", x, y, bar_w, ok_h))
        if h.failed:
            y = top + plot_h - ok_h - bad_h
            parts.append(_rect("bad", x, y, bar_w, bad_h))
        parts.append("</g>")
        if h.median_ms is not None:
            cx = left + i * slot + slot / 2
            cy = top + plot_h * (1 - h.median_ms / top_ms)
            points.append(f"{cx:.1f},{cy:.1f}")
        if i % 6 == 0:
            parts.append(
                f'<text class="axis" x="{left + i * slot:.1f}" y="{height - 8}">{hour}</text>'
            )
    if not total_ok and not total_bad:
        parts.append(
            f'<text class="empty" x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" '
            'text-anchor="middle">No attempts in the last 24 hours</text>'
        )
    if len(points) > 1:
        parts.append(f'<polyline class="latency" points="{" ".join(points)}"/>')
    for point in points:
        px, py = point.split(",")
        parts.append(f'<circle class="latency-dot" cx="{px}" cy="{py}" r="2.5"/>')
    parts.append("</svg>")
    return "".join(parts)


def _rect(kind: str, x: float, y: float, w: float, h: float) -> str:
    return f'<rect class="{kind}" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}"/>'
