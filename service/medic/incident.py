"""The incident record: alerts, target, evidence, findings, actions and a timeline.

This is the bundle: what the store keeps, what the API serves and what the report renders.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from medic.evidence import Evidence
from medic.intake.model import Alert

Severity = Literal["info", "warning", "critical"]
SEVERITY_ORDER: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_incident_id(now: datetime | None = None) -> str:
    """Sortable, unguessable: ``inc-20261126-080216-3f9a1c2b``."""
    now = now or utcnow()
    return f"inc-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


class Target(BaseModel):
    """What an incident is about, e.g. deployment playcode/playcode-app."""

    model_config = {"frozen": True}

    kind: str
    namespace: str = ""
    name: str
    inferred: bool = False  # resolved by a heuristic (pod name), not by the API

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"

    def __str__(self) -> str:
        return self.key


class Finding(BaseModel):
    """One conclusion an analyzer draws from the evidence."""

    analyzer: str
    code: str  # stable id, e.g. "crashloop.regression"
    severity: Severity = "warning"
    summary: str
    details: dict[str, Any] = Field(default_factory=dict)
    evidence: list[str] = Field(default_factory=list)  # step ids the finding rests on
    next_steps: list[str] = Field(default_factory=list)  # runbook commands, names filled in
    suggests: str | None = None  # a playbook action this finding argues for (e.g. "rollback")


class GuardDecision(BaseModel):
    guard: str
    allowed: bool
    reason: str


class ActionStatus(StrEnum):
    PLANNED = "planned"  # dry-run: what would have been done
    REFUSED = "refused"  # a guard said no
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"  # nothing to do (e.g. template already matches)
    FAILED = "failed"


class ActionRecord(BaseModel):
    action: str  # the playbook's name for it, e.g. "rollback"
    use: str  # the registered action, e.g. "k8s.rollback_deployment"
    target: Target
    mode: str
    status: ActionStatus
    params: dict[str, Any] = Field(default_factory=dict)
    guards: list[GuardDecision] = Field(default_factory=list)
    reason: str = ""
    result: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str = ""
    approved_by: str = ""  # who approved it, for actions of rules in mode "approve"
    at: datetime = Field(default_factory=utcnow)


class TimelineEntry(BaseModel):
    at: datetime = Field(default_factory=utcnow)
    kind: str
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


class IncidentAlert(BaseModel):
    identity: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    first_seen: datetime = Field(default_factory=utcnow)
    last_seen: datetime = Field(default_factory=utcnow)

    @classmethod
    def from_alert(cls, alert: Alert, now: datetime) -> IncidentAlert:
        return cls(
            identity=alert.identity,
            status=alert.status,
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            startsAt=alert.startsAt,
            endsAt=alert.ended_at,
            generatorURL=alert.generatorURL,
            first_seen=now,
            last_seen=now,
        )


class Phase(StrEnum):
    RECEIVED = "received"
    DIAGNOSING = "diagnosing"
    DIAGNOSED = "diagnosed"


class Incident(BaseModel):
    id: str
    key: str  # coalescing key: rule + target
    rule: str | None = None
    playbook: str | None = None
    status: Literal["open", "resolved"] = "open"
    phase: Phase = Phase.RECEIVED
    severity: Severity = "warning"
    title: str = ""
    target: Target | None = None
    alerts: list[IncidentAlert] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    actions: list[ActionRecord] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None
    schema_version: int = 1

    def note(self, kind: str, message: str, now: datetime | None = None, **data: Any) -> None:
        self.timeline.append(TimelineEntry(at=now or utcnow(), kind=kind, message=message, data=data))

    @property
    def firing_alerts(self) -> list[IncidentAlert]:
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def namespace(self) -> str:
        if self.target and self.target.namespace:
            return self.target.namespace
        for alert in self.alerts:
            if "namespace" in alert.labels:
                return alert.labels["namespace"]
        return ""
