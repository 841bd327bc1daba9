"""The incident's state changes as domain methods: open, record unopened, merge alerts, resolve,
the diagnosis' phases, add and replace an action record. No store, no clock, no metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from medic.domain.alert import Alert
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import (
    ActionRecord,
    ActionStatus,
    AlertMerge,
    Finding,
    Incident,
    IncidentAlert,
    Phase,
    Target,
    highest_severity,
)

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
DEPLOYMENT = Target(kind="deployment", namespace="playcode", name="playcode-app")


def alert(status: str = "firing", **labels: str) -> Alert:
    return Alert(status=status, labels={"alertname": "KubePodCrashLooping", **labels}, startsAt=NOW)  # type: ignore[arg-type]


def incident_alert(status: str = "firing", **labels: str) -> IncidentAlert:
    return IncidentAlert.from_alert(alert(status, **labels), NOW)


def opened(**kw: object) -> Incident:
    args: dict[str, object] = {
        "first": alert(namespace="playcode"),
        "rule": "crashloop",
        "rule_playbook": "crashloop",
        "playbook": "crashloop",
        "target": DEPLOYMENT,
        "now": NOW,
    }
    args.update(kw)
    return Incident.open("crashloop|deployment/playcode/playcode-app", **args)  # type: ignore[arg-type]


def record(status: ActionStatus, reason: str) -> ActionRecord:
    return ActionRecord(
        action="rollback",
        use="k8s.rollback_deployment",
        target=DEPLOYMENT,
        mode="auto",
        status=status,
        reason=reason,
    )


def test_open_titles_the_incident_and_notes_its_routing() -> None:
    incident = opened()
    assert incident.id.startswith("inc-20261126-080000-")
    assert incident.title == "KubePodCrashLooping on deployment/playcode/playcode-app"
    assert (incident.status, incident.rule, incident.playbook) == ("open", "crashloop", "crashloop")
    assert incident.created_at == incident.updated_at == NOW
    assert [(e.kind, e.message, e.data) for e in incident.timeline] == [
        ("routing", "matched rule crashloop", {"playbook": "crashloop"})
    ]


def test_open_without_a_rule_or_target_and_with_an_inferred_target() -> None:
    bare = opened(rule=None, rule_playbook=None, playbook=None, target=None)
    assert bare.title == "KubePodCrashLooping on playcode"  # the namespace label
    assert [e.message for e in bare.timeline] == ["no rule matches these alerts: recorded without a playbook"]
    nameless = opened(first=Alert(status="firing", labels={"x": "y"}, startsAt=NOW), target=None)
    assert nameless.title == "alert"
    inferred = opened(target=DEPLOYMENT.model_copy(update={"inferred": True}))
    assert inferred.timeline[-1].kind == "target"
    assert "inferred from the pod name" in inferred.timeline[-1].message


def test_record_unopened_keeps_it_resolved_with_why() -> None:
    incident = opened()
    incident.record_unopened("resolved before Medic saw it firing", NOW)
    assert (incident.status, incident.resolved_at) == ("resolved", NOW)
    assert (incident.timeline[-1].kind, incident.timeline[-1].message) == (
        "recorded",
        "resolved before Medic saw it firing",
    )


def test_merge_alerts_updates_counts_shared_labels_severity_and_timeline() -> None:
    incident = opened()
    first = [incident_alert(pod="a", severity="warning"), incident_alert(pod="b", severity="warning")]
    incident.merge_alerts(AlertMerge(joined=2, resolved=0, total=2, firing=2), first, None, NOW)
    assert (incident.alerts_total, incident.alerts_firing) == (2, 2)
    assert incident.labels == {"alertname": "KubePodCrashLooping", "severity": "warning"}
    assert incident.severity == "warning"
    later = NOW + timedelta(minutes=1)
    second = [incident_alert(pod="c", severity="critical")]
    incident.merge_alerts(AlertMerge(joined=1, resolved=0, total=3, firing=3), second, "info", later)
    assert incident.labels == {"alertname": "KubePodCrashLooping"}  # severity differs now
    assert incident.severity == "critical"
    # consecutive joins fold into one timeline entry with the running total
    assert [(e.kind, e.message) for e in incident.timeline[1:]] == [("alerts", "3 firing alert(s) joined")]
    incident.merge_alerts(AlertMerge(joined=0, resolved=1, total=3, firing=2), [], None, later)
    assert incident.severity == "critical"  # what it had stays
    assert incident.timeline[-1].message == "1 alert(s) resolved"


def test_highest_severity() -> None:
    assert highest_severity(None, None, []) == "warning"
    assert highest_severity("info", None, []) == "info"
    assert highest_severity("info", "critical", [incident_alert(severity="warning")]) == "critical"
    assert highest_severity(None, None, [incident_alert(severity="bogus")]) == "warning"


def test_resolve_if_quiet_resolves_only_when_no_alert_fires() -> None:
    incident = opened()
    incident.alerts_firing = 1
    assert incident.resolve_if_quiet(NOW) is False
    assert incident.status == "open" and incident.resolved_at is None
    incident.alerts_firing = 0
    assert incident.resolve_if_quiet(NOW) is True
    assert (incident.status, incident.resolved_at) == ("resolved", NOW)
    assert incident.timeline[-1].message == "every alert of the incident is resolved"


def test_add_and_replace_an_action_record() -> None:
    incident = opened()
    proposal = record(ActionStatus.AWAITING_APPROVAL, "awaiting approval to roll back")
    assert incident.add_action(proposal, NOW) == 0
    assert incident.timeline[-1].message == "rollback: awaiting_approval — awaiting approval to roll back"
    later = NOW + timedelta(minutes=5)
    outcome = record(ActionStatus.REFUSED, "rejected by alice")
    incident.replace_action(0, outcome, later)
    assert incident.actions == [outcome]
    assert incident.updated_at == later
    assert (incident.timeline[-1].kind, incident.timeline[-1].message, incident.timeline[-1].at) == (
        "action",
        "rollback: refused — rejected by alice",
        later,
    )


def test_a_diagnosis_moves_the_incident_through_its_phases() -> None:
    incident = opened()
    incident.start_diagnosis("crashloop", NOW)
    assert incident.phase == Phase.DIAGNOSING
    assert incident.timeline[-1].message == "running playbook crashloop"
    evidence = [Evidence(step="describe", collector="k8s.pod_describe", status=StepStatus.OK)]
    findings = [Finding(analyzer="crashloop", code="crashloop.regression", summary="new revision crashes")]
    later = NOW + timedelta(seconds=30)
    incident.conclude(evidence, findings, "rollback: the new revision crashes", "auto", later)
    assert (incident.evidence, incident.findings) == (evidence, findings)
    assert (incident.timeline[-1].kind, incident.timeline[-1].message, incident.timeline[-1].data) == (
        "decision",
        "rollback: the new revision crashes",
        {"mode": "auto"},
    )
    assert incident.phase == Phase.DIAGNOSING
    incident.finish_diagnosis(later)
    assert (incident.phase, incident.updated_at) == (Phase.DIAGNOSED, later)
