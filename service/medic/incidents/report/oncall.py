"""What on-call sees beside the diagnosis: the alerts' own words, links, what could not be checked.

Pure: built from a *redacted* :class:`~medic.incidents.views.IncidentView` (so nothing here can show a
secret), the link settings and the time. The Markdown report, the Slack message, the webhook body,
the Grafana annotation and the incident page all render this one object.

- ``summary`` / ``description`` / ``runbook_url`` annotations of the first alerts (firing first):
  the distinct values, at most a few, each cut to a readable length;
- links: Prometheus graph, Grafana Explore (metrics, logs) over the incident's time range, and a
  prefilled Alertmanager silence (the ``externalURL`` of the sending Alertmanager when the
  alerts carry one, else ``MEDIC_ALERTMANAGER_URL``);
- coverage gaps: one short line per check that gave no data (step, status, reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from medic.domain.evidence import StepStatus
from medic.domain.incident import Finding, Incident, IncidentAlert
from medic.domain.redact import REDACTED, is_secret_key, redact_text
from medic.incidents.report.links import (
    Link,
    LinkSettings,
    TimeRange,
    alert_expression,
    base_url,
    grafana_explore,
    logql_selector,
    prometheus_graph,
    silence_url,
)
from medic.incidents.views import IncidentView

MAX_SUMMARIES = 3
MAX_DESCRIPTIONS = 2
MAX_RUNBOOKS = 3
SUMMARY_CHARS = 300
DESCRIPTION_CHARS = 600
REASON_CHARS = 120
COVERAGE = "coverage.incomplete"
GAP_STATUSES = frozenset(s for s in StepStatus if s not in (StepStatus.OK, StepStatus.SKIPPED))


@dataclass(frozen=True)
class Gap:
    """A check that gave no data."""

    step: str
    status: str
    reason: str


@dataclass(frozen=True)
class Distinct:
    """Distinct values of one annotation over the shown alerts: the first few, and how many."""

    values: list[str] = field(default_factory=list)
    total: int = 0

    @property
    def more(self) -> int:
        return self.total - len(self.values)


@dataclass(frozen=True)
class OnCall:
    summaries: Distinct = field(default_factory=Distinct)
    descriptions: Distinct = field(default_factory=Distinct)
    runbooks: Distinct = field(default_factory=Distinct)
    links: list[Link] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    checks: int = 0  # how many checks ran

    @property
    def coverage_line(self) -> str:
        return f"{len(self.gaps)} of {self.checks} checks gave no data" if self.gaps else ""


def cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def http_url(url: str) -> str | None:
    """An alert's URL shown as a link only when it is a plain http(s) URL."""
    url = url.strip()
    return url if base_url(url) is not None and not any(c.isspace() for c in url) else None


def distinct(alerts: list[IncidentAlert], keys: tuple[str, ...], limit: int, chars: int) -> Distinct:
    seen: dict[str, None] = {}
    for alert in alerts:
        value = next((alert.annotations[k] for k in keys if alert.annotations.get(k, "").strip()), "")
        if value:
            seen.setdefault(cut(value, chars), None)
    values = list(seen)
    return Distinct(values[:limit], len(values))


def runbooks(alerts: list[IncidentAlert]) -> Distinct:
    urls = [u for a in alerts if (u := http_url(a.annotations.get("runbook_url", "")))]
    values = list(dict.fromkeys(urls))
    return Distinct(values[:MAX_RUNBOOKS], len(values))


def gaps(inc: Incident) -> list[Gap]:
    """One line per check that gave no data: its step, status and the first line of its error."""
    return [
        Gap(ev.step, ev.status.value, cut(_first_line(ev.error) or "no detail", REASON_CHARS))
        for ev in inc.evidence
        if ev.status in GAP_STATUSES
    ]


def _first_line(text: str | None) -> str:
    return next((line for line in (text or "").splitlines() if line.strip()), "")


def silence_labels(inc: Incident, alerts: list[IncidentAlert]) -> dict[str, str]:
    """The labels every alert of the incident shares (else the first alert's), without any that
    redaction touched: a silence prefilled with a placeholder would match nothing."""
    labels = inc.labels or (alerts[0].labels if alerts else {})
    return {k: v for k, v in labels.items() if v and REDACTED not in v and not is_secret_key(k)}


def _exprs(view: IncidentView) -> tuple[list[str], list[str]]:
    """PromQL (the alerts' own expressions, then the playbook's queries) and LogQL."""
    promql = [e for a in view.alerts if (e := alert_expression(a.generatorURL))]
    logql: list[str] = []
    for ev in view.incident.evidence:
        data = ev.data if isinstance(ev.data, dict) else {}
        if ev.collector == "prometheus.query":
            promql += [
                str(q["expr"]) for q in data.get("queries") or [] if isinstance(q, dict) and q.get("expr")
            ]
        elif ev.collector == "loki.query" and data.get("logql"):
            logql.append(str(data["logql"]))
    return _clean(promql), _clean(logql)


def _clean(exprs: list[str]) -> list[str]:
    """Redacted once more as decoded text (a generatorURL holds its query percent-encoded, where
    the redaction of the incident could not see it); a query that held a secret is left out."""
    return [e for e in exprs if REDACTED not in e and redact_text(e) == e]


def _fallback_logql(inc: Incident) -> list[str]:
    labels = {"namespace": inc.namespace}
    if inc.labels.get("container"):
        labels["container"] = inc.labels["container"]
    selector = logql_selector({k: v for k, v in labels.items() if REDACTED not in v})
    return [selector] if selector else []


def alertmanager_base(alerts: list[IncidentAlert], settings: LinkSettings) -> str:
    """The sending Alertmanager's externalURL when the alerts carry one, else the setting."""
    return next((a.alertmanager_url for a in alerts if a.alertmanager_url), "") or settings.alertmanager_url


def links(view: IncidentView, settings: LinkSettings, now: datetime) -> list[Link]:
    inc, alerts = view.incident, view.alerts
    first = min([a.startsAt for a in alerts] + [inc.created_at])
    span = TimeRange.around(first, inc.resolved_at, settings.margin)
    promql, logql = _exprs(view)
    logql = logql or _fallback_logql(inc)
    candidates = [
        ("Prometheus", prometheus_graph(settings.prometheus_url, promql, span, now)),
        (
            "Grafana: metrics",
            grafana_explore(
                settings.grafana_url, settings.grafana_prometheus_datasource, "prometheus", promql, span
            ),
        ),
        (
            "Grafana: logs",
            grafana_explore(settings.grafana_url, settings.grafana_loki_datasource, "loki", logql, span),
        ),
        (
            "Silence in Alertmanager",
            silence_url(alertmanager_base(alerts, settings), silence_labels(inc, alerts)),
        ),
    ]
    return [Link(name, url) for name, url in candidates if url]


def oncall(view: IncidentView, settings: LinkSettings | None, now: datetime) -> OnCall:
    """What on-call sees beside the findings. ``view`` must be redacted (``view.redacted()``)."""
    return OnCall(
        summaries=distinct(view.alerts, ("summary",), MAX_SUMMARIES, SUMMARY_CHARS),
        descriptions=distinct(view.alerts, ("description", "message"), MAX_DESCRIPTIONS, DESCRIPTION_CHARS),
        runbooks=runbooks(view.alerts),
        links=links(view, settings, now) if settings is not None else [],
        gaps=gaps(view.incident),
        checks=len(view.incident.evidence),
    )


def is_coverage(finding: Finding) -> bool:
    return finding.code == COVERAGE
