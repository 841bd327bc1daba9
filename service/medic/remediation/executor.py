"""The guarded remediator: plan → guards → (dry-run | approval | lock → ledger → act → verify) → audit.

At-most-once side effects: a per-target lock across replicas, an idempotency key recorded in the
action ledger *before* the write (a second attempt with the same key does not act again, unless
the write carries its own precondition, like the rollback's JSON Patch ``test``), and the cooldown
and budgets re-checked under the lock. Every decision, including every "no", is audited.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from pydantic import ValidationError

from medic.clients.kube.client import KubeClient
from medic.clients.kube.errors import KubeConflict
from medic.coordination.base import RemediationState
from medic.decision.decide import Decision, effective_mode
from medic.decision.guards import Budget, GuardFacts, evaluate_guards, first_refusal, verdict
from medic.domain.actions import ActionLimit, ActionMark, BudgetExhausted, KillSwitch
from medic.domain.errors import StepError
from medic.domain.incident import ActionRecord, ActionStatus, Incident, utcnow
from medic.incidents.base import IncidentStore
from medic.playbooks.action import Action, ActionContext, ActionPlan, EarlierAction
from medic.playbooks.compiled import CompiledPlaybook
from medic.rules.model import Rule

log = structlog.get_logger("medic.remediation")


def mark_from_target(target: str, earlier: EarlierAction | None) -> ActionMark | None:
    """An earlier action of Medic's known from the target itself (a plan's
    :meth:`~medic.playbooks.action.ActionFacts.earlier_on_target`, e.g. the rollback annotation):
    the guards see it even when the ledger does not (a freshly installed or restored Medic)."""
    if earlier is None or not earlier.at:
        return None
    try:
        at = datetime.fromisoformat(earlier.at.replace("Z", "+00:00"))
    except ValueError:
        return None
    detail = {"to_hash": earlier.to_hash, "source": "the target's annotation"}
    return ActionMark("", target, earlier.action, earlier.incident, at, earlier.status or "succeeded", detail)


def _why(exc: Exception) -> str:
    """An action's failure for its record: a StepError's message as it is; anything else (a
    defect) named by its type too, and logged with its traceback. Never raised out of a step."""
    if isinstance(exc, StepError):
        return str(exc)
    log.exception("an action raised something other than a StepError", error=repr(exc))
    return f"{type(exc).__name__}: {exc}"


def newer_mark(a: ActionMark | None, b: ActionMark | None) -> ActionMark | None:
    return b if a is None or (b is not None and b.at > a.at) else a


DEFAULT_VERIFY_TIMEOUT = 120.0


class RemediationSettings(Protocol):
    """What the executor reads of Medic's settings (:class:`medic.app.settings.Settings` has it)."""

    @property
    def mode(self) -> str: ...

    @property
    def namespaces(self) -> Sequence[str]: ...

    @property
    def global_budget_count(self) -> int: ...

    @property
    def global_budget_window_seconds(self) -> int: ...

    @property
    def flap_window_seconds(self) -> int: ...


class GuardedRemediator:
    def __init__(
        self,
        *,
        settings: RemediationSettings,
        state: RemediationState,
        store: IncidentStore,
        kube: KubeClient | None,
        clock: Callable[[], datetime] = utcnow,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.store = store
        self.kube = kube
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}"

    async def approve(
        self,
        incident: Incident,
        rule: Rule,
        playbook: CompiledPlaybook,
        action: str,
        approver: str,
        params: Mapping[str, Any] | None = None,
    ) -> ActionRecord:
        """Carry out an approved proposal: every guard is evaluated again now (state may have
        changed since the proposal), then the action runs as if the rule said ``auto`` — still
        capped by the global mode. ``params`` are the proposal's (what the approver saw, e.g. a
        rollback to the revision a deploy verification found healthy), checked by the action's
        model again; without them the playbook's."""
        compiled = playbook.actions.get(action)
        if compiled is None or incident.target is None or rule.remediation is None:
            raise StepError(f"incident {incident.id} has no action {action!r} to approve")
        if params:
            try:
                compiled = replace(compiled, params=type(compiled.params).model_validate(dict(params)))
            except ValidationError as exc:
                raise StepError(f"the proposal's parameters no longer fit action {action!r}: {exc}") from None
        decision = Decision(compiled, effective_mode(self.settings.mode, "auto"), f"approved by {approver}")
        record = await self.handle(incident, rule, playbook, decision, approved_by=approver)
        assert record is not None
        return record

    async def handle(
        self,
        incident: Incident,
        rule: Rule,
        playbook: CompiledPlaybook,
        decision: Decision,
        *,
        approved_by: str = "",
    ) -> ActionRecord | None:
        if decision.action is None or incident.target is None or rule.remediation is None:
            return None
        compiled = decision.action
        ctx = ActionContext(
            kube=self.kube, target=incident.target, incident=incident, rule=rule, now=self.clock()
        )
        record = ActionRecord(
            action=compiled.name,
            use=compiled.action.name,
            target=incident.target,
            mode=decision.mode,
            status=ActionStatus.PLANNED,
            params=compiled.params.model_dump(mode="json"),
            approved_by=approved_by,
        )
        try:
            plan = await compiled.plan(ctx)
        except Exception as exc:  # StepError (NotConfigured included) or a defect: a record either way
            record.status = ActionStatus.REFUSED
            record.reason = f"could not plan {compiled.name}: {_why(exc)}"
            return await self._audit(incident, record)
        record.result = {"plan": plan.summary, "facts": plan.facts.record()}
        record.idempotency_key = f"{compiled.action.name}|{incident.target.key}|{plan.idempotency_scope}"
        facts = await self._facts(ctx, rule, plan, decision.mode)
        record.guards = evaluate_guards(facts)
        outcome = verdict(record.guards, decision.mode, skip_reason=plan.skip_reason)
        if outcome.refusal is not None:
            record.status = ActionStatus.REFUSED
            record.reason = f"{outcome.refusal.guard}: {outcome.refusal.reason}"
        elif outcome.kind == "skipped":
            record.status = ActionStatus.SKIPPED
            record.reason = plan.skip_reason or ""
        elif outcome.kind == "planned":
            record.status = ActionStatus.PLANNED
            record.reason = f"dry-run: would {plan.summary}"
        elif outcome.kind == "awaiting_approval":
            record.status = ActionStatus.AWAITING_APPROVAL
            record.reason = f"awaiting approval to {plan.summary}"
        else:
            await self._act(ctx, rule, playbook, decision, plan, record)
        return await self._audit(incident, record)

    async def _facts(self, ctx: ActionContext, rule: Rule, plan: ActionPlan[Any], mode: str) -> GuardFacts:
        rem = rule.remediation
        assert rem is not None
        now = ctx.now
        coordination_ok = True
        kill = KillSwitch(enabled=False)
        last: ActionMark | None = None
        target_used = global_used = 0
        window = timedelta(seconds=self.settings.global_budget_window_seconds)
        try:
            kill = await self.state.kill_switch()
            last = await self.state.last_action(ctx.target.key)
            last = newer_mark(last, mark_from_target(ctx.target.key, plan.facts.earlier_on_target()))
            target_used = await self.state.count_actions(now - rem.budget.per, ctx.target.key)
            global_used = await self.state.count_actions(now - window)
        except Exception as exc:  # the store is down: no automatic action (at-most-once)
            log.warning("coordination store unavailable", error=str(exc))
            coordination_ok = False
        return GuardFacts(
            now=now,
            global_mode=self.settings.mode,
            kill_switch=kill,
            rule_mode=rem.mode,
            namespace=ctx.target.scope,
            allowed_namespaces=self.settings.namespaces,
            target_annotations=plan.target_annotations,
            target_labels=plan.target_labels,
            preconditions=plan.preconditions,
            cooldown=rem.cooldown,
            last_action=last,
            target_budget=Budget(rem.budget.count, rem.budget.per, target_used),
            global_budget=Budget(self.settings.global_budget_count, window, global_used),
            flap_window=timedelta(seconds=self.settings.flap_window_seconds),
            current_revision_hash=plan.facts.current_revision_hash(),
            coordination_ok=coordination_ok or mode == "dry-run",
        )

    async def _act(
        self,
        ctx: ActionContext,
        rule: Rule,
        playbook: CompiledPlaybook,
        decision: Decision,
        plan: ActionPlan[Any],
        record: ActionRecord,
    ) -> None:
        compiled = decision.action
        assert compiled is not None
        spec_verify = compiled.spec.verify
        verify_timeout = spec_verify.timeout.total_seconds() if spec_verify else DEFAULT_VERIFY_TIMEOUT
        lock_key = f"target:{ctx.target.key}"
        owner = f"{self.owner}:{ctx.incident.id}"
        try:
            locked = await self.state.acquire_lock(lock_key, owner, ttl=verify_timeout + 120)
        except Exception as exc:
            record.status, record.reason = ActionStatus.REFUSED, f"coordination: lock unavailable: {exc}"
            return
        if not locked:
            record.status = ActionStatus.REFUSED
            record.reason = "lock: another replica is acting on this target right now"
            return
        try:
            await self._act_locked(
                ctx, rule, plan, record, compiled.action.impl, compiled.action.guarded_write, verify_timeout
            )
        finally:
            try:
                await self.state.release_lock(lock_key, owner)
            except Exception as exc:  # the lock expires on its own
                log.warning("lock release failed", error=str(exc))

    async def _act_locked(
        self,
        ctx: ActionContext,
        rule: Rule,
        plan: ActionPlan[Any],
        record: ActionRecord,
        impl: Action[Any, Any],
        guarded_write: bool,
        verify_timeout: float,
    ) -> None:
        # Re-check what another replica may have changed between the guards and the lock.
        facts = await self._facts(ctx, rule, plan, "auto")
        refusal = first_refusal(evaluate_guards(facts))
        if refusal is not None:
            record.status, record.reason = (
                ActionStatus.REFUSED,
                f"{refusal.guard}: {refusal.reason} (under lock)",
            )
            return
        key = record.idempotency_key
        kept = plan.facts.record()  # what the ledger keeps of the plan
        mark = ActionMark(key, ctx.target.key, record.action, ctx.incident.id, ctx.now, "started", kept)
        try:  # the budgets again, atomically with the mark: replicas on other targets act too
            fresh = await self.state.begin_action(mark, self._limits(rule))
        except BudgetExhausted as exc:
            record.status, record.reason = ActionStatus.REFUSED, f"{exc.limit.name}: {exc} (at the ledger)"
            return
        if not fresh and not guarded_write:
            record.status = ActionStatus.SKIPPED
            record.reason = f"already attempted ({key}): not repeated"
            return
        log.info("acting", action=record.use, target=str(ctx.target), plan=plan.summary)
        try:
            result = await impl.apply(ctx, plan)
        except KubeConflict as exc:
            await self.state.finish_action(key, "skipped", {**kept, "error": str(exc)})
            record.status, record.reason = ActionStatus.REFUSED, f"conflict: {exc}"
            return
        except Exception as exc:  # StepError (NotConfigured included) or a defect: a record either way
            why = _why(exc)
            await self.state.finish_action(key, "failed", {**kept, "error": why})
            record.status, record.reason = ActionStatus.FAILED, f"{record.action} failed: {why}"
            return
        record.result = {**record.result, "apply": result.record()}
        # An earlier attempt whose answer was lost may have applied it ("already"): verify either way.
        try:
            ok, message = await impl.verify(ctx, plan, verify_timeout)
        except Exception as exc:
            ok, message = False, f"verification failed: {_why(exc)}"
        record.result["verify"] = message
        await self.state.finish_action(key, "succeeded" if ok else "failed", {**kept, "verify": message})
        record.status = ActionStatus.SUCCEEDED if ok else ActionStatus.FAILED
        record.reason = f"{plan.summary}: {message}"

    def _limits(self, rule: Rule) -> tuple[ActionLimit, ...]:
        rem = rule.remediation
        assert rem is not None
        window = timedelta(seconds=self.settings.global_budget_window_seconds)
        return (
            ActionLimit("budget", rem.budget.count, rem.budget.per, per_target=True),
            ActionLimit("global_budget", self.settings.global_budget_count, window, per_target=False),
        )

    async def _audit(self, incident: Incident, record: ActionRecord) -> ActionRecord:
        log.info("remediation decision", action=record.use, status=record.status.value, reason=record.reason)
        try:
            await self.store.append_audit(incident.id, "action", record.model_dump(mode="json"))
        except Exception as exc:  # the record also lives on the incident
            log.error("audit append failed", error=str(exc))
        return record
