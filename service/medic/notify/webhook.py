"""Generic JSON webhook: a stable, versioned body (``medic.notification/v1``), signed.

Headers of every request:

- ``X-Medic-Event``: ``incident.opened|diagnosed|action|resolved``
- ``X-Medic-Delivery``: a unique id per event (the same across retries: deduplicate on it)
- ``X-Medic-Timestamp``: Unix seconds when the body was signed
- ``X-Medic-Signature``: ``sha256=`` + hex HMAC-SHA256 over ``<timestamp>.<raw body>`` with the
  channel's ``secret``. Receivers recompute it over the raw bytes, compare in constant time and
  refuse timestamps older than a few minutes (replays): see :func:`verify_signature`.

Compatibility: within v1 fields are only ever added; a change that removes or retypes a field is
``medic.notification/v2``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medic.domain.incident import ActionRecord, Incident
from medic.domain.verification import Verification
from medic.incidents.report.escape import fold
from medic.incidents.report.verification import headline
from medic.notify.base import Notifier
from medic.notify.config import ChannelSecrets, EventName, WebhookChannel
from medic.notify.delivery import Outgoing
from medic.notify.events import Event, Links, MessageKind, ranked, update_line

SCHEMA = "medic.notification/v1"
MAX_FINDINGS = 5
DEFAULT_TOLERANCE = 300.0


class TargetV1(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    namespace: str
    name: str


class FindingV1(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    severity: Literal["info", "warning", "critical"]
    summary: str
    analyzer: str
    next_steps: list[str]


class ActionV1(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = Field(description="the playbook's name for it, e.g. rollback")
    use: str = Field(description="the registered action, e.g. k8s.rollback_deployment")
    status: str = Field(description="planned|refused|awaiting_approval|running|succeeded|skipped|failed")
    mode: str
    target: str
    reason: str
    approved_by: str
    at: datetime
    approve_url: str | None = Field(None, description="for awaiting_approval: the approval page")


class LinkV1(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="what it opens, e.g. Prometheus, Grafana: logs, Silence in Alertmanager")
    url: str


class GapV1(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step: str
    status: str = Field(description="error|timeout|not_configured")
    reason: str


class VerificationV1(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["verifying", "passed", "failed", "inconclusive"]
    namespace: str
    deployment: str
    revision: int
    baseline_revision: int | None = Field(description="the revision it is compared with (None: no older one)")
    reason: str
    trigger: str = Field(description="watch|api|cli")
    started_at: datetime
    ends_at: datetime
    finished_at: datetime | None
    samples: int = Field(description="intervals measured so far (the table is on the incident page)")
    summary: str = Field(description="one line: state, revision against baseline, reason")


class IncidentV1(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    url: str | None
    title: str
    status: Literal["open", "resolved"]
    phase: str
    severity: Literal["info", "warning", "critical"]
    rule: str | None
    playbook: str | None
    namespace: str
    target: TargetV1 | None
    alerts_firing: int
    alerts_total: int
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    findings: list[FindingV1] = Field(description=f"most severe first, at most {MAX_FINDINGS}")
    actions: list[ActionV1]
    summaries: list[str] = Field(default_factory=list, description="the alerts' distinct summary annotations")
    descriptions: list[str] = Field(
        default_factory=list, description="their distinct description annotations"
    )
    runbook_urls: list[str] = Field(default_factory=list, description="their distinct http(s) runbook_url")
    links: list[LinkV1] = Field(
        default_factory=list, description="Prometheus/Grafana views of the incident's time range, a silence"
    )
    coverage_gaps: list[GapV1] = Field(default_factory=list, description="checks that gave no data")
    verification: VerificationV1 | None = Field(None, description="a deploy verification's verdict")


class NotificationV1(BaseModel):
    """The body of every generic webhook request."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    schema_id: Literal["medic.notification/v1"] = Field(alias="schema")
    event: EventName
    message: Literal["first", "update"]
    delivery_id: str
    sent_at: datetime
    summary: str = Field(description="one line for humans")
    action_index: int | None = Field(None, description="for event action: index into incident.actions")
    incident: IncidentV1


def _action(a: ActionRecord, approve_url: str | None) -> ActionV1:
    return ActionV1(
        action=a.action,
        use=a.use,
        status=a.status.value,
        mode=a.mode,
        target=str(a.target),
        reason=a.reason,
        approved_by=a.approved_by,
        at=a.at,
        approve_url=approve_url,
    )


def _verification(v: Verification | None) -> VerificationV1 | None:
    if v is None:
        return None
    return VerificationV1(
        state=v.state,
        namespace=v.namespace,
        deployment=v.deployment,
        revision=v.revision,
        baseline_revision=v.baseline_revision,
        reason=v.reason,
        trigger=v.trigger,
        started_at=v.started_at,
        ends_at=v.ends_at,
        finished_at=v.finished_at,
        samples=len(v.samples),
        summary=fold(headline(v)),
    )


def _incident(inc: Incident, links: Links) -> IncidentV1:
    return IncidentV1(
        id=inc.id,
        url=links.incident,
        title=inc.title,
        status=inc.status,
        phase=inc.phase.value,
        severity=inc.severity,
        rule=inc.rule,
        playbook=inc.playbook,
        namespace=inc.namespace,
        target=TargetV1(kind=inc.target.kind, namespace=inc.target.namespace, name=inc.target.name)
        if inc.target
        else None,
        alerts_firing=inc.alerts_firing,
        alerts_total=inc.alerts_total,
        created_at=inc.created_at,
        updated_at=inc.updated_at,
        resolved_at=inc.resolved_at,
        findings=[
            FindingV1(
                code=f.code,
                severity=f.severity,
                summary=f.summary,
                analyzer=f.analyzer,
                next_steps=f.next_steps,
            )
            for f in ranked(inc.findings)[:MAX_FINDINGS]
        ],
        actions=[_action(a, links.approve.get(i)) for i, a in enumerate(inc.actions)],
        summaries=links.oncall.summaries.values,
        descriptions=links.oncall.descriptions.values,
        runbook_urls=links.oncall.runbooks.values,
        links=[LinkV1(name=x.name, url=x.url) for x in links.oncall.links],
        coverage_gaps=[GapV1(step=g.step, status=g.status, reason=g.reason) for g in links.oncall.gaps],
        verification=_verification(inc.verification),
    )


def notification(event: Event, kind: MessageKind, links: Links, now: datetime) -> NotificationV1:
    inc = event.incident
    summary = (
        f"[{inc.severity}] {inc.title or inc.id}"
        + (f": {ranked(inc.findings)[0].summary}" if inc.findings else "")
        if kind is MessageKind.FIRST
        else f"{inc.title or inc.id}: {update_line(event)}"
    )
    return NotificationV1(
        schema_id=SCHEMA,
        event=event.kind.value,
        message=kind.value,
        delivery_id=event.id,
        sent_at=now,
        summary=fold(summary),
        action_index=event.action_index,
        incident=_incident(inc, links),
    )


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str | None,
    body: bytes,
    header: str | None,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> bool:
    """A receiver's check: the signature matches the raw body and the timestamp is recent."""
    if not timestamp or not header:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)


class WebhookNotifier(Notifier):
    type = "webhook"
    config: WebhookChannel

    def __init__(self, name: str, config: WebhookChannel, secrets: ChannelSecrets) -> None:
        super().__init__(name, config, secrets)

    def build(self, event: Event, kind: MessageKind, links: Links, now: datetime) -> Outgoing | None:
        if not self.config.approval_links:
            links = replace(links, approve={})
        body = notification(event, kind, links, now).model_dump(mode="json", by_alias=True)
        out = Outgoing.json(self.secrets.url, body)
        timestamp = str(int(now.timestamp()))
        out.headers.update(
            {
                "X-Medic-Event": f"incident.{event.kind.value}",
                "X-Medic-Delivery": event.id,
                "X-Medic-Timestamp": timestamp,
                "X-Medic-Signature": signature(self.secrets.secret, timestamp, out.body),
                "User-Agent": "playcode-medic",
            }
        )
        return out
