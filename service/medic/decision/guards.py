"""The guardrails (DESIGN §3) as one pure function: facts in, a decision per guard out.

Order matters only for reading; every guard is evaluated so that on-call sees all the reasons,
and the first "no" is the one that stops the action. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from medic.domain.actions import ActionMark, KillSwitch, Precondition
from medic.domain.durations import format_duration
from medic.domain.incident import GuardDecision

OPT_OUT_ANNOTATION = "medic.playcode.gg/remediate"
# Markers of objects that Argo CD or Flux reconcile from Git: a rollback would be reverted.
GITOPS_ANNOTATIONS = ("argocd.argoproj.io/tracking-id", "argocd.argoproj.io/sync-options")
GITOPS_LABELS = (
    "argocd.argoproj.io/instance",
    "kustomize.toolkit.fluxcd.io/name",
    "helm.toolkit.fluxcd.io/name",
)


@dataclass(frozen=True)
class Budget:
    count: int
    per: timedelta
    used: int


@dataclass(frozen=True)
class GuardFacts:
    now: datetime
    global_mode: str  # off | dry-run | enforce
    kill_switch: KillSwitch
    rule_mode: str  # auto | approve | dry-run | off (the rule's own)
    namespace: str
    allowed_namespaces: Sequence[str]
    target_annotations: Mapping[str, str] = field(default_factory=dict)
    target_labels: Mapping[str, str] = field(default_factory=dict)
    preconditions: Sequence[Precondition] = ()
    cooldown: timedelta = timedelta(minutes=30)
    last_action: ActionMark | None = None
    target_budget: Budget | None = None
    global_budget: Budget | None = None
    flap_window: timedelta = timedelta(hours=2)
    current_revision_hash: str = ""
    coordination_ok: bool = True


def _d(guard: str, allowed: bool, reason: str) -> GuardDecision:
    return GuardDecision(guard=guard, allowed=allowed, reason=reason)


def evaluate_guards(f: GuardFacts) -> list[GuardDecision]:
    out: list[GuardDecision] = []
    # 1. global mode and kill switch
    if f.global_mode == "off":
        out.append(_d("global_mode", False, "remediation is off (MEDIC_MODE=off)"))
    else:
        out.append(_d("global_mode", True, f"global mode is {f.global_mode}"))
    if f.kill_switch.enabled:
        who = f" by {f.kill_switch.by}" if f.kill_switch.by else ""
        why = f": {f.kill_switch.reason}" if f.kill_switch.reason else ""
        out.append(_d("kill_switch", False, f"the kill switch is on{who}{why}"))
    else:
        out.append(_d("kill_switch", True, "the kill switch is off"))
    # 2. rule mode
    out.append(_d("rule_mode", f.rule_mode != "off", f"the rule's mode is {f.rule_mode}"))
    # 3. scope
    if f.namespace in f.allowed_namespaces:
        out.append(_d("namespace", True, f"namespace {f.namespace} is allowed"))
    else:
        allowed = ", ".join(f.allowed_namespaces) or "none"
        out.append(
            _d("namespace", False, f"namespace {f.namespace or '?'} is not in MEDIC_NAMESPACES ({allowed})")
        )
    opt_out = f.target_annotations.get(OPT_OUT_ANNOTATION, "").strip().lower()
    if opt_out in ("false", "no", "off", "0", "disabled"):
        out.append(_d("opt_out", False, f"the target is annotated {OPT_OUT_ANNOTATION}={opt_out!r}"))
    else:
        out.append(_d("opt_out", True, "the target has not opted out"))
    gitops = [k for k in GITOPS_ANNOTATIONS if k in f.target_annotations]
    gitops += [k for k in GITOPS_LABELS if k in f.target_labels]
    if gitops:
        out.append(
            _d(
                "gitops",
                False,
                f"the target is managed from Git ({gitops[0]}): a rollback would be "
                "reverted; revert the commit instead",
            )
        )
    else:
        out.append(_d("gitops", True, "the target is not managed by Argo CD or Flux"))
    # 4. preconditions of the action
    for p in f.preconditions:
        out.append(_d(f"precondition:{p.name}", p.ok, p.reason))
    # 5. cooldown, budgets, flap guard
    last = f.last_action
    if last is not None and f.now - last.at < f.cooldown:
        left = f.cooldown - (f.now - last.at)
        out.append(
            _d(
                "cooldown",
                False,
                f"{last.action} ran on this target at {last.at:%H:%M:%S} UTC; "
                f"cooldown {format_duration(f.cooldown)} has {format_duration(left)} left",
            )
        )
    else:
        out.append(_d("cooldown", True, f"no action on this target within {format_duration(f.cooldown)}"))
    for name, budget in (("budget", f.target_budget), ("global_budget", f.global_budget)):
        if budget is None:
            continue
        scope = "this target" if name == "budget" else "all targets"
        window = format_duration(budget.per)
        ok = budget.used < budget.count
        out.append(_d(name, ok, f"{budget.used} of {budget.count} actions on {scope} used in {window}"))
    if last is not None and f.now - last.at < f.flap_window:
        if last.status == "failed":
            out.append(
                _d(
                    "flap",
                    False,
                    f"the last {last.action} here ({last.at:%H:%M:%S} UTC) did not help: "
                    "escalate to a human instead of acting again",
                )
            )
        elif (
            last.status == "succeeded"
            and f.current_revision_hash
            and last.detail.get("to_hash") == f.current_revision_hash
        ):
            out.append(
                _d(
                    "flap",
                    False,
                    f"the revision {last.action} restored at {last.at:%H:%M:%S} UTC "
                    "is the one failing now: escalate to a human",
                )
            )
        else:
            out.append(_d("flap", True, "the previous action on this target held"))
    else:
        out.append(_d("flap", True, "no recent action on this target"))
    # 6. at-most-once needs the coordination store
    if f.coordination_ok:
        out.append(_d("coordination", True, "the coordination store answers"))
    else:
        out.append(
            _d(
                "coordination",
                False,
                "the coordination store is unreachable: automatic actions are "
                "suspended (at-most-once cannot be guaranteed)",
            )
        )
    return out


def first_refusal(decisions: Sequence[GuardDecision]) -> GuardDecision | None:
    return next((d for d in decisions if not d.allowed), None)
