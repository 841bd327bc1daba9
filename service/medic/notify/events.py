"""What notifiers are told: an event about an incident, and what it means for one channel.

Pure. An incident yields one *first* message per channel (when it is diagnosed, or when it opens
without a playbook) and then short *updates* (an approved or rejected action, its verification,
the resolution). Every event has a dedupe key, so the same event is never sent twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from medic.domain.incident import SEVERITY_ORDER, ActionRecord, ActionStatus, Finding, Incident
from medic.domain.redact import redact
from medic.incidents.report.oncall import OnCall
from medic.notify.config import ChannelBase


class EventKind(StrEnum):
    OPENED = "opened"
    DIAGNOSED = "diagnosed"
    ACTION = "action"  # an action decided after the diagnosis (approval, rejection)
    RESOLVED = "resolved"


class MessageKind(StrEnum):
    FIRST = "first"  # the one full message of an incident on a channel
    UPDATE = "update"  # a short follow-up


# Actions that changed (or tried to change) something: what dashboards should show.
TAKEN = frozenset({ActionStatus.SUCCEEDED, ActionStatus.FAILED, ActionStatus.RUNNING})


@dataclass(frozen=True)
class Event:
    kind: EventKind
    incident: Incident  # a redacted snapshot, taken when the event happened
    at: datetime
    action_index: int | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def action(self) -> ActionRecord | None:
        if self.action_index is None or not 0 <= self.action_index < len(self.incident.actions):
            return None
        return self.incident.actions[self.action_index]

    @property
    def key(self) -> str:
        """Dedupe key within the incident: an event is delivered once per channel."""
        if self.kind is EventKind.ACTION:
            status = self.action.status.value if self.action else "none"
            return f"action:{self.action_index}:{status}"
        return self.kind.value


@dataclass(frozen=True)
class Links:
    """Absolute URLs (None/empty without MEDIC_PUBLIC_URL): the incident page, approval pages by
    action index; and what on-call sees beside the findings (the alerts' summary, description and
    runbook, links to Prometheus/Grafana/Alertmanager, coverage gaps), built from the redacted
    incident and its first alerts."""

    incident: str | None = None
    approve: Mapping[int, str] = field(default_factory=dict)
    oncall: OnCall = field(default_factory=OnCall)


def snapshot(incident: Incident) -> Incident:
    """A redacted deep copy: what leaves Medic is built from this only."""
    return Incident.model_validate(redact(incident.model_dump(mode="json")))


def route(event: Event, rule_notify: list[str], channels: Mapping[str, ChannelBase]) -> list[str]:
    """The channels an event goes to: named by the incident's rule (or ``all_rules``), at or above
    their minimum severity, subscribed to the event's kind."""
    wanted = set(rule_notify)
    level = SEVERITY_ORDER.get(event.incident.severity, 0)
    return [
        name
        for name, ch in channels.items()
        if (name in wanted or ch.all_rules)
        and level >= SEVERITY_ORDER[ch.min_severity]
        and event.kind.value in ch.events
    ]


def plan_message(event: Event, first_sent: bool, events: list[str] | None = None) -> MessageKind | None:
    """What to send to a channel for this event, given whether its first message went out.

    A channel subscribed to neither ``opened`` nor ``diagnosed`` never gets a first message in
    the usual sense: each event it wants is sent whole (e.g. a resolutions-only channel)."""
    inc = event.incident
    if events is not None and not {"opened", "diagnosed"} & set(events):
        return MessageKind.FIRST
    if event.kind is EventKind.OPENED:
        # with a playbook, the diagnosis follows within seconds and makes the first message
        return MessageKind.FIRST if inc.playbook is None and not first_sent else None
    if event.kind is EventKind.DIAGNOSED:
        return None if first_sent else MessageKind.FIRST
    if event.kind is EventKind.ACTION:
        return MessageKind.UPDATE if first_sent else MessageKind.FIRST
    # resolved: news only to a channel that heard of the incident
    return MessageKind.UPDATE if first_sent else None


def ranked(findings: list[Finding]) -> list[Finding]:
    """Most severe first (stable: the analyzers' order within a severity)."""
    return sorted(findings, key=lambda f: -SEVERITY_ORDER.get(f.severity, 0))


def action_line(record: ActionRecord) -> str:
    """``rollback (k8s.rollback_deployment) on deployment/ns/app: succeeded — reason``."""
    who = f", approved by {record.approved_by}" if record.approved_by else ""
    text = f"{record.action} on {record.target}: {record.status.value}{who}"
    return f"{text} — {record.reason}" if record.reason else text


def update_line(event: Event) -> str:
    inc = event.incident
    if event.kind is EventKind.RESOLVED:
        took = f" after {duration_text(inc.created_at, inc.resolved_at)}" if inc.resolved_at else ""
        v = inc.verification
        if v is not None and v.state == "failed":
            return f"resolved{took}: the Deployment left revision {v.revision}, whose verification failed"
        if v is not None and v.final:
            return f"resolved{took}: verification {v.state} (revision {v.revision})"
        return f"resolved{took}: every alert of the incident is resolved"
    if event.kind is EventKind.ACTION and event.action is not None:
        return action_line(event.action)
    if event.kind is EventKind.DIAGNOSED and inc.findings:
        return f"diagnosed: {ranked(inc.findings)[0].summary}"
    return event.kind.value


def duration_text(start: datetime, end: datetime) -> str:
    seconds = max(int((end - start).total_seconds()), 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
