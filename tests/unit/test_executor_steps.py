"""The executor turns whatever an action raises into its record: a StepError as it always did,
and a defect (a KeyError on a plan, a TypeError on an odd answer) as a refusal at plan time or a
failure at apply/verify time, recorded in the ledger, never an exception out of the step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from medic.app.settings import Settings
from medic.clients.sqlite import SqliteDB
from medic.coordination.sqlite import SqliteRemediationState
from medic.decision.decide import Decision
from medic.domain.incident import ActionRecord, ActionStatus, Incident, Target, new_incident_id
from medic.incidents.sqlite import SqliteIncidentStore
from medic.playbooks.action import ActionContext, ActionFacts, ActionPlan, ApplyResult
from medic.playbooks.compiled import CompiledAction
from medic.playbooks.contract import ActionDef, NoParams
from medic.playbooks.model import ActionSpec, VerifySpec
from medic.remediation.executor import GuardedRemediator
from medic.rules.model import Budget, Remediation, Rule

TARGET = Target(kind="deployment", namespace="ns", name="app")


class Facts(ActionFacts):
    n: int


class Defective:
    """An action with a defect in one step (``broken``): it raises a KeyError there."""

    def __init__(self, broken: str) -> None:
        self.broken = broken

    def _maybe_break(self, step: str) -> None:
        if step == self.broken:
            raise KeyError("namespace")

    async def plan(self, ctx: ActionContext, params: NoParams) -> ActionPlan[Facts]:
        self._maybe_break("plan")
        return ActionPlan(summary="do it", facts=Facts(n=1), idempotency_scope="s")

    async def apply(self, ctx: ActionContext, plan: ActionPlan[Facts]) -> ApplyResult:
        self._maybe_break("apply")
        return ApplyResult(applied=True)

    async def verify(self, ctx: ActionContext, plan: ActionPlan[Facts], timeout: float) -> tuple[bool, str]:
        self._maybe_break("verify")
        return True, "fine"


async def handle(tmp_path: Path, broken: str) -> tuple[ActionRecord, SqliteRemediationState]:
    db = SqliteDB(tmp_path / "medic.sqlite3")
    await db.open()
    state = SqliteRemediationState(db)
    settings = Settings(mode="enforce", namespaces=["ns"], kube_mode="off")
    executor = GuardedRemediator(settings=settings, state=state, store=SqliteIncidentStore(db), kube=None)
    rule = Rule(
        name="r",
        matchers=['alertname="A"'],
        playbook="p",
        remediation=Remediation(
            action="act", mode="auto", cooldown=timedelta(0), budget=Budget(count=10, per=timedelta(hours=1))
        ),
    )
    now = datetime.now(UTC)
    incident = Incident(id=new_incident_id(now), key="r|k", rule="r", target=TARGET)
    definition = ActionDef("test.defective", Defective(broken), NoParams)
    spec = ActionSpec(use="test.defective", verify=VerifySpec(timeout=timedelta(seconds=1)))
    decision = Decision(CompiledAction("act", spec, definition, NoParams()), "auto", "test")
    record = await executor.handle(incident, rule, None, decision)  # type: ignore[arg-type]
    assert record is not None
    return record, state


async def test_a_defect_in_plan_is_a_refusal(tmp_path: Path) -> None:
    record, state = await handle(tmp_path, "plan")
    assert record.status == ActionStatus.REFUSED
    assert record.reason == "could not plan act: KeyError: 'namespace'"
    assert await state.last_action(TARGET.key) is None


@pytest.mark.parametrize(("broken", "status"), [("apply", "failed"), ("verify", "failed"), ("", "succeeded")])
async def test_a_defect_in_apply_or_verify_is_a_failure_the_ledger_knows(
    tmp_path: Path, broken: str, status: str
) -> None:
    record, state = await handle(tmp_path, broken)
    assert record.status == ActionStatus(status), record.reason
    if broken == "apply":
        assert record.reason == "act failed: KeyError: 'namespace'"
    if broken == "verify":
        assert record.result["verify"] == "verification failed: KeyError: 'namespace'"
    if broken != "apply":
        assert record.result["apply"] == {"applied": True}
    assert record.result["facts"] == {"n": 1}
    last = await state.last_action(TARGET.key)
    assert last is not None and last.status == status
