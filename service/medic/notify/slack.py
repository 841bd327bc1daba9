"""Slack incoming webhook, Block Kit.

An incoming webhook cannot edit or thread what it posted (it answers ``ok``, not a message ts),
so an incident gets one full message (title, severity, top findings, the action taken or
proposed, links) and then one short update line per later event (approval, verification,
resolution), each naming the incident and linking to it. Never more than one message per event.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from medic.domain.incident import ActionStatus, Incident
from medic.incidents.report.escape import slack_code, slack_link, slack_text
from medic.incidents.report.oncall import OnCall, is_coverage
from medic.incidents.report.verification import headline
from medic.notify.base import Notifier
from medic.notify.config import ChannelSecrets, SlackChannel
from medic.notify.delivery import Outgoing
from medic.notify.events import Event, Links, MessageKind, action_line, ranked, update_line

ICON = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}
STATUS_ICON = {
    ActionStatus.SUCCEEDED: ":white_check_mark:",
    ActionStatus.FAILED: ":x:",
    ActionStatus.REFUSED: ":no_entry_sign:",
    ActionStatus.AWAITING_APPROVAL: ":hourglass_flowing_sand:",
    ActionStatus.PLANNED: ":memo:",
    ActionStatus.SKIPPED: ":fast_forward:",
    ActionStatus.RUNNING: ":gear:",
}
TEXT_LIMIT = 2900  # a section's text may hold 3000 characters
TOP_FINDINGS = 3
TOP_GAPS = 5
DESCRIPTION_CHARS = 300
VERDICT_CHARS = 400

# Slack mrkdwn: one line per value, ``& < >`` as entities, so ``<!channel>`` or ``<http://x|y>``
# in an alert label stays text, never a mention or a disguised link, and a newline in it can
# never start a line of its own (a forged "Action" line).
escape = slack_text
code = slack_code


def link(url: str | None, label: str) -> str:
    return slack_link(url, label)


def _cut(text: str, limit: int = TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text)}}


def _findings(inc: Incident, ctx: OnCall) -> str:
    if not inc.findings:
        return "_No findings._" if inc.evidence else "_Not diagnosed: no playbook for these alerts._"
    lines = ["*Findings*"]
    for i, f in enumerate(ranked(inc.findings)[:TOP_FINDINGS], 1):
        if is_coverage(f) and ctx.gaps:
            lines.append(f"{i}. {ICON.get(f.severity, '')} {escape(ctx.coverage_line)} {code(f.code)}")
            lines += [
                f"      • {code(g.step)} {escape(g.status)}: {escape(g.reason)}" for g in ctx.gaps[:TOP_GAPS]
            ]
            if len(ctx.gaps) > TOP_GAPS:
                lines.append(f"      • _…and {len(ctx.gaps) - TOP_GAPS} more on the incident page_")
            continue
        lines.append(f"{i}. {ICON.get(f.severity, '')} {escape(f.summary)} {code(f.code)}")
        lines += [f"      next: {code(step)}" for step in f.next_steps[:2]]
    if len(inc.findings) > TOP_FINDINGS:
        lines.append(f"_…and {len(inc.findings) - TOP_FINDINGS} more on the incident page_")
    return "\n".join(lines)


VERIFY_ICON = {
    "passed": ":white_check_mark:",
    "failed": ":x:",
    "inconclusive": ":grey_question:",
    "verifying": ":hourglass_flowing_sand:",
}


def _verification(inc: Incident) -> str:
    """A deploy verification's verdict, one line (the samples are on the incident page)."""
    v = inc.verification
    if v is None:
        return ""
    return f"*Deploy verification* {VERIFY_ICON.get(v.state, '')} {escape(_cut(headline(v), VERDICT_CHARS))}"


def _actions(inc: Incident, links: Links) -> str:
    if not inc.actions:
        return ""
    lines = ["*Action*"]
    for i, a in enumerate(inc.actions):
        line = f"{STATUS_ICON.get(a.status, '')} {escape(action_line(a))}"
        if a.status is ActionStatus.AWAITING_APPROVAL and links.approve.get(i):
            line += f"\n      {link(links.approve[i], 'Review and approve or reject')}"
        lines.append(line)
    return "\n".join(lines)


def _from_alerts(ctx: OnCall) -> str:
    """The alerts' own summary, description and runbook: what the alert's author wanted said."""
    lines = [f"*Summary*: {escape(v)}" for v in ctx.summaries.values]
    if ctx.summaries.more:
        lines.append(f"_…and {ctx.summaries.more} other summaries_")
    lines += [f"*Description*: {escape(_cut(v, DESCRIPTION_CHARS))}" for v in ctx.descriptions.values[:1]]
    if ctx.runbooks.values:
        lines.append("*Runbook*: " + " · ".join(link(u, u) for u in ctx.runbooks.values))
    return "\n".join(lines)


def _links(ctx: OnCall) -> str:
    """The explore and silence links, each whole or not at all (a cut link would be broken)."""
    out: list[str] = []
    for x in ctx.links:
        piece = link(x.url, x.name)
        if len(" · ".join([*out, piece])) <= TEXT_LIMIT:
            out.append(piece)
    return " · ".join(out)


def first_message(event: Event, links: Links) -> dict[str, Any]:
    inc = event.incident
    title = f"{inc.title or inc.id}"
    facts = [
        f"*Severity*\n{ICON.get(inc.severity, '')} {inc.severity}",
        f"*Status*\n{inc.status}, {inc.phase.value}",
        f"*Target*\n{code(str(inc.target)) if inc.target else 'none'}",
        f"*Rule*\n{escape(inc.rule or 'no rule matched')}",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(escape(title), 150), "emoji": True}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": _cut(f, 1900)} for f in facts]},
    ]
    if said := _from_alerts(links.oncall):
        blocks.append(_section(said))
    if verdict := _verification(inc):
        blocks.append(_section(verdict))
    blocks.append(_section(_findings(inc, links.oncall)))
    if actions := _actions(inc, links):
        blocks.append(_section(actions))
    context = f"Medic · {code(inc.id)} · {inc.alerts_firing} of {inc.alerts_total} alert(s) firing"
    if links.incident:
        context += f" · {link(links.incident, 'Open the incident')}"
    elements = [{"type": "mrkdwn", "text": _cut(context)}]
    if more := _links(links.oncall):
        elements.append({"type": "mrkdwn", "text": more})
    blocks.append({"type": "context", "elements": elements})
    top = f": {ranked(inc.findings)[0].summary}" if inc.findings else ""
    return {"text": _cut(escape(f"[{inc.severity}] {title}{top}")), "blocks": blocks}


def update_message(event: Event, links: Links) -> dict[str, Any]:
    inc = event.incident
    line = update_line(event)
    icon = ":white_check_mark:" if event.kind.value == "resolved" else ""
    if event.action is not None:
        icon = STATUS_ICON.get(event.action.status, "")
    text = (
        f"↳ *Update* on {link(links.incident, inc.title or inc.id)} ({code(inc.id)})\n{icon} {escape(line)}"
    )
    fallback = escape(f"Update on {inc.title or inc.id}: {line}")
    return {"text": _cut(fallback), "blocks": [_section(text)]}


class SlackNotifier(Notifier):
    type = "slack"
    config: SlackChannel

    def __init__(self, name: str, config: SlackChannel, secrets: ChannelSecrets) -> None:
        super().__init__(name, config, secrets)

    def build(self, event: Event, kind: MessageKind, links: Links, now: datetime) -> Outgoing | None:
        if not self.config.approval_links:
            links = replace(links, approve={})
        body = first_message(event, links) if kind is MessageKind.FIRST else update_message(event, links)
        return Outgoing.json(self.secrets.url, body)
