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


@dataclass(frozen=True)
class _Scale:
    """Data coordinates → SVG coordinates inside a ``pad`` margin."""

    t0: float
    t1: float
    lo: float
    hi: float
    width: int
    height: int
    pad: float = 3.0

    def x(self, t: float) -> float:
        span_t = (self.t1 - self.t0) or 1.0
        return self.pad + (t - self.t0) / span_t * (self.width - 2 * self.pad)

    def y(self, v: float) -> float:
        if self.hi == self.lo:
            return self.height / 2
        span_v = (self.hi - self.lo) or (abs(self.hi) or 1.0)
        return self.pad + (self.hi - v) / span_v * (self.height - 2 * self.pad)


def _empty(width: int, height: int) -> str:
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="no data"><text x="4" y="{height // 2 + 4}" font-size="11">'
        "no data</text></svg>"
    )


def _segments(xy: Sequence[tuple[float, float | None]], scale: _Scale) -> list[list[str]]:
    """The points as runs of ``x,y``; a gap (None) starts a new run."""
    segments: list[list[str]] = [[]]
    for t, v in xy:
        if v is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append(f"{scale.x(t):.1f},{scale.y(v):.1f}")
    return segments


def _lines(segments: list[list[str]]) -> list[str]:
    """A polyline per run of several points, a dot per lone point."""
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
    return parts


def _thresholds(scale: _Scale, warn: float | None, crit: float | None) -> list[str]:
    """Dashed lines for the thresholds inside the plotted range (orange warn, red crit)."""
    parts = []
    for level, colour in ((warn, "#d97706"), (crit, "#dc2626")):
        if level is not None and scale.lo <= level <= scale.hi:
            ly = scale.y(level)
            parts.append(
                f'<line x1="0" x2="{scale.width}" y1="{ly:.1f}" y2="{ly:.1f}" stroke="{colour}" '
                'stroke-dasharray="3 3" stroke-width="1"/>'
            )
    return parts


def _baseline(scale: _Scale, level: float | None) -> list[str]:
    """The baseline's value as a flat dashed grey line across the box."""
    if level is None:
        return []
    ly = scale.y(level)
    return [
        f'<line class="baseline" x1="0" x2="{scale.width}" y1="{ly:.1f}" y2="{ly:.1f}" stroke="#59636e" '
        'stroke-dasharray="4 3" stroke-width="1"/>'
    ]


def sparkline(
    points: Sequence[Point],
    *,
    width: int = 240,
    height: int = 48,
    warn: float | None = None,
    crit: float | None = None,
    baseline: float | None = None,
) -> Spark:
    """``[[ts, value], ...]`` → an SVG polyline; gaps (None) break the line. Thresholds that fall
    inside the plotted range are drawn as dashed lines (orange warn, red crit). A ``baseline``
    (what the values are compared with) widens the range to include it and is drawn as a flat
    dashed grey line."""
    clean = [(_num(p[0]), _num(p[1])) for p in points if len(p) >= 2]
    xy = [(t, v) for t, v in clean if t is not None]
    values = [v for _, v in xy if v is not None]
    if not values:
        return Spark(_empty(width, height), None, None, None, None)
    level = _num(baseline)
    lo, hi = min(values), max(values)
    span = values if level is None else [*values, level]
    scale = _Scale(xy[0][0], xy[-1][0], min(span), max(span), width, height)
    parts = _baseline(scale, level) + _lines(_segments(xy, scale)) + _thresholds(scale, warn, crit)
    last = next((v for _, v in reversed(xy) if v is not None), None)
    first = next((v for _, v in xy if v is not None), None)
    label = f"min {lo:g}, max {hi:g}, last {last:g}" if last is not None else "no data"
    if level is not None:
        label += f", baseline {level:g}"
    svg = (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{label}"><title>{label}</title>{"".join(parts)}</svg>'
    )
    return Spark(svg, first, last, lo, hi)
