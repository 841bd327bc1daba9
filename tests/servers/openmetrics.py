"""Strict OpenMetrics text from Python series descriptions, for ``promtool`` backfilling.

``promtool tsdb create-blocks-from openmetrics`` wants (checked with promtool 2.42):

* a ``# TYPE`` line per metric family; the family name of a counter has no ``_total`` while its
  samples do (``# TYPE http_requests counter`` / ``http_requests_total{...} 3 1700000000``);
  a histogram family ``foo`` has ``foo_bucket{le=...}``, ``foo_count`` and ``foo_sum`` samples;
* an explicit timestamp on every sample, in **seconds** (floats allowed);
* the samples of one series in increasing time order (promtool silently DROPS a sample older
  than the previous one of its series), families contiguous;
* ``# EOF`` as the last line.

:func:`render_openmetrics` groups :class:`Series` into families, orders histogram points the
way OpenMetrics orders MetricPoints (per label set and timestamp: buckets by ascending ``le``,
then ``_count``, then ``_sum``), escapes label values and rejects what promtool would reject.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

MetricType = Literal["gauge", "counter", "histogram"]
Sample = tuple[float, float]  # (unix time in seconds, value)

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
_MAX_SECONDS = 1e11  # year 5138


@dataclass(frozen=True)
class Series:
    """One time series: sample ``name`` (e.g. ``http_requests_total``), type, labels, samples."""

    name: str
    type: MetricType
    labels: Mapping[str, str] = field(default_factory=dict)
    samples: Sequence[Sample] = ()
    help: str = ""

    @property
    def family(self) -> str:
        if self.type == "counter":
            return self.name.removesuffix("_total")
        if self.type == "histogram":
            for suffix in _HISTOGRAM_SUFFIXES:
                if self.name.endswith(suffix):
                    return self.name.removesuffix(suffix)
        return self.name

    def validate(self) -> None:
        if not _METRIC_NAME.match(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")
        for label in self.labels:
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} on {self.name}")
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter sample name must end in _total: {self.name!r}")
        if self.type == "histogram":
            if not self.name.endswith(_HISTOGRAM_SUFFIXES):
                raise ValueError(f"histogram sample name needs _bucket/_count/_sum: {self.name}")
            has_le = "le" in self.labels
            if self.name.endswith("_bucket") != has_le:
                raise ValueError(f"only (and every) _bucket sample has an le label: {self.name}")
        elif "le" in self.labels:
            raise ValueError(f"le label on a {self.type}: {self.name}")
        times = [ts for ts, _ in self.samples]
        if len(set(times)) != len(times):
            raise ValueError(f"duplicate timestamps in {self.name}{dict(self.labels)}")
        for ts, value in self.samples:
            if not math.isfinite(ts) or ts < 0:
                raise ValueError(f"bad timestamp {ts!r} in {self.name}")
            if ts > _MAX_SECONDS:  # promtool would silently take it as a date in year 50000+
                raise ValueError(f"timestamps are seconds; {ts!r} looks like milliseconds")
            if self.type == "counter" and (math.isnan(value) or value < 0):
                raise ValueError(f"counter {self.name} value must be >= 0, got {value!r}")


def gauge(name: str, labels: Mapping[str, str], samples: Sequence[Sample], *, help: str = "") -> Series:
    return Series(name, "gauge", dict(labels), list(samples), help)


def counter(name: str, labels: Mapping[str, str], samples: Sequence[Sample], *, help: str = "") -> Series:
    """A counter series; ``_total`` is appended to ``name`` when missing."""
    if not name.endswith("_total"):
        name += "_total"
    return Series(name, "counter", dict(labels), list(samples), help)


def format_float(value: float) -> str:
    """OpenMetrics number: ``NaN``, ``+Inf``, ``-Inf``, integers without ``.0``, else repr."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def format_le(bound: float) -> str:
    """Canonical ``le`` value (``0.005``, ``1.0``, ``+Inf``); the same bound must always be
    spelled the same way, since Prometheus compares label values as strings."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels_text(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape_label_value(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


def _sample_line(name: str, labels: Mapping[str, str], ts: float, value: float) -> str:
    return f"{name}{_labels_text(labels)} {format_float(value)} {format_float(ts)}"


def _le_value(series: Series) -> float:
    raw = series.labels["le"]
    return math.inf if raw in {"+Inf", "Inf", "inf"} else float(raw)


def _histogram_lines(members: list[Series]) -> list[str]:
    # OpenMetrics: per Metric (labels without le), per timestamp, one MetricPoint made of the
    # buckets (ascending le), then _count, then _sum.
    points: dict[tuple[tuple[str, str], ...], dict[float, list[tuple[tuple[int, float], str]]]]
    points = {}
    for series in members:
        metric_key = tuple(sorted((k, v) for k, v in series.labels.items() if k != "le"))
        if series.name.endswith("_bucket"):
            order = (0, _le_value(series))
        elif series.name.endswith("_count"):
            order = (1, 0.0)
        else:
            order = (2, 0.0)
        per_ts = points.setdefault(metric_key, {})
        for ts, value in series.samples:
            per_ts.setdefault(ts, []).append((order, _sample_line(series.name, series.labels, ts, value)))
    lines: list[str] = []
    for per_ts in points.values():
        for ts in sorted(per_ts):
            lines.extend(line for _, line in sorted(per_ts[ts], key=lambda item: item[0]))
    return lines


def render_openmetrics(series: Iterable[Series]) -> str:
    """Render series as one OpenMetrics document ending in ``# EOF``."""
    families: dict[str, list[Series]] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for item in series:
        item.validate()
        key = (item.name, tuple(sorted(item.labels.items())))
        if key in seen:
            raise ValueError(f"duplicate series {item.name}{dict(item.labels)}")
        seen.add(key)
        members = families.setdefault(item.family, [])
        if members and members[0].type != item.type:
            raise ValueError(f"family {item.family} has types {members[0].type} and {item.type}")
        members.append(item)
    lines: list[str] = []
    for family, members in families.items():
        help_text = next((m.help for m in members if m.help), "")
        lines.append(f"# TYPE {family} {members[0].type}")
        if help_text:
            lines.append(f"# HELP {family} {_escape_help(help_text)}")
        if members[0].type == "histogram":
            lines.extend(_histogram_lines(members))
            continue
        for member in members:
            for ts, value in sorted(member.samples):
                lines.append(_sample_line(member.name, member.labels, ts, value))
    lines.append("# EOF")
    return "\n".join(lines) + "\n"
