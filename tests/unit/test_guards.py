"""The guardrails as a pure function: every "no" has its reason."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from medic.decision.guards import Budget, GuardFacts, evaluate_guards, first_refusal
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
