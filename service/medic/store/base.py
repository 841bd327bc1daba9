"""The incident store interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from medic.incident import Incident


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

    async def query(self, q: IncidentQuery) -> tuple[list[Incident], int]: ...

    async def ping(self) -> None: ...
