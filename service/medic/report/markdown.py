"""The incident as Markdown: what is wrong, what was checked, what was done, in a minute's read."""

from __future__ import annotations

import json
from typing import Any

from medic.bundle import IncidentView

_ICON = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
_STATUS_MARK = {"ok": "✅", "error": "❌", "timeout": "⏱", "skipped": "⏭", "not_configured": "⚪"}


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _brief(data: Any, limit: int = 600) -> str:
    text = json.dumps(data, default=str, ensure_ascii=False, indent=1)
    return text if len(text) <= limit else text[:limit] + "\n… (truncated; full data in the JSON bundle)"


def render_markdown(view: IncidentView) -> str:
    view = view.redacted()
    inc, alerts = view.incident, view.alerts
    out: list[str] = []
    out.append(f"# {_ICON.get(inc.severity, '')} {inc.title or inc.id}".replace("  ", " "))
    out.append("")
    out.append(f"- **Incident**: `{inc.id}` — {inc.status}, {inc.phase.value}")
    out.append(f"- **Severity**: {inc.severity}")
    out.append(
        f"- **Target**: {inc.target or 'none'}"
        + (" (inferred from the pod name)" if inc.target and inc.target.inferred else "")
    )
    out.append(f"- **Rule / playbook**: {inc.rule or 'no rule matched'} / {inc.playbook or '—'}")
    out.append(
        f"- **Opened**: {inc.created_at:%Y-%m-%d %H:%M:%S} UTC"
        + (f", resolved {inc.resolved_at:%Y-%m-%d %H:%M:%S} UTC" if inc.resolved_at else "")
    )
    out.append(f"- **Alerts**: {inc.alerts_firing} firing of {inc.alerts_total}")
    out.append("")
    out.append("## Findings")
    if not inc.findings:
        out.append("No findings." if inc.evidence else "Not diagnosed (no playbook for these alerts).")
    for i, f in enumerate(inc.findings, 1):
        out.append(f"{i}. {_ICON.get(f.severity, '')} **{f.summary}** `{f.code}`")
        if f.evidence:
            out.append(f"   - evidence: {', '.join(f'`{e}`' for e in f.evidence)}")
        for step in f.next_steps:
            out.append(f"   - next: `{step}`")
    out.append("")
    out.append("## Actions")
    if not inc.actions:
        decisions = [t for t in inc.timeline if t.kind == "decision"]
        out.append(decisions[-1].message if decisions else "None.")
    for a in inc.actions:
        out.append(
            f"- **{a.action}** (`{a.use}`) on {a.target}: **{a.status.value}**, mode {a.mode} — {a.reason}"
        )
        for g in a.guards:
            out.append(f"  - {'✔' if g.allowed else '✘'} {g.guard}: {g.reason}")
    out.append("")
    out.append("## What was checked")
    if inc.evidence:
        out.append("| step | status | time | note |")
        out.append("|---|---|---|---|")
        for ev in inc.evidence:
            note = ev.error or ("truncated" if ev.truncated else "")
            out.append(
                f"| `{ev.step}` | {_STATUS_MARK.get(ev.status.value, '')} {ev.status.value} "
                f"| {ev.duration_ms:.0f} ms | {_cell(note)} |"
            )
        for ev in inc.evidence:
            if ev.ok and ev.data is not None:
                out.append("")
                out.append(f"<details><summary>{ev.step}</summary>")
                out.append("")
                out.append("```json")
                out.append(_brief(ev.data))
                out.append("```")
                out.append("</details>")
    else:
        out.append("Nothing (no playbook ran).")
    out.append("")
    out.append("## Alerts")
    out.append("| status | alert | labels | since |")
    out.append("|---|---|---|---|")
    for al in alerts:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(al.labels.items()) if k != "alertname")
        out.append(
            f"| {al.status} | {_cell(al.labels.get('alertname', ''))} | {_cell(labels)} "
            f"| {al.startsAt:%Y-%m-%d %H:%M:%S} |"
        )
    if view.more_alerts:
        out.append("")
        out.append(f"… and {view.more_alerts} more: `GET /api/v1/incidents/{inc.id}/alerts`")
    out.append("")
    out.append("## Timeline")
    for t in inc.timeline:
        out.append(f"- {t.at:%H:%M:%S} **{t.kind}** {t.message}")
    out.append("")
    return "\n".join(out)
