"""Grafana annotations: a taken action (a rollback) and an incident's span on the dashboards.

``POST <url>/api/annotations`` with a service-account bearer token. A point annotation when an
action ran (succeeded or failed: tags ``medic``, the rule, the namespace, the action and its
status), and a region from opening to resolution when the incident resolves. Diagnoses,
proposals and refusals are not annotated: they changed nothing on the graphs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from medic.domain.incident import ActionRecord, Incident
from medic.incidents.report.escape import fold
from medic.notify.base import Notifier
from medic.notify.config import ChannelSecrets, GrafanaChannel
from medic.notify.delivery import Outgoing
from medic.notify.events import TAKEN, Event, EventKind, Links, MessageKind, action_line


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _taken(event: Event) -> ActionRecord | None:
    if event.kind is EventKind.ACTION:
        return event.action if event.action and event.action.status in TAKEN else None
    if event.kind is EventKind.DIAGNOSED:
        taken = [a for a in event.incident.actions if a.status in TAKEN]
        return taken[-1] if taken else None
    return None


def tags(inc: Incident, *more: str, extra: list[str] | None = None) -> list[str]:
    out = ["medic", inc.rule or "", inc.namespace, *more, *(extra or [])]
    return list(dict.fromkeys(t for t in out if t))


def annotation(config: GrafanaChannel, event: Event, links: Links) -> dict[str, Any] | None:
    inc = event.incident
    suffix = f" — {links.incident}" if links.incident else f" — incident {inc.id}"
    if links.oncall.summaries.values:  # the alert's own words, one line
        suffix = f" — {fold(links.oncall.summaries.values[0])}{suffix}"
    body: dict[str, Any]
    if event.kind is EventKind.RESOLVED and inc.resolved_at is not None:
        body = {
            "time": _ms(inc.created_at),
            "timeEnd": _ms(inc.resolved_at),
            "tags": tags(inc, "resolved", extra=config.tags),
            "text": fold(f"Medic: {inc.title or inc.id} (resolved){suffix}"),
        }
    elif (record := _taken(event)) is not None:
        body = {
            "time": _ms(record.at),
            "tags": tags(inc, record.action, record.status.value, extra=config.tags),
            "text": fold(f"Medic: {action_line(record)}{suffix}"),
        }
    else:
        return None
    if config.dashboard_uid:
        body["dashboardUID"] = config.dashboard_uid
    if config.panel_id is not None:
        body["panelId"] = config.panel_id
    return body


class GrafanaNotifier(Notifier):
    type = "grafana"
    config: GrafanaChannel

    def __init__(self, name: str, config: GrafanaChannel, secrets: ChannelSecrets) -> None:
        super().__init__(name, config, secrets)

    def plan(self, event: Event, first_sent: bool) -> MessageKind | None:
        # annotations are independent marks, not a conversation: each stands on its own
        return MessageKind.FIRST

    def build(self, event: Event, kind: MessageKind, links: Links, now: datetime) -> Outgoing | None:
        body = annotation(self.config, event, links)
        if body is None:
            return None
        return Outgoing.json(
            f"{self.config.url}/api/annotations",
            body,
            {"Authorization": f"Bearer {self.secrets.token}"},
        )
