"""The data of ``prometheus.revision_compare`` and ``loki.revision_errors``. Pure pydantic.

Every field has a default and unknown keys are ignored, so a bundle written by hand (a rule
test's evidence) still reads; the collectors set every field."""

from __future__ import annotations

from pydantic import Field

from medic.collectors.output_base import Out


class ComparedQuery(Out):
    name: str = ""  # requests | errors_5xx | latency_p99
    expr: str = ""
    baseline_expr: str = ""
    new: float | None = None
    baseline: float | None = None
    error: str | None = None


class AlertSeen(Out):
    alertname: str = ""
    severity: str | None = None
    pod: str | None = None
    deployment: str | None = None
    container: str | None = None


class RevisionCompareOutput(Out):
    revision: int = 0
    baseline_revision: int | None = None
    elapsed_s: float = 0
    queries: list[ComparedQuery] = Field(default_factory=list)
    alerts: list[AlertSeen] = Field(default_factory=list)
    alerts_error: str | None = None


class RevisionErrorsOutput(Out):
    query: str = ""
    baseline_query: str = ""
    elapsed_s: float = 0
    new_lines: float = 0
    new_per_minute: float | None = None  # None only in a hand-written bundle: not measured
    baseline_per_minute: float | None = None
