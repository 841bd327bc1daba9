"""Pure: a (redacted) incident → what the pages show. No I/O, no HTML (templates escape)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from markupsafe import Markup

from medic.app.http.web.sparkline import sparkline
from medic.domain.evidence import Evidence
from medic.domain.incident import ActionStatus, Incident
from medic.domain.verification import Verification
from medic.incidents.report import verification as vtext
from medic.incidents.report.oncall import Gap, gaps, is_coverage

JSON_LIMIT = 20_000
LOG_LINES = 60
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


def pretty(data: Any, limit: int = JSON_LIMIT) -> str:
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str, sort_keys=False)
    return text if len(text) <= limit else text[:limit] + "\n… (truncated here; the JSON export has it all)"


def safe_url(url: str) -> str | None:
    """Only http(s) links from alerts are rendered (never ``javascript:`` or ``data:``)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def anchor(step: str) -> str:
    return "ev-" + "".join(c if c.isalnum() else "-" for c in step)


@dataclass(frozen=True)
class Series:
    labels: str
    spark: Markup
    last: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Query:
    name: str
    expr: str
    description: str
    unit: str
    value: Any
    warn: Any
    crit: Any
    error: str
    series: list[Series] = field(default_factory=list)


@dataclass(frozen=True)
class LogBlock:
    title: str
    lines: list[str]
    note: str = ""


@dataclass(frozen=True)
class EvidenceView:
    step: str
    anchor: str
    collector: str
    status: str
    duration_ms: float
    truncated: bool
    error: str
    queries: list[Query] = field(default_factory=list)
    logs: list[LogBlock] = field(default_factory=list)
    patterns: list[dict[str, Any]] = field(default_factory=list)
    raw: str = ""


def _labels(labels: Any) -> str:
    if not isinstance(labels, dict) or not labels:
        return "(all)"
    return ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _queries(data: Any) -> list[Query]:
    out: list[Query] = []
    for q in data.get("queries", []) if isinstance(data, dict) else []:
        if not isinstance(q, dict):
            continue
        series = []
        for s in q.get("range") or []:
            if not isinstance(s, dict):
                continue
            spark = sparkline(s.get("points") or [], warn=_float(q.get("warn")), crit=_float(q.get("crit")))
            series.append(
                Series(_labels(s.get("labels")), Markup(spark.svg), spark.last, spark.low, spark.high)
            )
        out.append(
            Query(
                name=str(q.get("name", "")),
                expr=str(q.get("expr", "")),
                description=str(q.get("description") or ""),
                unit=str(q.get("unit") or ""),
                value=q.get("value"),
                warn=q.get("warn"),
                crit=q.get("crit"),
                error=str(q.get("error") or ""),
                series=series,
            )
        )
    return out


def _pod_logs(data: Any) -> list[LogBlock]:
    out = []
    for entry in data.get("logs", []) if isinstance(data, dict) else []:
        if not isinstance(entry, dict):
            continue
        lines = [str(line) for line in entry.get("lines") or []]
        which = "previous instance" if entry.get("previous") else "current instance"
        note = str(entry.get("error") or "")
        if len(lines) > LOG_LINES:
            note = (note + "; " if note else "") + f"last {LOG_LINES} of {len(lines)} lines"
        out.append(
            LogBlock(
                f"{entry.get('pod', '?')} / {entry.get('container', '?')} ({which})", lines[-LOG_LINES:], note
            )
        )
    return out


def evidence_view(ev: Evidence) -> EvidenceView:
    base: dict[str, Any] = {
        "step": ev.step,
        "anchor": anchor(ev.step),
        "collector": ev.collector,
        "status": ev.status.value,
        "duration_ms": ev.duration_ms,
        "truncated": ev.truncated,
        "error": ev.error or "",
    }
    data = ev.data
    if ev.collector == "prometheus.query" and isinstance(data, dict):
        return EvidenceView(**base, queries=_queries(data), raw=pretty(data))
    if ev.collector == "loki.query" and isinstance(data, dict):
        patterns = [p for p in data.get("patterns", []) if isinstance(p, dict)]
        return EvidenceView(**base, patterns=patterns, raw=pretty(data))
    if ev.collector == "k8s.pod_logs" and isinstance(data, dict):
        return EvidenceView(**base, logs=_pod_logs(data), raw=pretty(data))
    return EvidenceView(**base, raw=pretty(data) if data is not None else "")


@dataclass(frozen=True)
class FindingView:
    rank: int
    severity: str
    code: str
    analyzer: str
    summary: str
    evidence: list[tuple[str, str]]  # (step, anchor)
    next_steps: list[str]
    log_sample: list[str]
    details: str
    gaps: list[tuple[Gap, str]] = field(default_factory=list)  # coverage.incomplete: (check, anchor)


def finding_views(inc: Incident) -> list[FindingView]:
    ranked = sorted(inc.findings, key=lambda f: SEVERITY_RANK.get(f.severity, 3))
    out = []
    for i, f in enumerate(ranked, 1):
        sample = f.details.get("log_sample") if isinstance(f.details, dict) else None
        details = {k: v for k, v in f.details.items() if k != "log_sample"}
        details |= f.model_dump(include={"max_mode", "against"})  # what the decision read, when set
        missing = gaps(inc) if is_coverage(f) else []
        out.append(
            FindingView(
                rank=i,
                severity=f.severity,
                code=f.code,
                analyzer=f.analyzer,
                summary=f"{len(missing)} of {len(inc.evidence)} checks gave no data"
                if missing
                else f.summary,
                evidence=[] if missing else [(s, anchor(s)) for s in f.evidence],
                next_steps=list(f.next_steps),
                log_sample=[str(x) for x in sample] if isinstance(sample, list) else [],
                details="" if missing else pretty(details) if details else "",
                gaps=[(g, anchor(g.step)) for g in missing],
            )
        )
    return out


@dataclass(frozen=True)
class SparkView:
    label: str
    svg: Markup  # numbers and fixed strings only (sparkline)
    last: str
    baseline: str


@dataclass(frozen=True)
class VerificationView:
    """A deploy verification as the page shows it: facts, one row per sample, a sparkline per
    measurement (the new revision as a line, the baseline as a flat dashed line)."""

    v: Verification
    against: str
    window: str
    rows: list[vtext.SampleRow]
    sparks: list[SparkView]
    gaps: list[str]


def verification_view(v: Verification | None) -> VerificationView | None:
    if v is None:
        return None
    sparks = []
    for s in vtext.series(v):
        spark = sparkline(s.points, width=200, height=40, baseline=s.baseline)
        sparks.append(
            SparkView(
                s.label,
                Markup(spark.svg),
                vtext.value_text(s.measure, s.last),
                vtext.value_text(s.measure, s.baseline),
            )
        )
    return VerificationView(
        v, vtext.against(v), vtext.window_text(v), vtext.sample_rows(v), sparks, vtext.gaps(v)
    )


def awaiting(inc: Incident) -> list[int]:
    return [i for i, a in enumerate(inc.actions) if a.status is ActionStatus.AWAITING_APPROVAL]


def page_query(filters: dict[str, str], **changes: Any) -> str:
    merged = {**filters, **{k: str(v) for k, v in changes.items()}}
    return urlencode({k: v for k, v in merged.items() if v not in ("", None)})
