"""What the API, the CLI, the report and the pages show of an incident: the bundle and its
first alerts (firing ones first; the rest are paged from ``/api/v1/incidents/{id}/alerts``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medic.domain.incident import Incident, IncidentAlert
from medic.domain.redact import redact, redact_async
from medic.incidents.base import IncidentStore

SHOWN_ALERTS = 100  # alerts a report or an incident document carries


async def first_alerts(store: IncidentStore, incident_id: str, limit: int) -> list[IncidentAlert]:
    """Up to ``limit`` of the incident's alerts: the firing ones first, each part in the order
    they were first seen."""
    alerts, _ = await store.alerts(incident_id, status="firing", limit=limit)
    if len(alerts) < limit:
        resolved, _ = await store.alerts(incident_id, status="resolved", limit=limit - len(alerts))
        alerts += resolved
    return alerts


@dataclass
class IncidentView:
    incident: Incident
    alerts: list[IncidentAlert]  # up to SHOWN_ALERTS of incident.alerts_total
    is_redacted: bool = False  # built by redacted(): redacting it again changes nothing

    @property
    def more_alerts(self) -> int:
        return max(0, self.incident.alerts_total - len(self.alerts))

    def redacted(self) -> IncidentView:
        """A redacted deep copy: what is shown to people is built from this only."""
        if self.is_redacted:
            return self
        return IncidentView.from_document(redact(self.document()), redacted=True)

    async def redacted_async(self) -> IncidentView:
        """:meth:`redacted` for code on the event loop (a large incident is redacted in a thread)."""
        if self.is_redacted:
            return self
        return IncidentView.from_document(await redact_async(self.document()), redacted=True)

    def document(self) -> dict[str, Any]:
        """The incident as JSON, with its first alerts under ``alerts``."""
        return self.incident.model_dump(mode="json") | {
            "alerts": [a.model_dump(mode="json") for a in self.alerts]
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any], *, redacted: bool = False) -> IncidentView:
        return cls(
            Incident.model_validate(doc),
            [IncidentAlert.model_validate(a) for a in doc.get("alerts") or []],
            is_redacted=redacted,
        )


async def incident_view(store: IncidentStore, incident_id: str) -> IncidentView | None:
    incident = await store.get(incident_id)
    if incident is None:
        return None
    return IncidentView(incident, await first_alerts(store, incident_id, SHOWN_ALERTS))
