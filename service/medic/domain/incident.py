"""The incident record: target, evidence, findings, actions, a timeline, and its alerts.

The bundle (:class:`Incident`) is what the store keeps as one document. An incident's alerts are
kept beside it, one record per alert identity (:class:`IncidentAlert`), and the bundle holds only
their counts and the labels they all share: a storm of thousands of alerts for one target then
costs a small upsert per delivery instead of reading and rewriting an ever larger document (and
never meets MongoDB's 16 MiB document limit).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from medic.domain.alert import Alert
from medic.domain.evidence import Evidence
from medic.domain.verification import Verification

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

    @property
    def scope(self) -> str:
        """The namespace the target is in (what the namespace allow-list checks); a namespace
        target is its own."""
        return self.name if self.kind == "namespace" else self.namespace

    def __str__(self) -> str:
        return self.key


ActionMode = Literal["off", "dry-run", "approve", "auto"]  # a rule's remediation mode


class Finding(BaseModel):
    """One conclusion an analyzer draws from the evidence.

    What the decision reads is typed (a misspelt mode is refused, not ignored): ``suggests`` an
    action, ``max_mode`` caps the mode of the action it grounds (a new revision that cannot start
    is proposed for approval, never rolled back alone), ``against`` says, per action name, why the
    finding argues against it (quoted: "no rollback: the crash is caused by redis being down").
    A finding stored before they were fields carries them in ``details``: read, they are lifted
    from there, so an old incident replayed or exported decides as it did. Left out of a dump
    when unset, so an incident's JSON shows them only on the findings that have them."""

    analyzer: str
    code: str  # stable id, e.g. "crashloop.regression"
    severity: Severity = "warning"
    summary: str
    details: dict[str, Any] = Field(default_factory=dict)
    evidence: list[str] = Field(default_factory=list)  # step ids the finding rests on
    next_steps: list[str] = Field(default_factory=list)  # runbook commands, names filled in
    suggests: str | None = None  # a playbook action this finding argues for (e.g. "rollback")
    max_mode: ActionMode | None = None
    against: dict[str, str] = Field(default_factory=dict)  # action name -> why not

    @model_validator(mode="before")
    @classmethod
    def _lift_from_details(cls, data: Any) -> Any:
        """An old finding's ``details["max_mode"]`` / ``details["against"]`` become the fields
        when the fields themselves are absent (then validated as they are: a mode that is not
        one is refused, as on the field)."""
        if not isinstance(data, dict) or not isinstance(data.get("details"), dict):
            return data
        details, lifted = dict(data["details"]), dict(data)
        for name in ("max_mode", "against"):
            if name not in data and name in details:
                lifted[name] = details.pop(name)
        return lifted | {"details": details}

    @model_serializer(mode="wrap")
    def _omit_unset_decision_fields(self, handler: SerializerFunctionWrapHandler) -> Any:
        """``max_mode`` and ``against`` only when set (``exclude_if`` needs pydantic 2.12)."""
        data = handler(self)
        if isinstance(data, dict):
            for name in ("max_mode", "against"):
                if name in data and not data[name]:
                    del data[name]
        return data


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
    alertmanager_url: str = ""  # externalURL of the Alertmanager that sent it (silence links)
    first_seen: datetime = Field(default_factory=utcnow)
    last_seen: datetime = Field(default_factory=utcnow)

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @classmethod
    def from_alert(cls, alert: Alert, now: datetime, alertmanager_url: str = "") -> IncidentAlert:
        return cls(
            identity=alert.identity,
            status=alert.status,
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            startsAt=alert.startsAt,
            endsAt=alert.ended_at,
            generatorURL=alert.generatorURL,
            alertmanager_url=alertmanager_url,
            first_seen=now,
            last_seen=now,
        )


@dataclass(frozen=True)
class AlertMerge:
    """What folding a batch of alerts into an incident's alerts did, and the counts after it."""

    joined: int  # alerts that are firing now and were not (new, or firing again)
    resolved: int  # alerts that are resolved now and were not
    total: int
    firing: int


def merge_alert(known: IncidentAlert | None, alert: IncidentAlert) -> tuple[IncidentAlert, int, int]:
    """Fold one arriving alert into the stored one of its identity (None: not seen before).

    Returns the alert to store and whether it joined (1: firing now, and new or firing again)
    or resolved (1: resolved now and not before). Labels and first_seen stay those first seen;
    status, times and annotations are the newest. Folding the same alert twice changes nothing
    but ``last_seen``: a redelivered batch counts nothing twice.
    """
    if known is None:
        return alert, int(alert.status == "firing"), int(alert.status == "resolved")
    joined = int(alert.status == "firing" and known.status == "resolved")
    resolved = int(alert.status == "resolved" and known.status != "resolved")
    merged = known.model_copy(
        update={
            "status": alert.status,
            "startsAt": alert.startsAt,
            "endsAt": alert.endsAt,
            "annotations": dict(alert.annotations),
            "alertmanager_url": alert.alertmanager_url or known.alertmanager_url,
            "last_seen": alert.last_seen,
        }
    )
    return merged, joined, resolved


def fold_alerts(
    known: dict[str, IncidentAlert], places: dict[str, int], alerts: Sequence[IncidentAlert]
) -> tuple[dict[str, tuple[int, IncidentAlert]], int, int]:
    """Fold a batch into the stored alerts it touches (``known`` by identity, their ``places``
    in arrival order), in order: returns what to store as ``{identity: (place, alert)}`` and
    how many joined and resolved. A new alert's place is its position in the batch."""
    changed: dict[str, tuple[int, IncidentAlert]] = {}
    joined = resolved = 0
    for seq, alert in enumerate(alerts):
        merged, j, r = merge_alert(known.get(alert.identity), alert)
        known[alert.identity] = merged
        changed[alert.identity] = (places.setdefault(alert.identity, seq), merged)
        joined += j
        resolved += r
    return changed, joined, resolved


def shared_labels(current: dict[str, str] | None, alerts: Sequence[IncidentAlert]) -> dict[str, str]:
    """The labels ``alerts`` all share, intersected with ``current`` (None: nothing yet)."""
    common = None if current is None else dict(current)
    for alert in alerts:
        if common is None:
            common = dict(alert.labels)
        else:
            common = {k: v for k, v in common.items() if alert.labels.get(k) == v}
    return common or {}


def highest_severity(rule_severity: str | None, current: str | None, alerts: Sequence[IncidentAlert]) -> str:
    """The highest of the alerts' ``severity`` labels, the rule's and ``current`` (the
    incident's so far; None while it has no alerts); "warning" when none is known."""
    levels = [a.severity for a in alerts]
    if current:
        levels.append(current)
    if rule_severity:
        levels.append(rule_severity)
    known = [lvl for lvl in levels if lvl in SEVERITY_ORDER]
    return max(known, key=SEVERITY_ORDER.__getitem__) if known else "warning"


class Phase(StrEnum):
    RECEIVED = "received"
    DIAGNOSING = "diagnosing"
    VERIFYING = "verifying"  # a deploy verification's window is running (domain.verification)
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
    # the alerts themselves are kept beside the bundle (IncidentStore.alerts)
    alerts_total: int = 0
    alerts_firing: int = 0
    labels: dict[str, str] = Field(default_factory=dict)  # the labels all its alerts share
    evidence: list[Evidence] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    actions: list[ActionRecord] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    verification: Verification | None = None  # a deploy verification's window and samples
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None
    schema_version: int = 2  # 2: alerts kept beside the bundle (1 held them in it)

    def note(self, kind: str, message: str, now: datetime | None = None, **data: Any) -> None:
        self.timeline.append(TimelineEntry(at=now or utcnow(), kind=kind, message=message, data=data))

    # ------------------------------------------------------------ state changes (no I/O, no clock)
    @classmethod
    def open(
        cls,
        key: str,
        *,
        first: Alert,
        rule: str | None,
        rule_playbook: str | None,
        playbook: str | None,
        target: Target | None,
        now: datetime,
    ) -> Incident:
        """A new incident for the coalescing ``key``, titled after its ``first`` alert, with the
        routing (and an inferred target) on its timeline."""
        alertname = first.alertname or "alert"
        where = str(target) if target else first.labels.get("namespace", "")
        incident = cls(
            id=new_incident_id(now),
            key=key,
            rule=rule,
            playbook=playbook,
            target=target,
            title=f"{alertname} on {where}" if where else alertname,
            created_at=now,
            updated_at=now,
        )
        if rule is None:
            incident.note("routing", "no rule matches these alerts: recorded without a playbook", now)
        else:
            incident.note("routing", f"matched rule {rule}", now, playbook=rule_playbook)
        if target is not None and target.inferred:
            incident.note("target", f"target {target} inferred from the pod name", now)
        return incident

    def record_unopened(self, why: str, now: datetime) -> None:
        """Alerts that open no incident are never dropped silently: the incident is kept,
        resolved from the start, with why nothing opened."""
        self.status = "resolved"
        self.resolved_at = now
        self.note("recorded", why, now)

    def merge_alerts(
        self,
        merge: AlertMerge,
        arriving: Sequence[IncidentAlert],
        rule_severity: str | None,
        now: datetime,
    ) -> None:
        """Bring the counts, shared labels, severity and timeline up to date after ``arriving``
        was folded into the incident's alerts (kept beside the bundle) with result ``merge``."""
        had_alerts = self.alerts_total > 0
        self.alerts_total, self.alerts_firing = merge.total, merge.firing
        self.labels = shared_labels(self.labels if had_alerts else None, arriving)
        self.severity = highest_severity(  # type: ignore[assignment]
            rule_severity, self.severity if had_alerts else None, arriving
        )
        self.note_alerts(merge, now)

    def resolve_if_quiet(self, now: datetime) -> bool:
        """Resolve the incident once none of its alerts fires; True if it resolved now."""
        if self.alerts_firing != 0:
            return False
        self.status = "resolved"
        self.resolved_at = now
        self.note("resolved", "every alert of the incident is resolved", now)
        return True

    def start_diagnosis(self, playbook: str, now: datetime) -> None:
        self.phase = Phase.DIAGNOSING
        self.note("diagnosis", f"running playbook {playbook}", now)

    def conclude(
        self, evidence: list[Evidence], findings: list[Finding], decision: str, mode: str, now: datetime
    ) -> None:
        """What the diagnosis gathered and found, and the decision drawn from it."""
        self.evidence = evidence
        self.findings = findings
        self.note("decision", decision, now, mode=mode)

    def finish_diagnosis(self, now: datetime) -> None:
        self.phase = Phase.DIAGNOSED
        self.updated_at = now

    def add_action(self, record: ActionRecord, now: datetime) -> int:
        """Record an action (or its refusal) and note it; returns its index."""
        self.actions.append(record)
        self._note_action(record, now)
        return len(self.actions) - 1

    def replace_action(self, index: int, record: ActionRecord, now: datetime) -> None:
        """What became of the action at ``index`` (an approval's outcome replaces its proposal)."""
        self.actions[index] = record
        self.updated_at = now
        self._note_action(record, now)

    def _note_action(self, record: ActionRecord, now: datetime) -> None:
        self.note("action", f"{record.action}: {record.status.value} — {record.reason}", now)

    @property
    def namespace(self) -> str:
        if self.target and self.target.namespace:
            return self.target.namespace
        return self.labels.get("namespace", "")

    def note_alerts(self, merge: AlertMerge, now: datetime) -> None:
        """Timeline entries for alerts joining or resolving. Consecutive ones are folded into
        one entry with running totals, so a storm of deliveries adds one line, not thousands."""
        for count, verb in ((merge.joined, "joined"), (merge.resolved, "resolved")):
            if not count:
                continue
            last = self.timeline[-1] if self.timeline else None
            if last is not None and last.kind == "alerts" and last.data.get("verb") == verb:
                total = int(last.data.get("count", 0)) + count
                last.data.update(count=total, last_at=now.isoformat())
                last.message = _alerts_message(total, verb)
            else:
                self.note("alerts", _alerts_message(count, verb), now, verb=verb, count=count)


def _alerts_message(count: int, verb: str) -> str:
    return f"{count} firing alert(s) joined" if verb == "joined" else f"{count} alert(s) resolved"


def incident_from_json(text: str | bytes) -> Incident:
    """An incident from its stored JSON; a schema 1 bundle gets its alert counts and labels
    from the alerts it holds (until the store's upgrade has moved them out)."""
    incident = Incident.model_validate_json(text)
    if incident.schema_version < 2:
        doc, _ = upgrade_bundle(json.loads(text))
        incident = Incident.model_validate(doc)
    return incident


def upgrade_bundle(doc: dict[str, Any]) -> tuple[dict[str, Any], list[IncidentAlert]]:
    """A schema 1 bundle (alerts inside) as a schema 2 one plus its alerts, for the stores'
    one-time upgrade of what an earlier Medic wrote."""
    doc = dict(doc)
    alerts = [IncidentAlert.model_validate(a) for a in doc.pop("alerts", None) or []]
    doc.update(
        schema_version=2,
        alerts_total=len(alerts),
        alerts_firing=sum(a.status == "firing" for a in alerts),
        labels=shared_labels(None, alerts),
    )
    return doc, alerts
