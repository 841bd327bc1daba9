"""An alert as Medic reasons about it: status, labels, annotations, times, identity.

The webhook's wire model (:mod:`medic.intake.model`) extends it with what only the wire needs
(unknown fields kept, timestamp and label checks); everything below intake sees this type.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AlertStatus = Literal["firing", "resolved"]

# Alertmanager sends endsAt = 0001-01-01T00:00:00Z for an alert with no end.
ZERO_TIME_YEAR = 1


class Alert(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def identity(self) -> str:
        """The alert's fingerprint, or a stable hash of its labels when the sender gave none."""
        if self.fingerprint:
            return self.fingerprint
        canon = "\x00".join(f"{k}\x01{v}" for k, v in sorted(self.labels.items()))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    @property
    def episode_key(self) -> str:
        """fingerprint + startsAt + status: one firing or resolution of one alert."""
        return f"{self.identity}|{self.startsAt.isoformat()}|{self.status}"

    @property
    def ended_at(self) -> datetime | None:
        if self.endsAt is None or self.endsAt.year <= ZERO_TIME_YEAR:
            return None
        return self.endsAt
