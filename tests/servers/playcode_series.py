"""Generators of typical PlayCode series for a backfilled Prometheus.

Time: a :class:`Timeline` of evenly spaced timestamps. :meth:`Timeline.recent` (60 min every
15 s, ending 10 s before now) is what instant queries at "now" need: Prometheus only looks
back 5 minutes (lookback delta) for the latest sample, and ``rate(x[5m])`` needs samples in the
last 5 minutes, so the data must reach (almost) the query time. promtool also accepts future
timestamps (``end_lag < 0``), which keeps the data "current" for longer-running tests.

Anomalies: every generator has a baseline and an optional anomaly that holds during the last
``*_minutes`` of the timeline (a latency spike, an error burst, a connection drop). For a
``[5m]`` window fully inside the anomaly, keep the anomaly longer than 5 minutes (default 10).

Values are computed so that the usual queries give exact answers:
``histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket[5m])) by (le))`` is
the requested ``p99`` (baseline or spike), ``sum(rate(http_requests_total{status_code=~"5.."}
[5m])) / sum(rate(http_requests_total[5m]))`` the requested error ratio.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tests.servers.openmetrics import Sample, Series, counter, format_le, gauge

PLAYCODE_LABELS: Mapping[str, str] = {"app": "playcode-app", "namespace": "playcode"}
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


@dataclass(frozen=True)
class Timeline:
    start: float
    end: float
    step: float = 15.0

    @classmethod
    def recent(
        cls,
        *,
        minutes: float = 60.0,
        step: float = 15.0,
        end_lag: float = 10.0,
        now: float | None = None,
    ) -> Timeline:
        """``minutes`` of history ending ``end_lag`` seconds before ``now`` (whole seconds)."""
        now = time.time() if now is None else now
        end = float(int(now - end_lag))
        return cls(start=end - minutes * 60.0, end=end, step=step)

    def timestamps(self) -> list[float]:
        count = int((self.end - self.start) // self.step)
        # Anchor on the end so that the last sample is exactly ``end``.
        return [self.end - (count - i) * self.step for i in range(count + 1)]

    def in_last(self, ts: float, minutes: float) -> bool:
        """True when ``ts`` lies in the last ``minutes`` of the timeline."""
        return minutes > 0 and ts > self.end - minutes * 60.0


def _labels(extra: Mapping[str, str] | None, **more: str) -> dict[str, str]:
    return {**PLAYCODE_LABELS, **(extra if extra is not None else {}), **more}


# --------------------------------------------------------------------------- generic helpers


def gauge_series(
    name: str,
    labels: Mapping[str, str],
    timeline: Timeline,
    value_at: Callable[[float], float],
    *,
    help: str = "",
) -> Series:
    """A gauge whose value at each timestamp is ``value_at(ts)``."""
    return gauge(name, labels, [(ts, value_at(ts)) for ts in timeline.timestamps()], help=help)


def counter_series(
    name: str,
    labels: Mapping[str, str],
    timeline: Timeline,
    rate_at: Callable[[float], float],
    *,
    initial: float = 0.0,
    help: str = "",
) -> Series:
    """A counter increasing by ``rate_at(ts) * step`` per step (so ``rate()`` == ``rate_at``)."""
    samples: list[Sample] = []
    value = initial
    for i, ts in enumerate(timeline.timestamps()):
        if i:
            value += rate_at(ts) * timeline.step
        samples.append((ts, value))
    return counter(name, labels, samples, help=help)


def histogram_series(
    name: str,
    labels: Mapping[str, str],
    timeline: Timeline,
    observations_at: Callable[[float], Sequence[tuple[float, float]]],
    *,
    buckets: Sequence[float] = DEFAULT_BUCKETS,
    help: str = "",
) -> list[Series]:
    """Histogram series ``name_bucket`` (every bound and ``+Inf``), ``name_count``, ``name_sum``.

    ``observations_at(ts)`` returns ``(value, observations per second)`` pairs for the step
    ending at ``ts``.
    """
    bounds = [*sorted(float(b) for b in buckets), float("inf")]
    cumulative = [0.0] * len(bounds)
    total_count = 0.0
    total_sum = 0.0
    bucket_samples: list[list[Sample]] = [[] for _ in bounds]
    count_samples: list[Sample] = []
    sum_samples: list[Sample] = []
    for i, ts in enumerate(timeline.timestamps()):
        if i:
            for value, per_second in observations_at(ts):
                n = per_second * timeline.step
                first = bisect.bisect_left(bounds, value)
                for j in range(first, len(bounds)):
                    cumulative[j] += n
                total_count += n
                total_sum += n * value
        for j in range(len(bounds)):
            bucket_samples[j].append((ts, cumulative[j]))
        count_samples.append((ts, total_count))
        sum_samples.append((ts, total_sum))
    result = [
        Series(f"{name}_bucket", "histogram", {**labels, "le": format_le(b)}, s, help)
        for b, s in zip(bounds, bucket_samples, strict=True)
    ]
    result.append(Series(f"{name}_count", "histogram", dict(labels), count_samples, help))
    result.append(Series(f"{name}_sum", "histogram", dict(labels), sum_samples, help))
    return result


def p99_observations(
    p99: float, rps: float, buckets: Sequence[float] = DEFAULT_BUCKETS
) -> list[tuple[float, float]]:
    """Observations (value, per second) whose ``histogram_quantile(0.99, ...)`` is ``p99``.

    Most requests are fast (in a bucket well below ``p99``); a tail fraction ``f`` lands in the
    bucket (lo, hi] holding ``p99``, chosen so that linear interpolation gives exactly ``p99``:
    lo + (hi - lo) * (1 - 0.01 / f) = p99. Exact for lo + 5% .. lo + 90% of the bucket width,
    else clamped into that range.
    """
    bounds = sorted(float(b) for b in buckets)
    hi_index = bisect.bisect_left(bounds, p99)
    if hi_index >= len(bounds):
        raise ValueError(f"p99={p99} is above the largest bucket {bounds[-1]}")
    hi = bounds[hi_index]
    lo = bounds[hi_index - 1] if hi_index else 0.0
    fraction = min(max((p99 - lo) / (hi - lo), 0.05), 0.9)
    tail = 0.01 / (1.0 - fraction)
    if hi_index == 0:
        return [(hi, rps)]
    fast_value = bounds[max(0, hi_index - 3)]
    return [(fast_value, rps * (1.0 - tail)), ((lo + hi) / 2.0, rps * tail)]


# --------------------------------------------------------------------------- PlayCode series


def latency_histogram(
    timeline: Timeline | None = None,
    *,
    p99: float = 0.08,
    spike_p99: float | None = None,
    spike_minutes: float = 10.0,
    rps: float = 20.0,
    labels: Mapping[str, str] | None = None,
    buckets: Sequence[float] = DEFAULT_BUCKETS,
    name: str = "http_request_duration_seconds",
) -> list[Series]:
    """``http_request_duration_seconds_{bucket,count,sum}``; p99 latency ``p99`` seconds,
    ``spike_p99`` during the last ``spike_minutes``."""
    timeline = timeline or Timeline.recent()
    normal = p99_observations(p99, rps, buckets)
    spike = p99_observations(spike_p99, rps, buckets) if spike_p99 is not None else normal

    def observations_at(ts: float) -> Sequence[tuple[float, float]]:
        return spike if timeline.in_last(ts, spike_minutes) else normal

    return histogram_series(
        name,
        _labels(labels),
        timeline,
        observations_at,
        buckets=buckets,
        help="HTTP request latency",
    )


def http_requests(
    timeline: Timeline | None = None,
    *,
    rps: float = 20.0,
    error_ratio: float = 0.001,
    spike_error_ratio: float | None = None,
    spike_minutes: float = 10.0,
    ok_status: str = "200",
    error_status: str = "500",
    labels: Mapping[str, str] | None = None,
) -> list[Series]:
    """``http_requests_total{status_code=ok_status|error_status}`` at ``rps`` requests/s with
    ``error_ratio`` errors, ``spike_error_ratio`` during the last ``spike_minutes``."""
    timeline = timeline or Timeline.recent()

    def ratio_at(ts: float) -> float:
        if spike_error_ratio is not None and timeline.in_last(ts, spike_minutes):
            return spike_error_ratio
        return error_ratio

    base = _labels(labels)
    return [
        counter_series(
            "http_requests_total",
            {**base, "status_code": ok_status},
            timeline,
            lambda ts: rps * (1.0 - ratio_at(ts)),
            help="HTTP requests",
        ),
        counter_series(
            "http_requests_total",
            {**base, "status_code": error_status},
            timeline,
            lambda ts: rps * ratio_at(ts),
            help="HTTP requests",
        ),
    ]


def websocket_connections(
    timeline: Timeline | None = None,
    *,
    level: float = 1200.0,
    anomaly_level: float | None = None,
    anomaly_minutes: float = 10.0,
    labels: Mapping[str, str] | None = None,
) -> Series:
    """``websocket_connections_active`` gauge at ``level``; ``anomaly_level`` (a drop or a
    burst) during the last ``anomaly_minutes``."""
    timeline = timeline or Timeline.recent()

    def value_at(ts: float) -> float:
        if anomaly_level is not None and timeline.in_last(ts, anomaly_minutes):
            return anomaly_level
        return level

    return gauge_series(
        "websocket_connections_active",
        _labels(labels),
        timeline,
        value_at,
        help="Open WebSocket connections",
    )
