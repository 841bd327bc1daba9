"""Stored incidents as test fixtures: what a test file holds (alerts, evidence, history, cluster
facts, mode, the moment of the decision) is read back from an incident's bundle, and its actual
outcome becomes the expectation. ``incidents export --as-test``, a test's ``bundle:`` and
``medic replay --since`` share these functions. The result is redacted."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from medic.app.testing.evaluate import NO_ACTION, REQUIRE_DERIVED, ROLLOUT_HISTORY, WOULD_ACT
from medic.domain.incident import ActionRecord, ActionStatus, Incident, IncidentAlert
from medic.domain.redact import redact
from medic.incidents.views import IncidentView

# the effective mode of a recorded decision → the global mode that reproduces it
_GLOBAL_MODE = {"auto": "enforce", "approve": "enforce", "dry-run": "dry-run", "off": "dry-run"}
_ACTED = {ActionStatus.SUCCEEDED, ActionStatus.FAILED, ActionStatus.RUNNING, ActionStatus.SKIPPED}
PLAN_GUARD = "plan"  # a precondition standing for "the action could not be planned"


def first_action(incident: Incident) -> ActionRecord | None:
    """The action as the diagnosis decided it. A proposal later approved or rejected was
    replaced by its outcome (:mod:`medic.app.approvals`); the decision itself was the proposal,
    awaiting approval."""
    record = incident.actions[0] if incident.actions else None
    if record is None or "approval" not in record.result:
        return record
    proposal = record.result.get("proposal")
    reason = str(proposal.get("reason", record.reason)) if isinstance(proposal, dict) else record.reason
    return record.model_copy(
        update={"status": ActionStatus.AWAITING_APPROVAL, "reason": reason, "approved_by": ""}
    )


def decided_at(incident: Incident) -> datetime:
    entry = next((t for t in incident.timeline if t.kind == "decision"), None)
    return entry.at if entry is not None else incident.updated_at


def global_mode(incident: Incident) -> str:
    record = first_action(incident)
    if record is not None:
        return _GLOBAL_MODE.get(record.mode, "dry-run")
    entry = next((t for t in incident.timeline if t.kind == "decision"), None)
    return _GLOBAL_MODE.get(str(entry.data.get("mode", "dry-run")) if entry else "dry-run", "dry-run")


def expected_status(record: ActionRecord | None) -> str:
    """What a test sees of a recorded action: it never acts, so an action taken is ``would_act``."""
    if record is None:
        return NO_ACTION
    return WOULD_ACT if record.status in _ACTED else record.status.value


def refused_by(record: ActionRecord | None) -> list[str]:
    if record is None or record.status is not ActionStatus.REFUSED:
        return []
    names = [g.guard for g in record.guards if not g.allowed]
    return names or [f"precondition:{PLAN_GUARD}"]


def cluster_facts(record: ActionRecord | None, timeline_known: bool = False) -> dict[str, Any]:
    """The action plan's recorded preconditions (what the cluster said when it was planned).
    With the rollout history in the evidence (``timeline_known``), those a rule's ``require:``
    asks for are left out: a test reads them from that timeline as the plan does, so a candidate
    ``require:`` is decided again, not answered by the record."""
    if record is None:
        return {}
    derived = set(REQUIRE_DERIVED) if timeline_known else set()
    pre = {
        name: {"ok": g.allowed, "reason": g.reason}
        for g in record.guards
        if g.guard.startswith("precondition:")
        and (name := g.guard.removeprefix("precondition:")) not in derived
    }
    if record.status is ActionStatus.REFUSED and not record.guards:  # the plan itself failed
        pre[PLAN_GUARD] = {"ok": False, "reason": record.reason}
    return {"preconditions": pre} if pre else {}


def history_of(incident: Incident, others: Iterable[Incident]) -> list[dict[str, Any]]:
    """Actions other incidents took before this one's decision: on its target (cooldown, target
    budget, flap guard), and on any other target with that target named (the global budget)."""
    if incident.target is None:
        return []
    before = decided_at(incident)
    out = []
    for other in others:
        if other.id == incident.id:
            continue
        for record in other.actions:
            if record.at < before and record.status in _ACTED:
                entry = {
                    "action": record.action,
                    "at": record.at.isoformat(),
                    "status": "started" if record.status is ActionStatus.RUNNING else record.status.value,
                    "detail": facts if isinstance(facts := record.result.get("facts"), dict) else {},
                }
                if record.target.key != incident.target.key:
                    entry["target"] = record.target.key
                out.append(entry)
    return sorted(out, key=lambda h: str(h["at"]))


def status_at(alert: IncidentAlert, at: datetime) -> str:
    """The alert's status as the decision at ``at`` saw it: one whose resolution reached Medic
    later (``last_seen``, when Medic received it; not ``endsAt``, the sender's clock) was firing
    then. After a rollback that worked, every alert of the incident has resolved since."""
    if alert.status != "resolved":
        return alert.status
    return "resolved" if alert.last_seen <= at else "firing"


def alerts_at(alerts: Iterable[IncidentAlert], at: datetime) -> list[dict[str, Any]]:
    """The alerts the decision saw, as they were then: those Medic had received by ``at`` (all
    of them when none had, as a document without arrival times reads), with their status then."""
    alerts = list(alerts)
    seen = [a for a in alerts if a.first_seen <= at] or alerts
    return [
        {
            "labels": a.labels,
            "annotations": a.annotations,
            "status": status_at(a, at),
            "startsAt": a.startsAt.isoformat(),
        }
        for a in seen
    ]


def case_fields(view: IncidentView, others: Iterable[Incident] = ()) -> dict[str, Any]:
    """A test case's inputs from a stored incident (no expectation), as they were at its decision."""
    incident = view.incident
    record = first_action(incident)
    at = decided_at(incident)
    fields: dict[str, Any] = {
        "now": at.isoformat(),
        "mode": global_mode(incident),
        "alerts": alerts_at(view.alerts, at),
        "evidence": {
            e.step: {"status": e.status.value}
            | ({"data": e.data} if e.data is not None else {})
            | ({"error": e.error} if e.error else {})
            | ({"truncated": True} if e.truncated else {})
            for e in incident.evidence
        },
        "history": history_of(incident, others),
    }
    timeline_known = any(e.collector == ROLLOUT_HISTORY and e.ok and e.data for e in incident.evidence)
    if facts := cluster_facts(record, timeline_known):
        fields["cluster"] = facts
    if record is not None and any(g.guard == "kill_switch" and not g.allowed for g in record.guards):
        fields["kill_switch"] = True  # state, not configuration: the replay keeps it as it was
    return fields


def expectation(incident: Incident) -> dict[str, Any]:
    record = first_action(incident)
    return {
        "rule": incident.rule,
        "target": str(incident.target) if incident.target else None,
        "findings": [f.code for f in incident.findings],
        "action": {"name": record.action if record else None, "status": expected_status(record)},
        "refused_by": refused_by(record),
    }


def test_document(view: IncidentView, others: Iterable[Incident] = ()) -> dict[str, Any]:
    """A whole ``medic test`` file for one incident, redacted."""
    incident = view.incident
    case = {"name": f"incident {incident.id}: {incident.title}"} | case_fields(view, others)
    case["expect"] = expectation(incident)
    doc: dict[str, Any] = redact({"tests": [case]})
    return doc
