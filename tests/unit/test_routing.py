"""Routing, target resolution from labels, coalescing, alert merging and the decision."""

from datetime import UTC, datetime

import pytest

from medic.app.pipeline import incident_severity
from medic.decision.decide import decide, effective_mode
from medic.domain.incident import (
    AlertMerge,
    Finding,
    Incident,
    IncidentAlert,
    Target,
    fold_alerts,
    merge_alert,
    shared_labels,
)
from medic.intake.model import Alert
from medic.rules.model import Rule
from medic.rules.routing import coalescing_key, matching_rules
from medic.rules.targets import target_from_labels
from tests.payloads import alert

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def rule(name: str, *matchers: str, **kw: object) -> Rule:
    return Rule.model_validate({"name": name, "matchers": list(matchers), **kw})


def test_first_match_wins_unless_continue() -> None:
    a = Alert.model_validate(alert("KubePodCrashLooping", namespace="playcode"))
    r1 = rule("one", 'alertname="KubePodCrashLooping"')
    r2 = rule("two", 'namespace="playcode"')
    assert matching_rules(a, [r1, r2]) == [r1]
    r1c = rule("one", 'alertname="KubePodCrashLooping"', **{"continue": True})
    assert matching_rules(a, [r1c, r2]) == [r1c, r2]
    assert matching_rules(a, [rule("x", 'alertname="Other"')]) == []


@pytest.mark.parametrize(
    ("kind", "labels", "expected"),
    [
        (
            "deployment",
            {"namespace": "playcode", "deployment": "playcode-app"},
            Target(kind="deployment", namespace="playcode", name="playcode-app"),
        ),
        # KubePodCrashLooping carries only pod: the name heuristic, marked inferred
        (
            "deployment",
            {"namespace": "playcode", "pod": "playcode-app-7d9f8b6c5d-x2k9p"},
            Target(kind="deployment", namespace="playcode", name="playcode-app", inferred=True),
        ),
        (
            "statefulset",
            {"namespace": "playcode", "pod": "mongodb-0"},
            Target(kind="statefulset", namespace="playcode", name="mongodb", inferred=True),
        ),
        (
            "pod",
            {"namespace": "playcode", "pod": "mongodb-0"},
            Target(kind="pod", namespace="playcode", name="mongodb-0"),
        ),
        ("namespace", {"namespace": "playcode"}, Target(kind="namespace", name="playcode")),
        ("node", {"node": "ip-10-0-1-2.ec2.internal"}, Target(kind="node", name="ip-10-0-1-2.ec2.internal")),
        ("deployment", {"pod": "playcode-app-7d9f8b6c5d-x2k9p"}, None),  # no namespace
        ("deployment", {"namespace": "Bad_NS", "deployment": "x"}, None),  # not a DNS-1123 label
        ("deployment", {"namespace": "playcode", "deployment": "../../etc"}, None),
        ("deployment", {"namespace": "playcode", "pod": "standalone"}, None),
        ("none", {"namespace": "playcode"}, None),
    ],
)
def test_target_from_labels(kind: str, labels: dict[str, str], expected: Target | None) -> None:
    assert target_from_labels(kind, labels) == expected


def test_ten_crashing_pods_of_one_deployment_share_a_key() -> None:
    r = rule("crash", 'alertname="KubePodCrashLooping"')
    pods = [f"playcode-app-7d9f8b6c5d-{s}" for s in ("x2k9p", "b7zq4", "mmn2c")]
    keys = {
        coalescing_key(r, target_from_labels("deployment", {"namespace": "playcode", "pod": p}), {})
        for p in pods
    }
    assert keys == {"crash|deployment/playcode/playcode-app"}
    assert coalescing_key(None, None, {"namespace": "n", "alertname": "A"}) == "-|alert/n/A"


def _fold(known: dict[str, IncidentAlert], alerts: list[Alert]) -> AlertMerge:
    """What a store does with fold_alerts, in memory."""
    _, joined, resolved = fold_alerts(known, {}, [IncidentAlert.from_alert(a, NOW) for a in alerts])
    firing = sum(a.status == "firing" for a in known.values())
    return AlertMerge(joined=joined, resolved=resolved, total=len(known), firing=firing)


def test_merge_alert_is_idempotent_and_tracks_resolution() -> None:
    known: dict[str, IncidentAlert] = {}
    a1 = Alert.model_validate(alert("A", pod="p1", namespace="n"))
    a2 = Alert.model_validate(alert("A", pod="p2", namespace="n"))
    assert _fold(known, [a1, a2]) == AlertMerge(joined=2, resolved=0, total=2, firing=2)
    assert _fold(known, [a1, a2]) == AlertMerge(joined=0, resolved=0, total=2, firing=2)  # redelivered
    r1 = Alert.model_validate(
        alert("A", pod="p1", namespace="n", status="resolved", endsAt="2026-11-26T08:05:00Z")
    )
    assert _fold(known, [r1]) == AlertMerge(joined=0, resolved=1, total=2, firing=1)
    assert _fold(known, [r1]) == AlertMerge(joined=0, resolved=0, total=2, firing=1)
    assert known[a1.identity].status == "resolved" and known[a1.identity].endsAt is not None
    assert _fold(known, [a1]) == AlertMerge(joined=1, resolved=0, total=2, firing=2)  # fires again
    # firing then resolved within one batch: both count, in order
    a3 = Alert.model_validate(alert("A", pod="p3", namespace="n"))
    r3 = Alert.model_validate(alert("A", pod="p3", namespace="n", status="resolved"))
    assert _fold(known, [a3, r3]) == AlertMerge(joined=1, resolved=1, total=3, firing=2)


def test_merge_alert_keeps_first_labels_and_first_seen() -> None:
    first = IncidentAlert.from_alert(Alert.model_validate(alert("A", pod="p1")), NOW)
    later = first.model_copy(
        update={"labels": {"x": "y"}, "first_seen": NOW.replace(hour=9), "last_seen": NOW.replace(hour=9)}
    )
    merged, _, _ = merge_alert(first, later)
    assert merged.labels == first.labels and merged.first_seen == NOW
    assert merged.last_seen == NOW.replace(hour=9)


def test_shared_labels_intersect_incrementally() -> None:
    a = [IncidentAlert.from_alert(Alert.model_validate(alert("A", pod=p, namespace="n")), NOW) for p in "xy"]
    assert shared_labels(None, a) == {"alertname": "A", "namespace": "n"}
    assert shared_labels(None, a[:1])["pod"] == "x"
    assert shared_labels(shared_labels(None, a[:1]), a[1:]) == shared_labels(None, a)
    assert shared_labels(None, []) == {}


def test_incident_severity_takes_the_highest() -> None:
    alerts = [
        IncidentAlert.from_alert(Alert.model_validate(alert("A", severity=s, pod=s)), NOW)
        for s in ("warning", "critical")
    ]
    assert incident_severity(None, None, alerts) == "critical"
    assert incident_severity(rule("r", 'a="b"', severity="info"), None, alerts[:1]) == "warning"
    assert incident_severity(None, "critical", alerts[:1]) == "critical"  # what it had stays
    info = IncidentAlert.from_alert(Alert.model_validate(alert("A", severity="info")), NOW)
    assert incident_severity(None, None, [info]) == "info"
    assert incident_severity(None, None, []) == "warning"


def test_alert_notes_fold_into_one_timeline_entry() -> None:
    inc = Incident(id="i", key="k")
    for _ in range(3):
        inc.note_alerts(AlertMerge(joined=2, resolved=0, total=0, firing=0), NOW)
    assert [t.message for t in inc.timeline] == ["6 firing alert(s) joined"]
    inc.note_alerts(AlertMerge(joined=0, resolved=1, total=0, firing=0), NOW)
    inc.note_alerts(AlertMerge(joined=1, resolved=0, total=0, firing=0), NOW)
    assert [t.message for t in inc.timeline] == [
        "6 firing alert(s) joined",
        "1 alert(s) resolved",
        "1 firing alert(s) joined",
    ]
    inc.note_alerts(AlertMerge(joined=0, resolved=0, total=0, firing=0), NOW)
    assert len(inc.timeline) == 3


@pytest.mark.parametrize(
    ("global_mode", "rule_mode", "expected"),
    [
        ("dry-run", "auto", "dry-run"),
        ("enforce", "auto", "auto"),
        ("enforce", "approve", "approve"),
        ("off", "auto", "off"),
        ("dry-run", "off", "off"),
        ("enforce", "dry-run", "dry-run"),
    ],
)
def test_global_mode_caps_rule_mode(global_mode: str, rule_mode: str, expected: str) -> None:
    assert effective_mode(global_mode, rule_mode) == expected


def test_decide_needs_a_finding_that_argues_for_the_action() -> None:
    from medic.playbooks.compiled import CompiledAction, CompiledPlaybook
    from medic.playbooks.contract import ActionDef, NoParams
    from medic.playbooks.model import ActionSpec, Playbook

    async def act() -> None:  # pragma: no cover - never called by decide
        return None

    action = CompiledAction(
        "rollback", ActionSpec(use="x.rollback"), ActionDef("x.rollback", act, NoParams), NoParams()
    )
    pb = CompiledPlaybook(Playbook(name="p", target="deployment"), "f", [], [], {"rollback": action})
    r = rule("r", 'a="b"', playbook="p", remediation={"action": "rollback", "mode": "auto"})
    noise = Finding(analyzer="a", code="crashloop.oom", summary="OOMKilled")
    cause = Finding(
        analyzer="a", code="crashloop.regression", summary="new revision crashes", suggests="rollback"
    )
    d = decide(r, pb, [noise], "enforce")
    assert d.action is None and "no rollback" in d.reason
    d = decide(r, pb, [noise, cause], "enforce")
    assert d.action is action and d.mode == "auto" and d.grounds == (cause,)
    assert decide(r, pb, [cause], "off").action is None
    assert decide(None, None, [cause], "enforce").action is None
