"""A deploy verification as text: one headline, one row per sample, the measured series.

Pure, and plain text only: the Markdown report, the incident page and the notifications escape
what they take from here (a Deployment name, a reason or an alert name is data, never markup).
Units follow :mod:`medic.analysis.verification`: the 5xx ratio is a fraction (shown in percent),
p99 is in seconds (shown in ms below 1 s), error log lines are per minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from medic.domain.durations import format_duration
from medic.domain.verification import Pair, PodsSample, Sample, Verification

MISSING = "n/a"  # a measurement that was not taken (its reason is among the gaps)
# The measurements drawn as sparklines: (the Sample field, what the page calls it).
SERIES = (
    ("error_ratio_5xx", "5xx ratio"),
    ("latency_p99", "p99 latency"),
    ("error_logs_per_minute", "error lines/min"),
)
MAX_GAPS = 10


def value_text(measure: str, x: float | None) -> str:
    """``0.012`` → ``1.2 %`` (5xx ratio), ``0.24`` → ``240 ms`` (p99), else ``3.0``."""
    if x is None:
        return MISSING
    if measure == "error_ratio_5xx":
        return f"{x * 100:.1f} %"
    if measure == "latency_p99":
        return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"
    if measure == "requests":
        return f"{x:.0f}"
    return f"{x:.1f}"


def pair_text(measure: str, pair: Pair) -> str:
    """The new revision's value against the baseline's: ``1.2 % vs 0.3 %``."""
    if pair.new is None and pair.baseline is None:
        return MISSING
    return f"{value_text(measure, pair.new)} vs {value_text(measure, pair.baseline)}"


def offset_text(elapsed_s: float) -> str:
    """Time into the window: ``+0s``, ``+1m30s``."""
    return "+" + format_duration(timedelta(seconds=round(max(elapsed_s, 0.0))))


def _time(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S} UTC" if at else "—"


def against(v: Verification) -> str:
    """``revision 5 against revision 4`` (or without a baseline revision: absolute limits only)."""
    if v.baseline_revision:
        return f"revision {v.revision} against revision {v.baseline_revision}"
    return f"revision {v.revision} (no older revision: absolute thresholds only)"


def headline(v: Verification) -> str:
    """One line for a notification or a report: state, what against what, and why.

    ``failed: deployment/playcode/app revision 5 against revision 4 — 5xx ratio 31.0 % ...``"""
    what = f"{v.state}: deployment/{v.namespace}/{v.deployment} {against(v)}"
    return f"{what} — {v.reason}" if v.reason else what


def window_text(v: Verification) -> str:
    """``10m from 2026-11-26 08:00:00 UTC to 08:10:00 UTC, every 1m (trigger: watch)``."""
    size = format_duration(timedelta(seconds=v.window_s))
    every = format_duration(timedelta(seconds=v.interval_s))
    text = f"{size} from {_time(v.started_at)} to {_time(v.ends_at)}, every {every} (trigger: {v.trigger})"
    return text + (f"; concluded {_time(v.finished_at)}" if v.finished_at else "")


@dataclass(frozen=True)
class SampleRow:
    """One interval's measurements as cells (plain text; the renderer escapes them)."""

    offset: str
    at: datetime
    pods: str  # ready/total, and the pods waiting by reason
    restarts: str
    requests: str  # of the new revision since the window started
    error_ratio_5xx: str
    latency_p99: str
    error_logs_per_minute: str
    alerts: str


def _pods(s: Sample) -> tuple[str, str]:
    if s.pods is None:
        return MISSING, MISSING
    waiting = ", ".join(f"{reason} {n}" for reason, n in sorted(PodsSample.counts(s.pods.waiting).items()))
    ready = f"{s.pods.ready}/{s.pods.total}" + (f" ({waiting})" if waiting else "")
    return ready, str(s.pods.restarts)


def sample_row(s: Sample) -> SampleRow:
    pods, restarts = _pods(s)
    return SampleRow(
        offset=offset_text(s.elapsed_s),
        at=s.at,
        pods=pods,
        restarts=restarts,
        requests=value_text("requests", s.requests.new),
        error_ratio_5xx=pair_text("error_ratio_5xx", s.error_ratio_5xx),
        latency_p99=pair_text("latency_p99", s.latency_p99),
        error_logs_per_minute=pair_text("error_logs_per_minute", s.error_logs_per_minute),
        alerts=", ".join(s.alerts_firing) or "—",
    )


def sample_rows(v: Verification) -> list[SampleRow]:
    return [sample_row(s) for s in v.samples]


def gaps(v: Verification) -> list[str]:
    """What could not be measured, each reason once (in the order first met), at most a few."""
    seen: dict[str, None] = {}
    for s in v.samples:
        seen.update(dict.fromkeys(s.gaps))
    return list(seen)[:MAX_GAPS]


@dataclass(frozen=True)
class Series:
    """One measurement over the window: ``points`` as ``[elapsed_s, new]`` (None: not measured)
    and the baseline's value (the newest one measured; the baseline hour does not move)."""

    measure: str
    label: str
    points: list[list[float | None]]
    baseline: float | None

    @property
    def last(self) -> float | None:
        return next((p[1] for p in reversed(self.points) if p[1] is not None), None)


def series(v: Verification) -> list[Series]:
    out = []
    for measure, label in SERIES:
        pairs = [(s.elapsed_s, getattr(s, measure)) for s in v.samples]
        base = next((p.baseline for _, p in reversed(pairs) if p.baseline is not None), None)
        out.append(Series(measure, label, [[t, p.new] for t, p in pairs], base))
    return out
