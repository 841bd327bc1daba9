"""The incident as Markdown: what is wrong, what was checked, what was done, in a minute's read.

Every value that an alert controls (its name, labels, annotations, the target, log lines, and the
finding, decision and timeline text built from them) goes through :mod:`medic.incidents.report.escape`:
one line, no markup. Only this module's own template makes headings, list items and tables.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from medic.domain.incident import Finding, utcnow
from medic.incidents.report.escape import md_code, md_fence, md_html, md_link, md_text
from medic.incidents.report.links import LinkSettings
from medic.incidents.report.oncall import OnCall, is_coverage, oncall
from medic.incidents.report.verification import against, gaps, headline, sample_rows, window_text
from medic.incidents.views import IncidentView

_ICON = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
_STATUS_MARK = {"ok": "✅", "error": "❌", "timeout": "⏱", "skipped": "⏭", "not_configured": "⚪"}


def _brief(data: Any, limit: int = 600) -> str:
    text = json.dumps(data, default=str, ensure_ascii=False, indent=1)
    return text if len(text) <= limit else text[:limit] + "\n… (truncated; full data in the JSON bundle)"


def _facts(view: IncidentView, ctx: OnCall) -> list[str]:
    inc = view.incident
    target = md_code(str(inc.target)) if inc.target else "none"
    out = [
        f"- **Incident**: {md_code(inc.id)} — {md_text(inc.status)}, {md_text(inc.phase.value)}",
        f"- **Severity**: {md_text(inc.severity)}",
        f"- **Target**: {target}"
        + (" (inferred from the pod name)" if inc.target and inc.target.inferred else ""),
        f"- **Rule / playbook**: {md_text(inc.rule or 'no rule matched')} / {md_text(inc.playbook or '—')}",
        f"- **Opened**: {inc.created_at:%Y-%m-%d %H:%M:%S} UTC"
        + (f", resolved {inc.resolved_at:%Y-%m-%d %H:%M:%S} UTC" if inc.resolved_at else ""),
        f"- **Alerts**: {inc.alerts_firing} firing of {inc.alerts_total}",
    ]
    if ctx.links:
        out.append("- **Links**: " + " · ".join(md_link(link.name, link.url) for link in ctx.links))
    return out


def _from_alerts(ctx: OnCall) -> list[str]:
    """The alerts' own summary, description and runbook (distinct values)."""
    out: list[str] = []
    for label, values in (("Summary", ctx.summaries), ("Description", ctx.descriptions)):
        out += [f"- **{label}**: {md_text(v)}" for v in values.values]
        if values.more:
            out.append(f"- … and {values.more} other {label.lower()}(s) among the alerts")
    out += [f"- **Runbook**: {md_link(url, url)}" for url in ctx.runbooks.values]
    return ["## From the alerts", *out, ""] if out else []


def _finding(i: int, f: Finding, ctx: OnCall) -> list[str]:
    icon = _ICON.get(f.severity, "")
    if is_coverage(f) and ctx.gaps:
        out = [f"{i}. {icon} **{md_text(ctx.coverage_line)}** {md_code(f.code)}"]
        out += [f"   - {md_code(g.step)} {md_text(g.status)}: {md_text(g.reason)}" for g in ctx.gaps]
        return out
    out = [f"{i}. {icon} **{md_text(f.summary)}** {md_code(f.code)}"]
    if f.evidence:
        out.append(f"   - evidence: {', '.join(md_code(e) for e in f.evidence)}")
    out += [f"   - next: {md_code(step)}" for step in f.next_steps]
    return out


def rollout_rows(view: IncidentView) -> list[dict[str, Any]]:
    """The rollout timeline a finding (or the rollback plan's facts) carries, oldest first."""
    inc = view.incident
    for f in inc.findings:
        rows = f.details.get("timeline")
        if isinstance(rows, list) and rows:
            return [r for r in rows if isinstance(r, dict)]
    for a in inc.actions:
        rows = ((a.result or {}).get("facts") or {}).get("timeline")
        if isinstance(rows, list) and rows:
            return [r for r in rows if isinstance(r, dict)]
    return []


def _rollout(view: IncidentView) -> list[str]:
    rows = rollout_rows(view)
    if not rows:
        return []
    out = ["## Rollout timeline", "", "| revision | images | became current | source | note |"]
    out.append("|---|---|---|---|---|")
    for r in rows:
        mark = " (current)" if r.get("current") else ""
        out.append(
            f"| {md_text(str(r.get('revision')))}{mark} | {md_text(', '.join(r.get('images') or []))} "
            f"| {md_text(r.get('became_current') or 'unknown')} | {md_text(r.get('source') or '')} "
            f"| {md_text(r.get('note') or '')} |"
        )
    return [*out, ""]


def _verification(view: IncidentView) -> list[str]:
    """A deploy verification: its verdict line, the window and one table row per sample."""
    v = view.incident.verification
    if v is None:
        return []
    out = [
        "## Deploy verification",
        "",
        f"- **State**: {md_text(headline(v))}",
        f"- **Revision**: {md_text(against(v))}"
        + (f", ReplicaSet {md_code(v.replicaset)}" if v.replicaset else "")
        + (f", baseline ReplicaSet {md_code(v.baseline_replicaset)}" if v.baseline_replicaset else ""),
        f"- **Window**: {md_text(window_text(v))}",
        "",
    ]
    rows = sample_rows(v)
    if not rows:
        return [*out, "No sample yet.", ""]
    out += [
        "| time | pods ready | restarts | requests | 5xx new vs baseline | p99 new vs baseline "
        "| error lines/min | alerts |",
        "|---|---|---|---|---|---|---|---|",
    ]
    # the measurement cells are numbers and units only; pods (waiting reasons) and alerts are data
    out += [
        f"| {r.offset} ({r.at:%H:%M:%S}) | {md_text(r.pods)} | {r.restarts} | {r.requests} "
        f"| {r.error_ratio_5xx} | {r.latency_p99} | {r.error_logs_per_minute} | {md_text(r.alerts)} |"
        for r in rows
    ]
    missing = gaps(v)
    if missing:
        out += ["", "Not measured:", *(f"- {md_text(g)}" for g in missing)]
    return [*out, ""]


def _checked(view: IncidentView) -> list[str]:
    inc = view.incident
    if not inc.evidence:
        return ["Nothing (no playbook ran)."]
    out = ["| step | status | time | note |", "|---|---|---|---|"]
    for ev in inc.evidence:
        note = ev.error or ("truncated" if ev.truncated else "")
        out.append(
            f"| {md_code(ev.step, table=True)} | {_STATUS_MARK.get(ev.status.value, '')} "
            f"{md_text(ev.status.value)} | {ev.duration_ms:.0f} ms | {md_text(note)} |"
        )
    for ev in inc.evidence:
        if ev.ok and ev.data is not None:
            out += ["", f"<details><summary>{md_html(ev.step)}</summary>", ""]
            out += md_fence(_brief(ev.data), "json")
            out.append("</details>")
    return out


def _alerts(view: IncidentView) -> list[str]:
    out = ["| status | alert | labels | since |", "|---|---|---|---|"]
    for al in view.alerts:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(al.labels.items()) if k != "alertname")
        out.append(
            f"| {md_text(al.status)} | {md_text(al.labels.get('alertname', ''))} | {md_text(labels)} "
            f"| {al.startsAt:%Y-%m-%d %H:%M:%S} |"
        )
    if view.more_alerts:
        out += ["", f"… and {view.more_alerts} more: `GET /api/v1/incidents/{view.incident.id}/alerts`"]
    return out


def render_markdown(
    view: IncidentView, links: LinkSettings | None = None, now: datetime | None = None
) -> str:
    """The report. ``links``: base URLs of Prometheus/Grafana/Alertmanager (no links without)."""
    view = view.redacted()
    inc = view.incident
    ctx = oncall(view, links, now or utcnow())
    out: list[str] = [
        f"# {_ICON.get(inc.severity, '')} {md_text(inc.title or inc.id)}".replace("  ", " "),
        "",
    ]
    out += [*_facts(view, ctx), ""]
    out += _from_alerts(ctx)
    out += _verification(view)
    out.append("## Findings")
    if not inc.findings:
        out.append("No findings." if inc.evidence else "Not diagnosed (no playbook for these alerts).")
    for i, f in enumerate(inc.findings, 1):
        out += _finding(i, f, ctx)
    out += ["", *_rollout(view), "## Actions"]
    if not inc.actions:
        decisions = [t for t in inc.timeline if t.kind == "decision"]
        out.append(md_text(decisions[-1].message) if decisions else "None.")
    for a in inc.actions:
        out.append(
            f"- **{md_text(a.action)}** ({md_code(a.use)}) on {md_code(str(a.target))}: "
            f"**{md_text(a.status.value)}**, mode {md_text(a.mode)} — {md_text(a.reason)}"
            + (f", approved by {md_text(a.approved_by)}" if a.approved_by else "")
        )
        out += [f"  - {'✔' if g.allowed else '✘'} {md_text(g.guard)}: {md_text(g.reason)}" for g in a.guards]
    out += ["", "## What was checked", *_checked(view), "", "## Alerts", *_alerts(view), "", "## Timeline"]
    out += [f"- {t.at:%H:%M:%S} **{md_text(t.kind)}** {md_text(t.message)}" for t in inc.timeline]
    out.append("")
    return "\n".join(out)
