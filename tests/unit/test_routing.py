"""Routing, target resolution from labels, coalescing, alert merging and the decision."""

from datetime import UTC, datetime

import pytest

from medic.analysis.decide import decide, effective_mode
from medic.incident import Finding, Incident, Target
from medic.intake.model import Alert
from medic.pipeline import common_labels, incident_severity, merge_alerts
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


def test_merge_alerts_is_idempotent_and_tracks_resolution() -> None:
    inc = Incident(id="i", key="k")
    a1 = Alert.model_validate(alert("A", pod="p1", namespace="n"))
    a2 = Alert.model_validate(alert("A", pod="p2", namespace="n"))
    assert merge_alerts(inc, [a1, a2], NOW) == (2, 0)
    assert merge_alerts(inc, [a1, a2], NOW) == (0, 0)  # a redelivery changes nothing
    assert len(inc.alerts) == 2
    r1 = Alert.model_validate(
        alert("A", pod="p1", namespace="n", status="resolved", endsAt="2026-11-26T08:05:00Z")
    )
    assert merge_alerts(inc, [r1], NOW) == (0, 1)
    assert [a.status for a in inc.alerts] == ["resolved", "firing"]
    assert inc.alerts[0].endsAt is not None
    assert common_labels(inc.alerts) == {"alertname": "A", "namespace": "n"}


def test_incident_severity_takes_the_highest() -> None:
    inc = Incident(id="i", key="k")
    merge_alerts(
        inc,
        [
            Alert.model_validate(alert("A", severity="warning", pod="a")),
            Alert.model_validate(alert("A", severity="critical", pod="b")),
        ],
        NOW,
    )
    assert incident_severity(None, inc.alerts) == "critical"
    assert incident_severity(rule("r", 'a="b"', severity="info"), inc.alerts[:1]) == "warning"


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
    from medic.config import CompiledAction, CompiledPlaybook
    from medic.playbooks.model import ActionSpec, Playbook
    from medic.playbooks.registry import ActionDef, NoParams

    async def act() -> None:  # pragma: no cover - never called by decide
        return None

    action = CompiledAction(
        "rollback", ActionSpec(use="x.rollback"), ActionDef("x.rollback", act), NoParams()
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
