"""Analyzers every playbook can use: metric thresholds and what could not be checked."""

from __future__ import annotations

from medic.analysis.dataplane import typed
from medic.collectors.prometheus_output import PrometheusQueryOutput, QueryResult
from medic.domain.evidence import StepStatus
from medic.domain.incident import Finding, Severity
from medic.playbooks.contract import AnalysisInput, AnalyzerDef


def _fmt(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value * 100:.2f}%"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:g} {unit}".strip()


def _crossed(q: QueryResult) -> tuple[Severity, float] | None:
    """(severity, threshold) of the highest threshold ``q``'s value crosses, or None."""
    value = q.value
    if value is None:
        return None
    above = q.compare == "above"
    for severity, limit in (("critical", q.crit), ("warning", q.warn)):
        if limit is not None and (value >= limit if above else value <= limit):
            return ("critical" if severity == "critical" else "warning"), limit
    return None


def metric_thresholds(inp: AnalysisInput) -> list[Finding]:
    """A finding for every named query whose value crosses its warn/crit threshold."""
    findings: list[Finding] = []
    for ev, data in typed(inp, "prometheus.query", PrometheusQueryOutput):
        for q in data.queries:
            crossed = _crossed(q)
            if crossed is None or q.value is None:
                continue
            severity, limit = crossed
            word = "above" if q.compare == "above" else "below"
            findings.append(
                Finding(
                    analyzer="metric_thresholds",
                    code=f"metric.{q.name}",
                    severity=severity,
                    summary=f"{q.description or q.name} is {_fmt(q.value, q.unit)}, "
                    f"{word} the {severity} threshold of {_fmt(limit, q.unit)}",
                    details={"query": q.name, "expr": q.expr, "value": q.value, "threshold": limit},
                    evidence=[ev.step],
                )
            )
    return findings


def coverage(inp: AnalysisInput) -> list[Finding]:
    """What Medic could not check: on-call must not read silence as health."""
    missing = [e for e in inp.evidence.values() if e.status not in (StepStatus.OK, StepStatus.SKIPPED)]
    if not missing:
        return []
    parts = [f"{e.step} ({e.status.value}: {e.error or 'no detail'})" for e in missing]
    return [
        Finding(
            analyzer="coverage",
            code="coverage.incomplete",
            severity="info",
            summary=f"{len(missing)} of {len(inp.evidence)} checks gave no data: " + "; ".join(parts),
            details={"steps": {e.step: e.status.value for e in missing}},
            evidence=[e.step for e in missing],
        )
    ]


ANALYZERS = [
    AnalyzerDef(
        "metric_thresholds", metric_thresholds, "named queries over their thresholds", codes=("metric.*",)
    ),
    AnalyzerDef(
        "coverage", coverage, "checks that gave no data (always run)", codes=("coverage.incomplete",)
    ),
]
