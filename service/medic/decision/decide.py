"""From findings to a decision: which of the rule's actions the evidence argues for. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from medic.domain.incident import Finding
from medic.playbooks.compiled import CompiledAction, CompiledPlaybook
from medic.rules.model import Rule

MODE_RANK = {"off": 0, "dry-run": 1, "approve": 2, "auto": 3}


@dataclass(frozen=True)
class Decision:
    """``action`` is None when nothing should be done; ``reason`` says why either way."""

    action: CompiledAction[Any] | None
    mode: str  # effective mode: off | dry-run | approve | auto
    reason: str
    grounds: tuple[Finding, ...] = ()


def effective_mode(global_mode: str, rule_mode: str) -> str:
    """The global mode caps the rule's: enforce lets the rule's mode stand, dry-run caps it at
    dry-run, off turns everything off."""
    cap = {"off": "off", "dry-run": "dry-run", "enforce": "auto"}[global_mode]
    return rule_mode if MODE_RANK[rule_mode] <= MODE_RANK[cap] else cap


def decide(
    rule: Rule | None, playbook: CompiledPlaybook | None, findings: list[Finding], global_mode: str
) -> Decision:
    if rule is None or rule.remediation is None or playbook is None:
        return Decision(None, "off", "the rule defines no remediation: diagnosis only")
    rem = rule.remediation
    action = playbook.actions[rem.action]
    mode = effective_mode(global_mode, rem.mode)
    if rem.when:
        grounds = tuple(f for f in findings if f.code in rem.when)
        wanted = f"a finding among {', '.join(rem.when)}"
    else:
        grounds = tuple(f for f in findings if f.suggests == rem.action)
        wanted = f"a finding that suggests {rem.action!r}"
    if not grounds:
        return Decision(None, mode, f"no {rem.action}: {_against(findings, rem.action, wanted)}")
    if mode == "off":
        return Decision(None, mode, f"{rem.action} is warranted but remediation is off")
    return Decision(action, _capped(mode, grounds), grounds[0].summary, grounds)


def _against(findings: list[Finding], action: str, wanted: str) -> str:
    """Why not: the reason a finding gives against the action (:attr:`Finding.against`, e.g.
    "the crash is caused by redis being down"), else which finding was missing."""
    for f in findings:
        if f.against.get(action):
            return f"{f.against[action]} ({f.code})"
    return f"no finding supports it (it needs {wanted})"


def _capped(mode: str, grounds: tuple[Finding, ...]) -> str:
    """A finding may cap the mode (:attr:`Finding.max_mode`, e.g. a new revision that cannot
    start is proposed for approval, never rolled back alone)."""
    caps = [f.max_mode for f in grounds if f.max_mode is not None]
    return min([mode, *caps], key=lambda m: MODE_RANK[m])


def aim_at_baseline(
    decision: Decision, revision: int, baseline_revision: int | None, *, restored: bool = False
) -> Decision:
    """A deploy verification's decision, aimed: a rollback goes to the verified baseline revision
    (not to whatever is "previous" when it runs), and only while the Deployment is still at the
    failed revision (an approval that comes after a fix was deployed does nothing). A revision
    with no verified baseline (the first one, or one that restores an older template) is not
    rolled back: there is nothing known to be better. The verifier and ``medic test`` both decide
    through it."""
    action = decision.action
    if action is None or "to" not in type(action.params).model_fields:
        return decision
    if not baseline_revision:
        why = "it restores an older template" if restored else "it has no earlier revision"
        return Decision(
            None, decision.mode, f"no {action.name}: revision {revision} has no verified baseline ({why})"
        )
    params = action.params.model_copy(update={"to": baseline_revision, "only_from": revision})
    return replace(decision, action=replace(action, params=params))
