"""Inline SVG sparklines for Prometheus ranges: pure, numbers only, no external assets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Point = Sequence[float | None]


@dataclass(frozen=True)
class Spark:
    svg: str  # safe markup: built from numbers and fixed strings only
    first: float | None
    last: float | None
    low: float | None
    high: float | None


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def sparkline(
    points: Sequence[Point],
    *,
    width: int = 240,
    height: int = 48,
    warn: float | None = None,
    crit: float | None = None,
) -> Spark:
    """``[[ts, value], ...]`` → an SVG polyline; gaps (None) break the line. Thresholds that fall
    inside the plotted range are drawn as dashed lines (orange warn, red crit)."""
    clean = [(_num(p[0]), _num(p[1])) for p in points if len(p) >= 2]
    xy = [(t, v) for t, v in clean if t is not None]
    values = [v for _, v in xy if v is not None]
    empty = (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="no data"><text x="4" y="{height // 2 + 4}" font-size="11">'
        "no data</text></svg>"
    )
    if not values:
        return Spark(empty, None, None, None, None)
    t0, t1 = xy[0][0], xy[-1][0]
    assert t0 is not None and t1 is not None
    lo, hi = min(values), max(values)
    span_t = (t1 - t0) or 1.0
    span_v = (hi - lo) or (abs(hi) or 1.0)
    pad = 3.0

    def x(t: float) -> float:
        return pad + (t - t0) / span_t * (width - 2 * pad)

    def y(v: float) -> float:
        if hi == lo:
            return height / 2
        return pad + (hi - v) / span_v * (height - 2 * pad)

    segments: list[list[str]] = [[]]
    for t, v in xy:
        assert t is not None
        if v is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append(f"{x(t):.1f},{y(v):.1f}")
    parts = [
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{" ".join(seg)}"/>'
        for seg in segments
        if len(seg) > 1
    ]
    parts += [
        f'<circle cx="{seg[0].split(",")[0]}" cy="{seg[0].split(",")[1]}" r="1.5" fill="currentColor"/>'
        for seg in segments
        if len(seg) == 1
    ]
    for level, colour in ((warn, "#d97706"), (crit, "#dc2626")):
        if level is not None and lo <= level <= hi:
            ly = y(level)
            parts.append(
                f'<line x1="0" x2="{width}" y1="{ly:.1f}" y2="{ly:.1f}" stroke="{colour}" '
                'stroke-dasharray="3 3" stroke-width="1"/>'
            )
    last = next((v for _, v in reversed(xy) if v is not None), None)
    first = next((v for _, v in xy if v is not None), None)
    label = f"min {lo:g}, max {hi:g}, last {last:g}" if last is not None else "no data"
    svg = (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{label}"><title>{label}</title>{"".join(parts)}</svg>'
    )
    return Spark(svg, first, last, lo, hi)
