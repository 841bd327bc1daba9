"""The incident store interface."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from medic.domain.incident import AlertMerge, Incident, IncidentAlert
from medic.domain.redact import redact_model

CLEAN_FIELDS = frozenset({"evidence"})  # redacted when collected (playbooks.runner)


def stored_form(incident: Incident) -> Incident:
    """The incident as every store writes it: redacted, so a backup of Medic's data is no secret
    dump. Its alerts (redacted by the pipeline) are stored beside it and its evidence was redacted
    when collected; this scrubs what else reaches the bundle (findings, action plans and results,
    guard reasons, timeline). Idempotent; the incident itself is not changed."""
    return redact_model(incident, clean=CLEAN_FIELDS)


@dataclass(frozen=True)
class IncidentQuery:
    status: str | None = None
    rule: str | None = None
    namespace: str | None = None
    limit: int = 50
    offset: int = 0


class IncidentStore(Protocol):
    async def get(self, incident_id: str) -> Incident | None: ...

    async def find_open(self, key: str) -> Incident | None: ...

    async def create_or_get_open(self, incident: Incident) -> tuple[Incident, bool]:
        """Insert ``incident`` unless an open one with its key exists; return (stored, created)."""
        ...

    async def save(self, incident: Incident) -> None: ...

    async def merge_alerts(self, incident_id: str, alerts: Sequence[IncidentAlert]) -> AlertMerge:
        """Fold alerts into the incident's alerts by identity (:func:`medic.domain.incident.merge_alert`,
        in order, atomically) and return what changed and the counts after it. Idempotent: a
        redelivered batch changes nothing but ``last_seen`` and counts nothing twice."""
        ...

    async def discard_if_empty(self, incident_id: str) -> bool:
        """Delete the incident if no alert was ever stored for it (its first merge failed), so a
        delivery that could not be processed leaves no half-made incident; True if deleted."""
        ...

    async def alerts(
        self, incident_id: str, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[IncidentAlert], int]:
        """A page of the incident's alerts in the order they were first seen, and how many match."""
        ...

    async def query(self, q: IncidentQuery) -> tuple[list[Incident], int]: ...

    async def append_audit(self, incident_id: str | None, kind: str, record: dict[str, Any]) -> None:
        """Append-only audit log of every remediation decision (including every "no")."""
        ...

    async def audit(self, incident_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...

    async def ping(self) -> None: ...
