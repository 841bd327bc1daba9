"""One case decided offline: alerts + evidence + action history → rule, target, findings, action.

No network and no cluster: the evidence stands in for the collectors (a playbook step without
evidence is ``not_configured``); routing, target resolution from labels, the analyzers
(:func:`medic.app.pipeline.analyze`), the decision (:func:`medic.decision.decide.decide`) and the
guards (:func:`medic.decision.guards.evaluate_guards`) are the code the service runs. What only
the live cluster knows (the action's preconditions, read when the action is planned) is given as
``cluster`` facts. ``medic test``, ``medic replay --since`` and ``incidents export --as-test`` all
decide through :func:`evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from medic.analysis.verification import WINDOW_STEP, Window
from medic.app.config import Config
from medic.app.pipeline import analyze
from medic.collectors.k8s.workload_output import RolloutHistoryOutput
from medic.collectors.revision_output import RevisionCompareOutput
from medic.decision.decide import Decision, aim_at_baseline, decide
from medic.decision.guards import Budget, GuardFacts, evaluate_guards, verdict
from medic.domain.actions import ActionMark, KillSwitch, Precondition
from medic.domain.evidence import Evidence, StepStatus
from medic.domain.incident import (
    Finding,
    GuardDecision,
    Incident,
    IncidentAlert,
    Target,
    shared_labels,
)
from medic.domain.rollout import build_timeline, healthy_before
from medic.playbooks.action import EarlierAction
from medic.playbooks.compiled import CompiledPlaybook
from medic.playbooks.contract import Registry
from medic.remediation.actions.rollout import recent_rollout_precondition
from medic.remediation.executor import mark_from_target, newer_mark
from medic.rules.model import Requirements, Rule
from medic.rules.routing import coalescing_key, matching_rules
from medic.rules.targets import target_from_labels

ROLLOUT_HISTORY = "k8s.rollout_history"  # the collector whose timeline the rollback's plan reads too
REQUIRE_DERIVED = ("recent_rollout", "previous_revision_healthy")  # require: preconditions from it

# what a test expects of the action (an ActionStatus, "would_act" for an allowed auto action, or none)
WOULD_ACT = "would_act"
NO_ACTION = "none"


@dataclass(frozen=True)
class HistoryEntry:
    """A past action on the target: what the cooldown, the budgets and the flap guard read."""

    action: str
    at: datetime
    status: str = "succeeded"  # started | succeeded | failed | skipped
    detail: Mapping[str, Any] = field(default_factory=dict)
    target: str | None = None  # another target's key (kind/namespace/name): counts for the global budget only


@dataclass(frozen=True)
class ClusterFacts:
    """What the action's plan would read from the cluster (its preconditions, the target's
    annotations and labels); None/empty: taken from the evidence where it holds them."""

    preconditions: Sequence[Precondition] = ()
    annotations: Mapping[str, str] | None = None
    labels: Mapping[str, str] | None = None
    revision_hash: str | None = None


@dataclass(frozen=True)
class Policy:
    """The global settings the guards read (Medic's settings in a run, the test's overrides)."""

    mode: str  # off | dry-run | enforce
    namespaces: Sequence[str]
    global_budget_count: int
    global_budget_window: timedelta
    flap_window: timedelta
    kill_switch: bool = False


@dataclass(frozen=True)
class Case:
    alerts: Sequence[IncidentAlert]
    evidence: Mapping[str, Evidence]  # by step id
    now: datetime
    history: Sequence[HistoryEntry] = ()
    cluster: ClusterFacts = ClusterFacts()


@dataclass(frozen=True)
class Outcome:
    rule: str | None
    target: str | None
    findings: list[Finding]
    action: str | None  # the playbook's action name the decision chose
    status: str  # WOULD_ACT | planned | awaiting_approval | refused | NO_ACTION
    reason: str
    guards: list[GuardDecision] = field(default_factory=list)

    @property
    def refused_by(self) -> list[str]:
        return [g.guard for g in self.guards if not g.allowed]

    @property
    def top_finding(self) -> str | None:
        return self.findings[0].code if self.findings else None

    def document(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "target": self.target,
            "findings": [f.code for f in self.findings],
            "action": {"name": self.action, "status": self.status},
            "refused_by": self.refused_by,
            "reason": self.reason,
        }


def history_span(config: Config, policy: Policy) -> timedelta:
    """How far back the guards look at past actions: the longest cooldown, budget window or flap
    window (a replay reads incidents that far before its first one, so that an action taken just
    before is in the history)."""
    spans = [policy.global_budget_window, policy.flap_window]
    for rule in config.rules:
        if rule.remediation is not None:
            spans += [rule.remediation.cooldown, rule.remediation.budget.per]
    return max(spans)


def route(alerts: Sequence[IncidentAlert], config: Config) -> Rule | None:
    """The rule the first alert goes to (first match, as the pipeline routes it)."""
    if not alerts:
        return None
    from medic.domain.alert import Alert

    first = alerts[0]
    alert = Alert(status="firing", labels=first.labels, startsAt=first.startsAt)
    rules = matching_rules(alert, config.rules)
    return rules[0] if rules else None


def resolve_target(rule: Rule | None, config: Config, labels: Mapping[str, str]) -> Target | None:
    playbook = config.playbook_of(rule)
    return target_from_labels(playbook.playbook.target if playbook else "none", labels)


def own_steps(playbook: CompiledPlaybook) -> tuple[str, ...]:
    """Evidence a playbook's diagnosis holds beyond its steps: a deploy verification's window
    (the verifier's own record of the revision, its baseline and samples)."""
    return (WINDOW_STEP,) if playbook.playbook.verify is not None else ()


def step_evidence(playbook: CompiledPlaybook, given: Mapping[str, Evidence], now: datetime) -> list[Evidence]:
    """The playbook's steps in order, each with its given evidence or ``not_configured``, then
    the verification window when the case gives one."""
    out = [given[step] for step in own_steps(playbook) if step in given]
    for step in playbook.steps:
        ev = given.get(step.step_id)
        if ev is None:
            ev = Evidence(
                step=step.step_id,
                collector=step.collector.name,
                status=StepStatus.NOT_CONFIGURED,
                started_at=now,
                error="no fixture for this step",
            )
        out.append(ev)
    return out


def evaluate(case: Case, config: Config, registry: Registry, policy: Policy) -> Outcome:
    rule = route(case.alerts, config)
    labels = shared_labels(None, list(case.alerts)) if case.alerts else {}
    first_labels = case.alerts[0].labels if case.alerts else {}
    target = resolve_target(rule, config, first_labels)
    playbook = config.playbook_of(rule)
    firing = any(a.status == "firing" for a in case.alerts)
    if playbook is None or not firing:
        why = (
            "no rule matches these alerts"
            if rule is None
            else f"rule {rule.name} runs no playbook"
            if playbook is None
            else "no alert is firing: nothing is diagnosed"
        )
        return Outcome(rule.name if rule else None, _str(target), [], None, NO_ACTION, why)
    incident = Incident(
        id="test",
        key=coalescing_key(rule, target, first_labels),
        rule=rule.name if rule else None,
        playbook=playbook.name,
        target=target,
        labels=labels,
        created_at=case.now,
        updated_at=case.now,
    )
    evidence = step_evidence(playbook, case.evidence, case.now)
    findings = analyze(registry, incident, list(case.alerts), playbook, evidence, case.now)
    decision = _decision(rule, playbook, findings, policy.mode, evidence)
    name = decision.action.name if decision.action else None
    if rule is None or decision.action is None or target is None or rule.remediation is None:
        return Outcome(rule.name if rule else None, _str(target), findings, name, NO_ACTION, decision.reason)
    guards = evaluate_guards(
        guard_facts(rule, target, case, policy, decision.action.action.recorded_on_target)
    )
    outcome = verdict(guards, decision.mode)  # the executor's own verdict (no plan: never skipped)
    if outcome.refusal is not None:
        status, reason = "refused", f"{outcome.refusal.guard}: {outcome.refusal.reason}"
    elif outcome.kind == "planned":
        status, reason = "planned", f"dry-run: {decision.reason}"
    else:
        status = WOULD_ACT if outcome.kind == "act" else outcome.kind
        reason = decision.reason
    return Outcome(rule.name, str(target), findings, name, status, reason, guards)


def _decision(
    rule: Rule | None,
    playbook: CompiledPlaybook,
    findings: list[Finding],
    mode: str,
    evidence: list[Evidence],
) -> Decision:
    """The decision the service makes: a deploy verification's is aimed at its verified baseline
    (:func:`medic.decision.decide.aim_at_baseline`), as the verifier aims it: the window's record
    says which revision and baseline; without one (a case of one interval), the comparison's."""
    decision = decide(rule, playbook, findings, mode)
    if playbook.playbook.verify is None:
        return decision
    window = next((e for e in evidence if e.collector == WINDOW_STEP and e.ok and e.data is not None), None)
    if window is not None:
        v = Window.model_validate(window.data).verification
        return aim_at_baseline(decision, v.revision, v.baseline_revision, restored=v.restored)
    compared = next(
        (e for e in evidence if e.collector == "prometheus.revision_compare" and e.ok and e.data is not None),
        None,
    )
    if compared is None:
        return decision
    cmp = RevisionCompareOutput.model_validate(compared.data)
    return aim_at_baseline(decision, cmp.revision, cmp.baseline_revision)


def guard_facts(
    rule: Rule,
    target: Target,
    case: Case,
    policy: Policy,
    recorded_on_target: Callable[[Mapping[str, str]], EarlierAction | None] | None = None,
) -> GuardFacts:
    """The guards' facts from the case: the history stands in for the coordination store's
    ledger, the cluster facts (or the evidence) for what the action's plan reads. An action
    that records itself on its target (the rollback's annotation: ``recorded_on_target``) has
    that earlier run counted too, the newer of it and the history's last action, as the executor
    counts it."""
    rem = rule.remediation
    assert rem is not None
    now = case.now
    past = sorted((h for h in case.history if h.at <= now), key=lambda h: h.at)
    everywhere = [h for h in past if h.status != "skipped"]  # as the ledger: a skip is no action
    counted = [h for h in everywhere if h.target in (None, target.key)]  # on this target
    last = counted[-1] if counted else None
    mark = (
        ActionMark("", target.key, last.action, "", last.at, last.status, dict(last.detail)) if last else None
    )
    annotations, labels, current_hash = _deployment_facts(case.evidence)
    cluster = case.cluster
    seen = cluster.annotations if cluster.annotations is not None else annotations
    if recorded_on_target is not None:
        mark = newer_mark(mark, mark_from_target(target.key, recorded_on_target(seen)))
    return GuardFacts(
        now=now,
        global_mode=policy.mode,
        kill_switch=KillSwitch(enabled=policy.kill_switch, by="test" if policy.kill_switch else ""),
        rule_mode=rem.mode,
        namespace=target.scope,
        allowed_namespaces=list(policy.namespaces),
        target_annotations=dict(seen),
        target_labels=dict(cluster.labels if cluster.labels is not None else labels),
        preconditions=[
            *cluster.preconditions,
            *required(rem.require, case, {p.name for p in cluster.preconditions}),
        ],
        cooldown=rem.cooldown,
        last_action=mark,
        target_budget=Budget(
            rem.budget.count, rem.budget.per, sum(h.at >= now - rem.budget.per for h in counted)
        ),
        global_budget=Budget(
            policy.global_budget_count,
            policy.global_budget_window,
            sum(h.at >= now - policy.global_budget_window for h in everywhere),
        ),
        flap_window=policy.flap_window,
        current_revision_hash=cluster.revision_hash if cluster.revision_hash is not None else current_hash,
        coordination_ok=True,
    )


def required(require: Requirements, case: Case, given: set[str]) -> list[Precondition]:
    """The rule's ``require:`` preconditions the case's cluster facts do not give, read as the
    rollback's plan reads them: from the rollout timeline, here the one ``k8s.rollout_history``
    saw. Without that evidence a precondition is not met (as an unknown rollout time is not
    recent), so a test never passes on a check it skipped."""
    asked = {"recent_rollout": require.recent_rollout is not None}
    asked["previous_revision_healthy"] = require.previous_revision_healthy
    wanted = [name for name, on in asked.items() if on and name not in given]
    history = next(
        (e.data for e in case.evidence.values() if e.collector == ROLLOUT_HISTORY and e.ok and e.data),
        None,
    )
    if not wanted:
        return []
    if not isinstance(history, dict):
        why = "not given (cluster.preconditions) and no k8s.rollout_history evidence to read it from"
        return [Precondition(name, False, why) for name in wanted]
    timeline = build_timeline(history)
    out = []
    if "recent_rollout" in wanted and require.recent_rollout is not None:
        out.append(recent_rollout_precondition(timeline, require.recent_rollout, case.now))
    if "previous_revision_healthy" in wanted:
        ok, why = healthy_before(timeline, timeline.previous, case.now)
        out.append(Precondition("previous_revision_healthy", ok, why))
    return out


def _deployment_facts(evidence: Mapping[str, Evidence]) -> tuple[dict[str, str], dict[str, str], str]:
    """The target's annotations, labels and current template hash as ``k8s.rollout_history`` saw
    them (read through its output model, as the analyzers read it)."""
    for ev in evidence.values():
        if ev.collector == ROLLOUT_HISTORY and ev.ok and ev.data is not None:
            history = RolloutHistoryOutput.model_validate(ev.data)
            current = next((r.pod_template_hash for r in history.revisions if r.current), "")
            return dict(history.deployment.annotations), dict(history.deployment.labels), current
    return {}, {}, ""


def _str(target: Target | None) -> str | None:
    return str(target) if target is not None else None
