"""The guardrails as a tuple of small pure guards: every "no" has its reason."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from medic.decision import guards as g
from medic.decision.guards import GUARDS, Budget, Guard, GuardFacts, evaluate_guards, first_refusal
from medic.domain.actions import ActionMark, KillSwitch, Precondition

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
OK = GuardFacts(
    now=NOW,
    global_mode="enforce",
    kill_switch=KillSwitch(False),
    rule_mode="auto",
    namespace="playcode",
    allowed_namespaces=["playcode"],
    preconditions=[Precondition("rollout_history", True, "revision 2 exists")],
    target_budget=Budget(1, timedelta(hours=1), 0),
    global_budget=Budget(3, timedelta(hours=1), 0),
)


def mark(minutes_ago: float, status: str = "succeeded", **detail: str) -> ActionMark:
    return ActionMark(
        "k",
        "deployment/playcode/playcode-app",
        "rollback",
        "inc-1",
        NOW - timedelta(minutes=minutes_ago),
        status,
        dict(detail),
    )


def test_all_clear() -> None:
    decisions = evaluate_guards(OK)
    assert first_refusal(decisions) is None
    assert [d.guard for d in decisions][:3] == ["global_mode", "kill_switch", "rule_mode"]


@pytest.mark.parametrize(
    ("change", "guard", "words"),
    [
        ({"global_mode": "off"}, "global_mode", "MEDIC_MODE=off"),
        ({"kill_switch": KillSwitch(True, by="alice", reason="freeze")}, "kill_switch", "alice: freeze"),
        ({"rule_mode": "off"}, "rule_mode", "off"),
        ({"namespace": "kube-system"}, "namespace", "not in MEDIC_NAMESPACES"),
        ({"target_annotations": {"medic.playcode.gg/remediate": "false"}}, "opt_out", "remediate"),
        (
            {"target_annotations": {"argocd.argoproj.io/tracking-id": "app:apps/Deployment:playcode/x"}},
            "gitops",
            "Git",
        ),
        ({"target_labels": {"kustomize.toolkit.fluxcd.io/name": "apps"}}, "gitops", "Git"),
        (
            {"preconditions": [Precondition("recent_rollout", False, "rolled out 3 days ago")]},
            "precondition:recent_rollout",
            "3 days",
        ),
        ({"last_action": mark(10)}, "cooldown", "left"),
        ({"target_budget": Budget(1, timedelta(hours=1), 1)}, "budget", "1 of 1"),
        ({"global_budget": Budget(3, timedelta(hours=1), 3)}, "global_budget", "3 of 3"),
        ({"last_action": mark(45, "failed"), "cooldown": timedelta(minutes=30)}, "flap", "did not help"),
        (
            {
                "last_action": mark(45, to_hash="abc"),
                "current_revision_hash": "abc",
                "cooldown": timedelta(minutes=30),
            },
            "flap",
            "is the one failing now",
        ),
        ({"coordination_ok": False}, "coordination", "unreachable"),
    ],
)
def test_each_guard_says_no_with_a_reason(change: dict[str, object], guard: str, words: str) -> None:
    refusal = first_refusal(evaluate_guards(replace(OK, **change)))  # type: ignore[arg-type]
    assert refusal is not None
    assert refusal.guard == guard
    assert words in refusal.reason


def test_cooldown_expires_and_old_actions_do_not_flap() -> None:
    facts = replace(
        OK, last_action=mark(31, "failed"), cooldown=timedelta(minutes=30), flap_window=timedelta(minutes=30)
    )
    assert first_refusal(evaluate_guards(facts)) is None


def test_every_guard_is_reported_not_only_the_first() -> None:
    facts = replace(OK, global_mode="off", namespace="other")
    refused = [d.guard for d in evaluate_guards(facts) if not d.allowed]
    assert refused == ["global_mode", "namespace"]


def test_the_guards_run_in_the_order_of_design_section_3() -> None:
    assert [guard.__name__ for guard in GUARDS] == [
        "global_mode",
        "kill_switch",
        "rule_mode",
        "namespace",
        "opt_out",
        "gitops",
        "preconditions",
        "cooldown",
        "target_budget",
        "global_budget",
        "flap",
        "coordination",
    ]
    assert [d.guard for d in evaluate_guards(OK)] == [
        "global_mode",
        "kill_switch",
        "rule_mode",
        "namespace",
        "opt_out",
        "gitops",
        "precondition:rollout_history",
        "cooldown",
        "budget",
        "global_budget",
        "flap",
        "coordination",
    ]


def test_evaluate_guards_is_the_guards_run_in_order() -> None:
    def first(f: GuardFacts) -> list[g.GuardDecision]:
        return [g.GuardDecision(guard="first", allowed=True, reason="a")]

    def none(f: GuardFacts) -> list[g.GuardDecision]:
        return []

    def second(f: GuardFacts) -> list[g.GuardDecision]:
        return [g.GuardDecision(guard="second", allowed=False, reason=f.namespace)]

    decisions = evaluate_guards(OK, (first, none, second))
    assert [(d.guard, d.allowed, d.reason) for d in decisions] == [
        ("first", True, "a"),
        ("second", False, "playcode"),
    ]


# Each guard alone: on the all-clear facts it allows with its reason; on the change it refuses.
@pytest.mark.parametrize(
    ("guard", "change", "allowed_words", "refused_words"),
    [
        (g.global_mode, {"global_mode": "off"}, "global mode is enforce", "MEDIC_MODE=off"),
        (g.kill_switch, {"kill_switch": KillSwitch(True)}, "is off", "the kill switch is on"),
        (g.rule_mode, {"rule_mode": "off"}, "mode is auto", "mode is off"),
        (g.namespace, {"allowed_namespaces": []}, "playcode is allowed", "(none)"),
        (g.opt_out, {"target_annotations": {g.OPT_OUT_ANNOTATION: " No "}}, "not opted out", "'no'"),
        (g.gitops, {"target_labels": {"helm.toolkit.fluxcd.io/name": "x"}}, "not managed", "helm.toolkit"),
        (g.cooldown, {"last_action": mark(29)}, "within 30m", "1m left"),
        (g.target_budget, {"target_budget": Budget(2, timedelta(hours=1), 2)}, "0 of 1", "2 of 2"),
        (g.global_budget, {"global_budget": Budget(3, timedelta(hours=2), 4)}, "0 of 3", "4 of 3"),
        (g.flap, {"last_action": mark(100, "failed")}, "no recent action", "did not help"),
        (g.coordination, {"coordination_ok": False}, "answers", "suspended"),
    ],
)
def test_each_guard_alone(
    guard: Guard, change: dict[str, object], allowed_words: str, refused_words: str
) -> None:
    (clear,) = guard(OK)
    assert clear.allowed and allowed_words in clear.reason
    (refused,) = guard(replace(OK, **change))  # type: ignore[arg-type]
    assert not refused.allowed and refused_words in refused.reason
    assert refused.guard == clear.guard


def test_the_preconditions_guard_decides_once_per_precondition() -> None:
    assert list(g.preconditions(replace(OK, preconditions=[]))) == []
    pre = [Precondition("a", True, "fine"), Precondition("b", False, "not fine")]
    decisions = list(g.preconditions(replace(OK, preconditions=pre)))
    assert [(d.guard, d.allowed, d.reason) for d in decisions] == [
        ("precondition:a", True, "fine"),
        ("precondition:b", False, "not fine"),
    ]


def test_a_budget_guard_without_a_budget_decides_nothing() -> None:
    facts = replace(OK, target_budget=None, global_budget=None)
    assert list(g.target_budget(facts)) == []
    assert list(g.global_budget(facts)) == []


def test_the_flap_guard_lets_a_previous_action_that_held_pass() -> None:
    (held,) = g.flap(replace(OK, last_action=mark(45, to_hash="old"), current_revision_hash="new"))
    assert held.allowed and "held" in held.reason
    (outside,) = g.flap(replace(OK, last_action=mark(200, "failed")))
    assert outside.allowed and "no recent action" in outside.reason


def test_the_verdict_of_the_guards_is_one_function_for_the_executor_and_medic_test() -> None:
    from medic.decision.guards import verdict
    from medic.domain.incident import GuardDecision

    yes, no = (
        GuardDecision(guard="a", allowed=True, reason="ok"),
        GuardDecision(guard="b", allowed=False, reason="x"),
    )
    assert verdict([yes, no], "auto").kind == "refused" and verdict([yes, no], "auto").refusal == no
    assert verdict([yes], "auto", skip_reason="already").kind == "skipped"
    assert verdict([yes, no], "auto", skip_reason="already").kind == "refused"  # a refusal first
    assert verdict([yes], "dry-run").kind == "planned"
    assert verdict([yes], "approve").kind == "awaiting_approval"
    assert verdict([yes], "auto").kind == "act"
