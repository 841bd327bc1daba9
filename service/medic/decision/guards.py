"""The guardrails (DESIGN §3) as a tuple of small pure guards: facts in, decisions out.

Like Alertmanager's stage list: each guard is a function ``GuardFacts -> Iterable[GuardDecision]``
(one decision, none, or one per precondition), and :data:`GUARDS` lists them in the order of
DESIGN §3. Order matters only for reading; every guard is evaluated so that on-call sees all the
reasons, and the first "no" is the one that stops the action. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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


# 1. global mode and kill switch
def global_mode(f: GuardFacts) -> Iterator[GuardDecision]:
    if f.global_mode == "off":
        yield _d("global_mode", False, "remediation is off (MEDIC_MODE=off)")
    else:
        yield _d("global_mode", True, f"global mode is {f.global_mode}")


def kill_switch(f: GuardFacts) -> Iterator[GuardDecision]:
    if not f.kill_switch.enabled:
        yield _d("kill_switch", True, "the kill switch is off")
        return
    who = f" by {f.kill_switch.by}" if f.kill_switch.by else ""
    why = f": {f.kill_switch.reason}" if f.kill_switch.reason else ""
    yield _d("kill_switch", False, f"the kill switch is on{who}{why}")


# 2. rule mode
def rule_mode(f: GuardFacts) -> Iterator[GuardDecision]:
    yield _d("rule_mode", f.rule_mode != "off", f"the rule's mode is {f.rule_mode}")


# 3. scope: namespace allow-list, opt-out annotation, GitOps-managed targets
def namespace(f: GuardFacts) -> Iterator[GuardDecision]:
    if f.namespace in f.allowed_namespaces:
        yield _d("namespace", True, f"namespace {f.namespace} is allowed")
        return
    allowed = ", ".join(f.allowed_namespaces) or "none"
    yield _d("namespace", False, f"namespace {f.namespace or '?'} is not in MEDIC_NAMESPACES ({allowed})")


def opt_out(f: GuardFacts) -> Iterator[GuardDecision]:
    value = f.target_annotations.get(OPT_OUT_ANNOTATION, "").strip().lower()
    if value in ("false", "no", "off", "0", "disabled"):
        yield _d("opt_out", False, f"the target is annotated {OPT_OUT_ANNOTATION}={value!r}")
    else:
        yield _d("opt_out", True, "the target has not opted out")


def gitops(f: GuardFacts) -> Iterator[GuardDecision]:
    markers = [k for k in GITOPS_ANNOTATIONS if k in f.target_annotations]
    markers += [k for k in GITOPS_LABELS if k in f.target_labels]
    if not markers:
        yield _d("gitops", True, "the target is not managed by Argo CD or Flux")
        return
    yield _d(
        "gitops",
        False,
        f"the target is managed from Git ({markers[0]}): a rollback would be "
        "reverted; revert the commit instead",
    )


# 4. preconditions of the action: one decision each
def preconditions(f: GuardFacts) -> Iterator[GuardDecision]:
    for p in f.preconditions:
        yield _d(f"precondition:{p.name}", p.ok, p.reason)


# 5. cooldown, budgets, flap guard
def cooldown(f: GuardFacts) -> Iterator[GuardDecision]:
    last = f.last_action
    if last is None or f.now - last.at >= f.cooldown:
        yield _d("cooldown", True, f"no action on this target within {format_duration(f.cooldown)}")
        return
    left = f.cooldown - (f.now - last.at)
    yield _d(
        "cooldown",
        False,
        f"{last.action} ran on this target at {last.at:%H:%M:%S} UTC; "
        f"cooldown {format_duration(f.cooldown)} has {format_duration(left)} left",
    )


def _budget(name: str, scope: str, budget: Budget | None) -> Iterator[GuardDecision]:
    if budget is None:
        return
    window = format_duration(budget.per)
    ok = budget.used < budget.count
    yield _d(name, ok, f"{budget.used} of {budget.count} actions on {scope} used in {window}")


def target_budget(f: GuardFacts) -> Iterator[GuardDecision]:
    yield from _budget("budget", "this target", f.target_budget)


def global_budget(f: GuardFacts) -> Iterator[GuardDecision]:
    yield from _budget("global_budget", "all targets", f.global_budget)


def flap(f: GuardFacts) -> Iterator[GuardDecision]:
    """A rollback that did not help is not followed by another one: escalate instead."""
    last = f.last_action
    if last is None or f.now - last.at >= f.flap_window:
        yield _d("flap", True, "no recent action on this target")
    elif last.status == "failed":
        yield _d(
            "flap",
            False,
            f"the last {last.action} here ({last.at:%H:%M:%S} UTC) did not help: "
            "escalate to a human instead of acting again",
        )
    elif (
        last.status == "succeeded"
        and f.current_revision_hash
        and last.detail.get("to_hash") == f.current_revision_hash
    ):
        yield _d(
            "flap",
            False,
            f"the revision {last.action} restored at {last.at:%H:%M:%S} UTC "
            "is the one failing now: escalate to a human",
        )
    else:
        yield _d("flap", True, "the previous action on this target held")


# 6. at-most-once needs the coordination store
def coordination(f: GuardFacts) -> Iterator[GuardDecision]:
    if f.coordination_ok:
        yield _d("coordination", True, "the coordination store answers")
    else:
        yield _d(
            "coordination",
            False,
            "the coordination store is unreachable: automatic actions are "
            "suspended (at-most-once cannot be guaranteed)",
        )


Guard = Callable[[GuardFacts], Iterable[GuardDecision]]

# In the order of DESIGN §3 (and of the decisions on-call reads in the bundle).
GUARDS: tuple[Guard, ...] = (
    global_mode,
    kill_switch,
    rule_mode,
    namespace,
    opt_out,
    gitops,
    preconditions,
    cooldown,
    target_budget,
    global_budget,
    flap,
    coordination,
)


def evaluate_guards(f: GuardFacts, guards: Sequence[Guard] = GUARDS) -> list[GuardDecision]:
    """Every guard's decisions, in order."""
    return [decision for guard in guards for decision in guard(f)]


def first_refusal(decisions: Sequence[GuardDecision]) -> GuardDecision | None:
    return next((d for d in decisions if not d.allowed), None)


@dataclass(frozen=True)
class Verdict:
    """What becomes of a planned action once its guards have spoken: ``refused`` (by
    ``refusal``), ``skipped`` (the target is already as wanted), ``planned`` (dry-run),
    ``awaiting_approval`` or ``act``. One function decides it for the executor and for
    ``medic test``, so a test's expectation is what the executor would have done."""

    kind: str
    refusal: GuardDecision | None = None


def verdict(decisions: Sequence[GuardDecision], mode: str, *, skip_reason: str | None = None) -> Verdict:
    if (refusal := first_refusal(decisions)) is not None:
        return Verdict("refused", refusal)
    if skip_reason:
        return Verdict("skipped")
    if mode == "dry-run":
        return Verdict("planned")
    if mode == "approve":
        return Verdict("awaiting_approval")
    return Verdict("act")
